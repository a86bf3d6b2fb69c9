"""Read-only admin of the read side. Every row is derived from events: nothing is edited
here. The read-model pages show the live generation only."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from common.admin import ReadOnlyAdminMixin
from reporting.models import (
    CustomerOrderSummary,
    OrderRateWindow,
    OrderRateWindowState,
    ProductDailySales,
    ReadModelRebuild,
)
from reporting.selectors import read_models_generation

# The admin's home page leads to the pipeline dashboard (reporting/dashboard.py) too.
admin.site.index_template = "reporting/admin/index.html"


@admin.register(OrderRateWindow)
class OrderRateWindowAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Orders per minute as published on metrics.order.rate (what the staff API answers)."""

    list_display = (
        "window_start",
        "window_end",
        "orders",
        "orders_bar",
        "late_orders",
        "too_late_orders",
        "revision",
        "updated_at",
    )
    date_hierarchy = "window_start"
    list_per_page = 60

    @admin.display(description="")
    def orders_bar(self, window: OrderRateWindow) -> SafeString:
        # One block per order, up to 100: the shape of the rate at a glance.
        return format_html(
            '<span style="font-family:monospace">{}</span>', "▇" * min(window.orders, 100)
        )


@admin.register(OrderRateWindowState)
class OrderRateWindowStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The aggregator's own state: open windows too, and what is still to be published."""

    list_display = (
        "window_start",
        "state",
        "orders",
        "late_orders",
        "too_late_orders",
        "revision",
        "published_revision",
    )
    list_filter = ("state",)
    date_hierarchy = "window_start"


class LiveGenerationMixin:
    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return queryset.filter(generation=read_models_generation())


@admin.register(ProductDailySales)
class ProductDailySalesAdmin(LiveGenerationMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "day",
        "sku",
        "units_sold",
        "revenue",
        "units_refunded",
        "refunds",
        "currency",
    )
    date_hierarchy = "day"
    search_fields = ("sku",)
    search_help_text = "A SKU (exact)."

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        if not search_term:
            return queryset, False
        return queryset.filter(sku=search_term.strip()), False


@admin.register(CustomerOrderSummary)
class CustomerOrderSummaryAdmin(LiveGenerationMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "customer_id",
        "orders_placed",
        "statuses",
        "lifetime_value",
        "currency",
        "first_order_at",
        "last_order_at",
    )
    search_fields = ("customer_id",)
    search_help_text = "A customer id (exact)."

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        term = search_term.strip()
        if not term:
            return queryset, False
        return (
            queryset.filter(customer_id=int(term)) if term.isdigit() else queryset.none()
        ), False

    @admin.display(description="orders by status")
    def statuses(self, summary: CustomerOrderSummary) -> str:
        return ", ".join(f"{status}: {n}" for status, n in summary.orders_by_status.items())


@admin.register(ReadModelRebuild)
class ReadModelRebuildAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Runs of `manage.py rebuild_read_models`."""

    list_display = (
        "generation",
        "status",
        "started_at",
        "finished_at",
        "messages_read",
        "events_applied",
        "detail",
    )
    list_filter = ("status",)
