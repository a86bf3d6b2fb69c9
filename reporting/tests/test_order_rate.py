"""Orders per minute end to end, over real processes and the real broker: orders.created
events with known times → the order_rate aggregator (Kafka transactions) →
metrics.order.rate → the order_rate_windows consumer → the table the staff API reads."""

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Producer
from django.utils import timezone

from kafka_bridge.client import producer_config, topic_name
from reporting.consumers import ORDER_RATE_TOPIC
from reporting.models import OrderRateWindow, OrderRateWindowState
from reporting.windows import OrderRateWindowRecord, window_key, window_start
from testing.factories import api_client_for, staff_create
from testing.kafka import messages_produce, topic_read_all, topic_read_until
from testing.polling import wait_until
from testing.streams import order_created_value, order_rate_record, order_status_value

pytestmark = pytest.mark.integration

# Two minutes of allowed lateness, in event time.
LATENESS = {"ORDER_RATE_ALLOWED_LATENESS_SECONDS": "120"}


Minute = Callable[..., datetime]


@pytest.fixture
def m() -> Minute:
    """`m(minutes, seconds)`: a time in the minute `minutes` after a base half an hour ago
    (so the API's last hour covers every window), fixed for the whole test."""
    base = window_start(timezone.now()) - timedelta(minutes=30)

    def minute(minutes: int, seconds: int = 0) -> datetime:
        return base + timedelta(minutes=minutes, seconds=seconds)

    return minute


def _figures() -> dict[datetime, tuple[int, int, int]]:
    """The published windows as the staff API's table holds them: (orders, late, too late)."""
    return {
        w.window_start: (w.orders, w.late_orders, w.too_late_orders)
        for w in OrderRateWindow.objects.all()
    }


def _wait_for_figures(
    expected: dict, timeout: float = 60, *, probe: Callable[[], dict] = _figures
) -> None:
    """Wait until `probe()` (default: the published figures) equals `expected`."""
    try:
        wait_until(lambda: probe() == expected, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"published windows: {probe()}, expected {expected}") from None


def _orders_at(times: list[datetime], *, customer_id: int = 7) -> list[bytes]:
    return [order_created_value(t, customer_id=customer_id) for t in times]


def test_orders_with_known_times_give_exact_counts_per_minute_late_ones_included(pipeline, m):
    # Given the aggregator (two minutes of lateness) and the reader of its topic
    pipeline.consumer("order_rate", **LATENESS)
    pipeline.consumer("order_rate_windows")

    # When orders of one customer (one partition: this arrival order) come in, with other
    # event types between them, and one of them delivered twice (the relay may do that)
    values = _orders_at(
        [
            m(0, 10),
            m(0, 50),
            m(1, 5),  # the watermark passes minute 1: minute 0 closes with 2
            m(0, 30),  # late: minute 0 is published again with 3
            m(1, 30),
            m(4, 0),  # minute 1 closes with 2
            m(0, 20),  # too late (watermark minute 4 ≥ minute 1 + 2 min): counted apart
            m(2, 30),  # late: minute 2 with one late order
            m(7, 0),  # minute 4 closes with 1
        ]
    )
    other = order_status_value(
        m(1, 40), order_id=uuid.uuid4(), customer_id=7, previous="reserved", status="paid"
    )
    messages_produce("orders", "7", [*values[:3], other, values[3], values[3], *values[4:]])

    # Then each closed minute is published with its exact figures (minute 7 is still open)
    expected = {m(0): (3, 1, 1), m(1): (2, 0, 0), m(2): (1, 1, 0), m(4): (1, 0, 0)}
    _wait_for_figures(expected)
    assert not OrderRateWindow.objects.filter(window_start=m(7)).exists()
    assert OrderRateWindowState.objects.get(window_start=m(7)).orders == 1

    # and the staff API answers from that table
    response = api_client_for(staff_create()).get("/api/metrics/order-rate/?minutes=60")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["orders"], body["too_late_orders"]) == (7, 1)
    assert [(w["orders"], w["late_orders"], w["too_late_orders"]) for w in body["windows"]] == list(
        expected.values()
    )

    # and the topic holds full counts keyed by window start: per window, the record of the
    # latest revision carries the figures
    latest = dict(
        OrderRateWindowState.objects.filter(published_revision__gt=0).values_list(
            "window_start", "published_revision"
        )
    )
    last = _latest_records(latest)
    assert {start: (r.orders, r.late_orders, r.too_late_orders) for start, r in last.items()} == {
        start: figures for start, figures in expected.items()
    }


def _latest_records(revisions: dict[datetime, int]) -> dict[datetime, OrderRateWindowRecord]:
    """Read metrics.order.rate until each window's record of this revision came; return
    them (checking each is keyed by its window start)."""

    def records(messages: list) -> dict[datetime, OrderRateWindowRecord]:
        found = {}
        for message in messages:
            record = OrderRateWindowRecord.model_validate_json(message.value())
            assert message.key() == window_key(record.window_start)
            if record.revision == revisions.get(record.window_start):
                found[record.window_start] = record
        return found

    messages = topic_read_until(
        topic_name(ORDER_RATE_TOPIC), lambda messages: len(records(messages)) == len(revisions)
    )
    return records(messages)


