"""Notifications admin: notifications are view-only, plus "resend" (created by consumers,
once per event and channel; delivery runs on Celery). Staff edit a customer's channel
preferences (through the same validation as the API), see and remove push subscriptions,
and read what the recording backends "sent" (Recorded messages)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, short_id, wrappable
from notifications.models import (
    Notification,
    NotificationPreferences,
    PushSubscription,
    RecordedMessage,
)
from notifications.services import (
    notification_preferences_update,
    notification_preferences_validate,
    notification_resend,
)


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
        (
            "Delivery",
            {
                "fields": (
                    "status",
                    "recipient",
                    "attempts",
                    "error",
                    "created_at",
                    "sent_at",
                    "event_id",
                )
            },
        ),
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


class NotificationPreferencesForm(forms.ModelForm):
    class Meta:
        model = NotificationPreferences
        fields = ("customer", "email_enabled", "sms_enabled", "push_enabled", "phone_number")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        customer = data.get("customer") or getattr(self.instance, "customer", None)
        if customer is not None:
            try:
                notification_preferences_validate(
                    customer_id=customer.pk,
                    sms_enabled=data.get("sms_enabled", False),
                    push_enabled=data.get("push_enabled", False),
                    phone_number=data.get("phone_number", ""),
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    self.add_error(field, errors)
        return data


@admin.register(NotificationPreferences)
class NotificationPreferencesAdmin(admin.ModelAdmin):
    form = NotificationPreferencesForm
    list_display = (
        "customer",
        "email_enabled",
        "sms_enabled",
        "push_enabled",
        "phone_number",
        "updated_at",
    )
    list_filter = ("email_enabled", "sms_enabled", "push_enabled")
    list_select_related = ("customer",)
    search_fields = ("customer__username", "customer__email", "phone_number")
    search_help_text = "Part of the customer's username, e-mail address or phone number."
    autocomplete_fields = ("customer",)

    def get_readonly_fields(
        self, request: HttpRequest, obj: NotificationPreferences | None = None
    ) -> tuple[str, ...]:
        return ("customer",) if obj is not None else ()

    def save_model(
        self,
        request: HttpRequest,
        obj: NotificationPreferences,
        form: forms.ModelForm,
        change: bool,
    ) -> None:
        saved = notification_preferences_update(
            customer=obj.customer,
            email_enabled=obj.email_enabled,
            sms_enabled=obj.sms_enabled,
            push_enabled=obj.push_enabled,
            phone_number=obj.phone_number,
        )
        obj.pk = saved.pk


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """View and delete only: browsers register subscriptions through the API."""

    list_display = ("customer", "push_service", "created_at")
    list_select_related = ("customer",)
    search_fields = ("customer__username", "endpoint")
    fields = ("id", "customer", "endpoint", "p256dh", "auth", "created_at")
    readonly_fields = fields

    @admin.display(description="push service")
    def push_service(self, subscription: PushSubscription) -> str:
        return subscription.endpoint.split("/")[2] if "://" in subscription.endpoint else ""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RecordedMessage)
class RecordedMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the recording backends would have sent (local runs, tests)."""

    list_display = ("created_at", "channel", "to", "subject", "text", "notification_link")
    list_filter = ("channel", "created_at")
    search_fields = ("recipient", "subject", "body")
    search_help_text = "Part of the recipient (address, phone number, endpoint) or the text."
    fields = ("created_at", "channel", "recipient", "subject", "body", "payload", "notification")
    readonly_fields = fields

    @admin.display(description="to", ordering="recipient")
    def to(self, message: RecordedMessage) -> SafeString:
        return wrappable(Truncator(message.recipient).chars(60))

    @admin.display(description="text")
    def text(self, message: RecordedMessage) -> str:
        return Truncator(message.body).chars(120)

    @admin.display(description="notification", ordering="notification_id")
    def notification_link(self, message: RecordedMessage) -> SafeString | str:
        if message.notification_id is None:
            return "-"
        page = reverse("admin:notifications_notification_change", args=[message.notification_id])
        return format_html('<a href="{}">{}</a>', page, message.notification_id)
