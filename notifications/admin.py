"""Notifications admin: view-only. Notifications are created by consumers, once per event."""

from django.contrib import admin

from kafka_bridge.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin
from notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = ("customer", "order_id", "kind", "channel", "status", "created_at", "sent_at")
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