def test_sigkill_of_the_aggregator_mid_window_then_restart_still_gives_exact_counts(pipeline, m):
    # Given an aggregator that commits no transaction on its own while running (so when it
    # dies, none of its input offsets are committed), and the reader of its topic
    victim = pipeline.consumer(
        "order_rate", KAFKA_COMMIT_INTERVAL_SECONDS="3600", label="order_rate-victim", **LATENESS
    )
    pipeline.consumer("order_rate_windows")
    first = _orders_at([m(0, 5), m(0, 15), m(1, 0), m(1, 20), m(2, 0), m(2, 10)])
    messages_produce("orders", "7", first)

    # When it has counted them (minute 2 open, with 2 orders), it is SIGKILLed
    wait_until(
        lambda: sum(OrderRateWindowState.objects.values_list("orders", flat=True)) == 6,
        timeout=60,
        message="the first six orders counted",
    )
    assert OrderRateWindowState.objects.get(window_start=m(2)).state == "open"
    victim.kill()

    # and more orders arrive while it is down: minute 2 goes on, a late one for minute 1,
    # and time moves on to minute 5
    messages_produce("orders", "7", _orders_at([m(2, 40), m(1, 50), m(3, 5), m(5, 0)]))
    survivor = pipeline.consumer("order_rate", **LATENESS)

    # Then every order is counted exactly once: the restarted aggregator read the first six
    # again (their offsets were never committed) and recognised them as counted
    _wait_for_figures({m(0): (2, 0, 0), m(1): (3, 1, 0), m(2): (3, 0, 0), m(3): (1, 0, 0)})
    wait_until(lambda: survivor.log().count("duplicate event") == 6, timeout=30)
    assert OrderRateWindowState.objects.get(window_start=m(5)).orders == 1


def test_a_malformed_record_on_the_rate_topic_is_dead_lettered_and_the_next_one_kept(pipeline, m):
    # Given the reader of metrics.order.rate
    reader = pipeline.consumer("order_rate_windows")
    start = m(0)
    good = order_rate_record(start, orders=4)

    # When a record that is not a window comes first on the window's partition
    messages_produce(
        ORDER_RATE_TOPIC,
        window_key(start).decode(),
        [b'{"orders": "many"}', good.model_dump_json().encode()],
    )

    # Then it goes to metrics.order.rate.dlq with the reason, and the good record is kept
    wait_until(lambda: _figures() == {start: (4, 0, 0)}, timeout=60)
    (dead,) = topic_read_all(topic_name(f"{ORDER_RATE_TOPIC}.dlq"), expected=1)
    headers = dict(dead.headers())
    assert b"PermanentEventError" in headers["dlq.error_class"]
    assert b"not an order-rate window record" in headers["dlq.error_message"]
    assert "dead-lettered" in reader.log()


@pytest.mark.apache_kafka
def test_aborted_output_is_never_visible_to_readers(pipeline, m):
    # Given a transaction on the rate topic that wrote a record and was aborted (what a crash
    # between produce and commit leaves behind), with an impossible revision and count
    start = m(0)
    producer = Producer(
        {**producer_config("test-aborted"), "transactional.id": f"{topic_name('aborted')}.test"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    aborted = order_rate_record(start, orders=999, revision=99)
    producer.produce(
        topic_name(ORDER_RATE_TOPIC), key=aborted.key, value=aborted.model_dump_json().encode()
    )
    producer.flush(30)
    producer.abort_transaction(30)

    # When the aggregator publishes that window for real, and the reader runs
    pipeline.consumer("order_rate", **LATENESS)
    pipeline.consumer("order_rate_windows")
    messages_produce("orders", "7", _orders_at([m(0, 10), m(0, 20), m(1, 0)]))

    # Then the reader kept the committed record only (revision 99 would have won otherwise)
    _wait_for_figures({start: (2, 0, 0)})
    assert OrderRateWindow.objects.get(window_start=start).revision == 1
    # and a read_committed reader of the topic sees no trace of the aborted record
    committed = topic_read_all(topic_name(ORDER_RATE_TOPIC), expected=1)
    assert [json.loads(message.value())["orders"] for message in committed] == [2]


def test_two_aggregator_instances_share_the_partitions_and_the_counts(pipeline, m):
    # Given two instances of the aggregator, each with its own transactional.id, sharing the
    # orders topic's partitions, and five minutes of lateness (nothing arrives too late)
    instances = [
        pipeline.consumer(
            "order_rate",
            KAFKA_INSTANCE_ID=name,
            ORDER_RATE_ALLOWED_LATENESS_SECONDS="300",
            label=f"order_rate-{name}",
        )
        for name in ("a", "b")
    ]
    pipeline.consumer("order_rate_windows")
    # (cooperative-sticky: once the second has partitions, the first has given them up)
    wait_until(
        lambda: all(re.search(r"assigned \S+\[\d+\]", i.log()) for i in instances),
        timeout=30,
        message="both instances own partitions",
    )

    # When 24 customers (all partitions) each place an order in each of minutes 0 to 2
    for customer_id in range(1, 25):
        times = [m(minute, customer_id) for minute in range(3)]
        messages_produce("orders", str(customer_id), _orders_at(times, customer_id=customer_id))
    wait_until(
        lambda: sum(OrderRateWindowState.objects.values_list("orders", flat=True)) == 72,
        timeout=60,
        message="72 orders counted",
    )
    # and one more order moves the watermark past minute 2
    messages_produce("orders", "1", _orders_at([m(4)], customer_id=1))

    # Then each minute is published with its exact count, whichever instance counted what
    # (which of them came late depends on how the instances' batches interleaved)
    _wait_for_figures(
        {m(minute): (24, 0) for minute in range(3)},
        probe=lambda: {start: (f[0], f[2]) for start, f in _figures().items()},
    )
    ids = {found for i in instances for found in re.findall(r"transactional\.id (\S+)", i.log())}
    assert len(ids) == 2 and all(i.endswith((".a", ".b")) for i in ids)
    for instance in instances:
        assert instance.terminate() == 0
        assert int(re.search(r"processed=(\d+)", instance.log()).group(1)) > 0, instance.log()
