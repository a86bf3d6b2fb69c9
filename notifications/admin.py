"""Notifications admin: view-only, plus "resend". Notifications are created by consumers,
once per event; delivery runs on Celery."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.safestring import SafeString

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, short_id, wrappable
from notifications.models import Notification
from notifications.services import notification_resend


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = ("customer_name", "order", "kind", "channel", "status", "created_at", "sent_at")
    list_filter = ("kind", "status", "channel", "created_at")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    search_fields = ("customer__username", "subject")
    uuid_search_fields = ("order_id",)
    search_help_text = "A full order id, or part of the customer's username or the subject."
    fieldsets = (
        (None, {"fields": ("customer", "order_id", "kind", "channel")}),
        ("Message", {"fields": ("subject", "body")}),
        ("Delivery", {"fields": ("status", "error", "created_at", "sent_at", "event_id")}),
    )
    readonly_fields = ("created_at",)
    actions = ("resend",)

    @admin.display(description="customer", ordering="customer__username")
    def customer_name(self, notification: Notification) -> SafeString:
        return wrappable(str(notification.customer))

    @admin.display(description="order", ordering="order_id")
    def order(self, notification: Notification) -> SafeString:
        order_page = reverse("admin:orders_order_change", args=[notification.order_id])
        return short_id(notification.order_id, href=order_page)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.is_staff and request.user.has_perm("notifications.view_notification")

    @admin.action(
        description="Resend selected notifications (not yet sent)", permissions=["resend"]
    )
    def resend(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        queued = notification_resend(notification_ids=list(queryset.values_list("id", flat=True)))
        skipped = queryset.count() - queued
        self.message_user(
            request,
            f"Queued {queued} notification(s) for delivery; {skipped} already sent, left alone.",
            messages.SUCCESS,
        )
