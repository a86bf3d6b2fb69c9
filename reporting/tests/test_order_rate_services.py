"""Orders per minute, the aggregator's step on its own (database only): windows, lateness,
revisions and the records still to publish."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from kafka_bridge.registry import OutputRecord
from reporting.models import OrderRateWindow, OrderRateWindowState
from reporting.services.order_rate import (
    order_rate_count,
    order_rate_records_pending,
    order_rate_records_published,
    order_rate_window_store,
)
from reporting.windows import (
    Arrival,
    OrderRateWindowRecord,
    WindowState,
    arrival,
    window_key,
    window_start,
)
from testing.streams import as_event, order_created_value, order_rate_record

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)


def at(minutes: int, seconds: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


@pytest.fixture(autouse=True)
def _two_minutes_lateness(settings) -> None:  # type: ignore[no-untyped-def]
    settings.REPORTING = {**settings.REPORTING, "ORDER_RATE_ALLOWED_LATENESS_SECONDS": 120}


# Orders in arrival order, with what each is: on time, late (within 2 minutes of event time
# after its window closed) or too late.
ARRIVALS = [
    at(0, 10),  # 10:00 on time
    at(0, 50),  # 10:00 on time
    at(1, 5),  # 10:01 on time; the watermark passes 10:01, so 10:00 closes (2 orders)
    at(0, 30),  # 10:00 late: counted, 10:00 published again (3 orders)
    at(1, 30),  # 10:01 on time
    at(4, 0),  # 10:04 on time; 10:01 closes (2 orders); 10:02 and 10:03 have none
    at(0, 20),  # 10:00 too late (the watermark 10:04 is past 10:01 + 2 min): counted apart
    at(2, 30),  # 10:02 late (10:04 < 10:03 + 2 min): a window of one late order
]

EXPECTED = {
    # window: (orders, late, too late)
    at(0): (3, 1, 1),
    at(1): (2, 0, 0),
    at(2): (1, 1, 0),
}


def _published_figures() -> dict[datetime, tuple[int, int, int]]:
    return {start: figures[:3] for start, figures in _published().items()}


def _revisions() -> dict[datetime, int]:
    return {start: figures[3] for start, figures in _published().items()}


def _published() -> dict[datetime, tuple[int, int, int, int]]:
    figures = {}
    for record in order_rate_records_pending():
        window = OrderRateWindowRecord.model_validate_json(record.value)
        assert record.key == window_key(window.window_start)
        assert window.window_end == window.window_start + timedelta(minutes=1)
        figures[window.window_start] = (
            window.orders,
            window.late_orders,
            window.too_late_orders,
            window.revision,
        )
    return figures


def test_windows_lateness_and_revisions_in_one_batch():
    # When the orders arrive as one batch
    order_rate_count(events=[as_event(order_created_value(t)) for t in ARRIVALS])

    # Then every closed window is to be published with its full figures, in its first
    # revision (one per batch that closes or changes it)
    assert _published_figures() == EXPECTED
    assert _revisions() == {at(0): 1, at(1): 1, at(2): 1}
    # and 10:04 is still open: counted, not published
    open_window = OrderRateWindowState.objects.get(window_start=at(4))
    assert (open_window.state, open_window.orders, open_window.revision) == (WindowState.OPEN, 1, 0)


def test_one_batch_per_order_gives_the_same_figures():
    # Batches do not change the figures (each order is judged against the watermark just
    # before it); each batch that closes or changes a window makes a new revision of it
    for moment in ARRIVALS:
        order_rate_count(events=[as_event(order_created_value(moment))])

    assert _published_figures() == EXPECTED
    assert _revisions() == {at(0): 3, at(1): 1, at(2): 1}


def test_published_windows_are_published_again_only_when_they_change():
    order_rate_count(events=[as_event(order_created_value(t)) for t in ARRIVALS])
    order_rate_records_published(order_rate_records_pending())
    assert order_rate_records_pending() == []

    # When one more late order comes for 10:02, and an on-time one for the open 10:04
    order_rate_count(events=[as_event(order_created_value(at(2, 45)))])
    order_rate_count(events=[as_event(order_created_value(at(4, 10)))])

    # Then only 10:02 is to be published, in its second revision
    assert _published() == {at(2): (2, 2, 0, 2)}


def test_an_older_revision_marked_published_does_not_hide_a_newer_one():
    order_rate_count(events=[as_event(order_created_value(t)) for t in ARRIVALS[:3]])
    stale = order_rate_records_pending()  # 10:00 at revision 1
    order_rate_count(events=[as_event(order_created_value(ARRIVALS[3]))])  # revision 2

    order_rate_records_published(stale)

    assert _published() == {at(0): (3, 1, 0, 2)}


def test_arrival_is_judged_against_the_watermark_before_the_order():
    lateness = timedelta(minutes=2)
    start = window_start(at(0, 59))
    assert start == at(0)
    assert arrival(start, watermark=None, lateness=lateness) is Arrival.ON_TIME
    assert arrival(start, watermark=at(0, 59), lateness=lateness) is Arrival.ON_TIME
    assert arrival(start, watermark=at(1), lateness=lateness) is Arrival.LATE
    assert arrival(start, watermark=at(2, 59), lateness=lateness) is Arrival.LATE
    assert arrival(start, watermark=at(3), lateness=lateness) is Arrival.TOO_LATE


def _record(revision: int, orders: int) -> OrderRateWindowRecord:
    return order_rate_record(at(0), orders=orders, revision=revision)


def test_the_reader_keeps_the_highest_revision_whatever_the_order():
    assert order_rate_window_store(record=_record(2, orders=5))
    assert not order_rate_window_store(record=_record(1, orders=4))  # older: ignored
    assert not order_rate_window_store(record=_record(2, orders=5))  # the same again
    assert order_rate_window_store(record=_record(3, orders=6))

    window = OrderRateWindow.objects.get(window_start=at(0))
    assert (window.orders, window.revision) == (6, 3)


def test_pending_records_name_the_revision_they_show():
    order_rate_count(events=[as_event(order_created_value(t)) for t in ARRIVALS[:3]])

    (record,) = order_rate_records_pending()

    assert isinstance(record, OutputRecord)
    assert record.ref == (at(0), 1)
    assert json.loads(record.value)["orders"] == 2
