"""Reads of the read side: the tables staff see through the admin and the staff API."""

from datetime import date, datetime

from django.db.models import QuerySet
from django.utils import timezone

from reporting.models import (
    CustomerOrderSummary,
    OrderRateWindow,
    ProductDailySales,
    ReadModelState,
)
from reporting.windows import WINDOW, window_start


def order_rate_windows_recent(
    *, minutes: int, now: datetime | None = None
) -> QuerySet[OrderRateWindow]:
    """The published windows among the last `minutes` one-minute windows (the current one
    included), oldest first. Minutes without orders have no window; the current minute
    appears once it has closed."""
    return OrderRateWindow.objects.filter(
        window_start__gte=order_rate_since(minutes=minutes, now=now)
    ).order_by("window_start")


def order_rate_since(*, minutes: int, now: datetime | None = None) -> datetime:
    return window_start(now or timezone.now()) - (minutes - 1) * WINDOW


def read_models_generation() -> int:
    """The generation readers see (1 until the first rebuild)."""
    return (
        ReadModelState.objects.filter(pk=1).values_list("live_generation", flat=True).first() or 1
    )


def product_sales_list(
    *, since: date | None = None, until: date | None = None, sku: str = ""
) -> QuerySet[ProductDailySales]:
    """Sales per product per day of the live generation, newest day first."""
    rows = ProductDailySales.objects.filter(generation=read_models_generation())
    if since:
        rows = rows.filter(day__gte=since)
    if until:
        rows = rows.filter(day__lte=until)
    if sku:
        rows = rows.filter(sku=sku)
    return rows.order_by("-day", "sku", "currency")


def customer_summary_list(*, customer_id: int | None = None) -> QuerySet[CustomerOrderSummary]:
    """Per-customer summaries of the live generation, highest lifetime value first."""
    rows = CustomerOrderSummary.objects.filter(generation=read_models_generation())
    if customer_id is not None:
        rows = rows.filter(customer_id=customer_id)
    return rows.order_by("-lifetime_value", "customer_id")
