"""Orders per minute, exactly once: `order_rate_count` is the aggregator's step (consumer
order_rate); `order_rate_records_pending` / `order_rate_records_published` are its output
bookkeeping (kafka_bridge.consumer.transactional); `order_rate_window_store` keeps the
topic's records for the staff API (consumer order_rate_windows)."""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from kafka_bridge.contracts import Event
from kafka_bridge.registry import OutputRecord
from kafka_bridge.sql import rows_update
from reporting.models import (
    OrderRateWatermark,
    OrderRateWindow,
    OrderRateWindowState,
)
from reporting.windows import (
    WINDOW,
    Arrival,
    OrderRateWindowRecord,
    WindowState,
    arrival,
    window_closed,
    window_start,
    window_transition_check,
)

logger = logging.getLogger(__name__)


@dataclass
class _Arrivals:
    orders: int = 0
    late: int = 0
    too_late: int = 0


def _allowed_lateness() -> timedelta:
    return timedelta(seconds=settings.REPORTING["ORDER_RATE_ALLOWED_LATENESS_SECONDS"])


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def order_rate_count(*, events: Sequence[Event]) -> None:
    """Count `orders.created` events into their one-minute windows (reporting.windows), in
    the order given, advance the watermark, and close the windows it passed. Every window a
    reader must see again gets a new revision. The events must be new to the aggregator
    (the consumer runtime drops those already counted, in this same transaction)."""
    if not events:
        return
    lateness = _allowed_lateness()
    # Locking the clock serialises the aggregator's batches: one watermark for all instances.
    clock, _ = OrderRateWatermark.objects.select_for_update().get_or_create(pk=1)
    watermark = clock.event_time
    arrivals: dict[datetime, _Arrivals] = defaultdict(_Arrivals)
    for event in events:
        occurred = event.envelope.occurred_at
        start = window_start(occurred)
        how = arrival(start, watermark=watermark, lateness=lateness)
        counts = arrivals[start]
        if how is Arrival.TOO_LATE:
            counts.too_late += 1
            logger.warning(
                "order %s of %s arrived too late (watermark %s): counted apart",
                event.envelope.aggregate_id,
                start.isoformat(),
                watermark.isoformat() if watermark else None,
            )
        else:
            counts.orders += 1
            if how is Arrival.LATE:
                counts.late += 1
        watermark = occurred if watermark is None else max(watermark, occurred)
    assert watermark is not None

    windows = {
        window.window_start: window
        for window in OrderRateWindowState.objects.select_for_update()
        .filter(
            Q(window_start__in=arrivals)
            | Q(state=WindowState.OPEN, window_start__lte=watermark - WINDOW)
        )
        .order_by("window_start")
    }
    created = {
        start: OrderRateWindowState(window_start=start)
        for start in arrivals
        if start not in windows
    }
    windows.update(created)
    for start, window in windows.items():
        counts = arrivals.get(start, _Arrivals())
        window.orders += counts.orders
        window.late_orders += counts.late
        window.too_late_orders += counts.too_late
        if not window_closed(start, watermark=watermark):
            continue
        if window.state == WindowState.OPEN:
            window_transition_check(current=window.state, target=WindowState.CLOSED)
            window.state = WindowState.CLOSED
            window.revision += 1
        elif counts.orders or counts.too_late:
            window.revision += 1  # a late order changed a published window
    OrderRateWindowState.objects.bulk_create(created.values())
    rows_update(
        OrderRateWindowState,
        [window for start, window in windows.items() if start not in created],
        ["orders", "late_orders", "too_late_orders", "state", "revision"],
    )
    clock.event_time = watermark
    clock.save(update_fields=["event_time"])


def _record_of(window: OrderRateWindowState) -> OrderRateWindowRecord:
    return OrderRateWindowRecord(
        window_start=window.window_start,
        window_end=window.window_end,
        orders=window.orders,
        late_orders=window.late_orders,
        too_late_orders=window.too_late_orders,
        revision=window.revision,
    )


def order_rate_records_pending() -> list[OutputRecord]:
    """The record of every closed window whose latest revision is not known to be published."""
    pending = OrderRateWindowState.objects.filter(revision__gt=F("published_revision"))
    records = []
    for window in pending.order_by("window_start"):
        record = _record_of(window)
        records.append(
            OutputRecord(
                key=record.key,
                value=record.model_dump_json().encode(),
                ref=(window.window_start, window.revision),
            )
        )
    return records


def order_rate_records_published(records: Sequence[OutputRecord]) -> None:
    """These records are in a committed Kafka transaction."""
    with transaction.atomic():
        for record in records:
            start, revision = record.ref
            OrderRateWindowState.objects.filter(
                window_start=start, published_revision__lt=revision
            ).update(published_revision=revision)


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def order_rate_window_store(*, record: OrderRateWindowRecord) -> bool:
    """Keep a window record from metrics.order.rate unless one of the same or a later
    revision is already kept; return whether it was kept."""
    kept = OrderRateWindow.objects.select_for_update().filter(window_start=record.window_start)
    window = kept.first() or OrderRateWindow(window_start=record.window_start)
    if window.revision >= record.revision:
        return False
    window.orders = record.orders
    window.late_orders = record.late_orders
    window.too_late_orders = record.too_late_orders
    window.revision = record.revision
    window.save()
    return True
