"""Orders admin: view-only.

Every field of an order is owned by the domain: money and lines are fixed by `order_create`,
and the status only moves through events (`order_mark_reserved` / `order_mark_rejected`),
which also write the outbox. Editing, adding or deleting here would bypass both, so staff
can look but not touch.
"""

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from kafka_bridge.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin
from orders.models import Order, OrderLine


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    fields = ("sku", "product_name", "quantity", "unit_price", "line_total")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        # Lines are part of the order: whoever may view the order sees its lines.
        return request.user.has_perm("orders.view_order") or super().has_view_permission(
            request, obj
        )

    @admin.display(description="line total")
    def line_total(self, line: OrderLine) -> object:
        return line.line_total


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = ("id", "customer", "status", "total", "currency", "created_at")
    list_filter = ("status", "created_at")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    search_fields = ("customer__username", "customer__email")
    uuid_search_fields = ("pk",)
    search_help_text = "A full order id, or part of the customer's username or e-mail."
    inlines = (OrderLineInline,)
    fieldsets = (
        (None, {"fields": ("id", "customer", "status", "status_reason")}),
        ("Money", {"fields": ("total", "currency")}),
        ("Request", {"fields": ("idempotency_key", "request_fingerprint")}),
        ("History", {"fields": ("created_at", "updated_at", "related")}),
    )
    readonly_fields = (
        "id",
        "customer",
        "status",
        "status_reason",
        "total",
        "currency",
        "idempotency_key",
        "request_fingerprint",
        "created_at",
        "updated_at",
        "related",
    )

    @admin.display(description="related records")
    def related(self, order: Order) -> SafeString:
        targets = (
            ("inventory_reservation", "order_id", "Reservations"),
            ("notifications_notification", "order_id", "Notifications"),
            ("kafka_bridge_outboxevent", "aggregate_id", "Outbox events"),
        )
        return format_html_join(
            " · ",
            '<a href="{}?{}={}">{}</a>',
            (
                (reverse(f"admin:{name}_changelist"), field, order.pk, label)
                for name, field, label in targets
            ),
        )
