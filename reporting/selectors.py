"""Reads of the read side: the tables staff see through the admin and the staff API, and
the figures of the admin's pipeline dashboard."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from kafka_bridge.selectors import events_recorded_per_minute
from orders.selectors import orders_placed_per_minute
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


@dataclass(frozen=True)
class MinuteCounts:
    minute: datetime  # start of the minute, UTC
    orders: int
    events: int


def pipeline_minutes(*, minutes: int = 60, now: datetime | None = None) -> list[MinuteCounts]:
    """Orders placed and events recorded (outbox rows) in each of the last `minutes`
    minutes, oldest first, the current minute last; minutes without any are zeros."""
    end = (now or timezone.now()).astimezone(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    orders = orders_placed_per_minute(since=start)
    events = events_recorded_per_minute(since=start)
    return [
        MinuteCounts(minute=at, orders=orders.get(at, 0), events=events.get(at, 0))
        for at in (start + timedelta(minutes=i) for i in range(minutes))
    ]
