"""Orders admin: no field is editable; the status moves only through services.

Every field of an order is owned by the domain: money and lines are fixed by `order_create`,
and the status moves through the saga's services, which also write the outbox. Staff act
through admin actions (ship, mark delivered, cancel, approve or reject a risk hold) that
call those same services, and see the order's timeline of events and its risk assessment
to find where an order is stuck and why.
"""

from collections.abc import Callable

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from common.admin import ExactUUIDSearchMixin, ReadOnlyAdminMixin, short_id, wrappable
from orders.events import ShippingAddress
from orders.models import Order
from orders.selectors import order_timeline
from orders.services import order_cancel, order_deliver, order_ship
from orders.status import InvalidOrderTransition
from risk.selectors import risk_assessment_for_order
from risk.services import ReviewRefused, risk_review_approve, risk_review_reject


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, ExactUUIDSearchMixin, admin.ModelAdmin):
    list_display = (
        "order",
        "customer_name",
        "status",
        "status_reason",  # why it was rejected, cancelled (declined, by whom) or expired
        "amount",
        "sales_channel",
        "created_at",
    )
    list_filter = ("status", "sales_channel", "created_at")
    list_select_related = ("customer",)
    date_hierarchy = "created_at"
    search_fields = ("customer__username", "customer__email")
    uuid_search_fields = ("pk",)
    search_help_text = "A full order id, or part of the customer's username or e-mail."
    actions = ("approve_held", "reject_held", "ship", "mark_delivered", "cancel")

    @admin.display(description="order", ordering="id")
    def order(self, order: Order) -> SafeString:
        return short_id(order.id)  # the row's link to the order page

    @admin.display(description="customer", ordering="customer__username")
    def customer_name(self, order: Order) -> SafeString:
        return wrappable(str(order.customer))

    @admin.display(description="total", ordering="total")
    def amount(self, order: Order) -> str:
        return f"{order.total} {order.currency}"

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Field edits are off (see module doc); operating an order is a separate right.
        return request.user.has_perm("orders.change_order")

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Order], verb: str, service: Callable
    ) -> None:
        done, refused = 0, []
        for order in queryset:
            try:
                service(order.id)
                done += 1
            except InvalidOrderTransition as exc:
                refused.append(f"{str(order.id)[:8]} ({exc.current})")
            except ReviewRefused as exc:
                refused.append(f"{str(order.id)[:8]} ({exc})")
        self.message_user(request, f"{verb}: {done} order(s).", messages.SUCCESS)
        if refused:
            self.message_user(
                request, f"Not {verb.lower()}, wrong status: {', '.join(refused)}", messages.WARNING
            )

    @admin.action(
        description="Approve selected held orders (risk review): charge them",
        permissions=["operate"],
    )
    def approve_held(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        reviewer = request.user.get_username()
        self._apply(
            request,
            queryset,
            "Approved",
            lambda pk: risk_review_approve(order_id=pk, reviewer=reviewer),
        )

    @admin.action(
        description="Reject selected held orders (risk review): cancel, release stock",
        permissions=["operate"],
    )
    def reject_held(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        reviewer = request.user.get_username()
        self._apply(
            request,
            queryset,
            "Rejected",
            lambda pk: risk_review_reject(order_id=pk, reviewer=reviewer),
        )

    @admin.action(description="Ship selected paid orders", permissions=["operate"])
    def ship(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(request, queryset, "Shipped", lambda pk: order_ship(order_id=pk))

    @admin.action(description="Mark selected shipped orders delivered", permissions=["operate"])
    def mark_delivered(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(request, queryset, "Delivered", lambda pk: order_deliver(order_id=pk))

    @admin.action(description="Cancel selected orders (until shipped)", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._apply(
            request,
            queryset,
            "Cancelled",
            lambda pk: order_cancel(order_id=pk, actor="staff", reason="cancelled by staff"),
        )

    @admin.display(description="payment")
    def payment_summary(self, order: Order) -> str:
        payment = getattr(order, "payment", None)  # None when the reverse row is missing
        if payment is None:
            return "—"
        detail = f" ({payment.failure_reason})" if payment.failure_reason else ""
        return f"{payment.status}{detail}: {payment.amount} {payment.currency}, {payment.provider}"

    @admin.display(description="shipment")
    def shipment_summary(self, order: Order) -> str:
        shipment = getattr(order, "shipment", None)
        if shipment is None:
            return "—"
        delivered = (
            f", delivered {shipment.delivered_at:%Y-%m-%d %H:%M}" if shipment.delivered_at else ""
        )
        return f"{shipment.carrier} {shipment.tracking_number}{delivered}"

    @admin.display(description="shipping address")
    def shipping_address_text(self, order: Order) -> str:
        if not order.shipping_address:
            return "—"
        return ", ".join(ShippingAddress.model_validate(order.shipping_address).postal_lines())

    @admin.display(description="risk assessment")
    def risk_summary(self, order: Order) -> str:
        assessment = risk_assessment_for_order(order_id=order.id)
        if assessment is None:
            return "— (not assessed: not reserved yet, or the risk check is off)"
        review = ""
        if assessment.review:
            at = f"{assessment.reviewed_at:%Y-%m-%d %H:%M}" if assessment.reviewed_at else ""
            review = f"; {assessment.review} by {assessment.reviewed_by} {at}".rstrip()
        return (
            f"score {assessment.score}: {assessment.get_decision_display()} (review from "
            f"{assessment.review_score}, block from {assessment.block_score}){review}"
        )

    @admin.display(description="rules")
    def risk_rules(self, order: Order) -> SafeString:
        assessment = risk_assessment_for_order(order_id=order.id)
        if assessment is None:
            return format_html("{}", "—")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((r["rule"], r["points"], r["reason"] or "—") for r in assessment.rules),
        )
        return format_html(
            "<table><tr><th>rule</th><th>points</th><th>reason</th></tr>{}</table>", rows
        )

    @admin.display(description="lines")
    def lines(self, order: Order) -> SafeString:
        # A table in the page's second section, not an inline: inlines come after every
        # section, below request and history.
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (line.sku, line.product_name, line.quantity, line.unit_price, line.line_total)
                for line in order.lines.order_by("id")
            ),
        )
        return format_html(
            "<table><tr><th>SKU</th><th>product</th><th>quantity</th><th>unit price</th>"
            "<th>line total</th></tr>{}</table>",
            rows,
        )

    @admin.display(description="events, oldest first")
    def timeline(self, order: Order) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{event.created_at:%Y-%m-%d %H:%M:%S.%f}"[:-3],
                    event.event_type,
                    "published" if event.is_published else "pending",
                    event.correlation_id,
                )
                for event in order_timeline(order_id=order.id)
            ),
        )
        return format_html(
            "<table><tr><th>time</th><th>event</th><th>relay</th><th>correlation id</th></tr>"
            "{}</table>",
            rows,
        )

    fieldsets = (
        (None, {"fields": ("id", "customer", "status", "status_reason", "status_changed_at")}),
        ("Lines", {"fields": ("lines", "total", "currency")}),
        ("Risk", {"fields": ("risk_summary", "risk_rules")}),
        ("Payment and shipment", {"fields": ("payment_summary", "shipment_summary")}),
        ("Timeline", {"fields": ("timeline",)}),
        ("Origin and destination", {"fields": ("sales_channel", "shipping_address_text")}),
        ("Request", {"fields": ("idempotency_key", "request_fingerprint")}),
        ("History", {"fields": ("created_at", "updated_at", "related")}),
    )
    readonly_fields = (
        "id",
        "customer",
        "status",
        "status_reason",
        "status_changed_at",
        "lines",
        "risk_summary",
        "risk_rules",
        "payment_summary",
        "shipment_summary",
        "timeline",
        "total",
        "currency",
        "sales_channel",
        "shipping_address_text",
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
            ("risk_riskassessment", "order_id", "Risk assessment"),
        )
        return format_html_join(
            " · ",
            '<a href="{}?{}={}">{}</a>',
            (
                (reverse(f"admin:{name}_changelist"), field, order.pk, label)
                for name, field, label in targets
            ),
        )
