"""The relay against the real broker and PostgreSQL: one publisher at a time, every row once,
per-key order, failures recorded and retried."""

import json
import re
import threading
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka import Producer
from django.db import connection, transaction

from kafka_bridge.client import pipeline_topics, producer_config, topic_name, topics_ensure
from kafka_bridge.models import OutboxEvent
from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.relay import OutboxRelay
from testing.kafka import topic_read_all
from testing.polling import wait_until
from tools.localservices import free_port

pytestmark = pytest.mark.integration


def _record(key: str, count: int, *, reason: str = "out_of_stock") -> list[OutboxEvent]:
    """`count` inventory.failed events for customer `key`, committed in one transaction."""
    events = []
    for _ in range(count):
        order_id = str(uuid.uuid4())
        data = {"order_id": order_id, "customer_id": int(key), "reason": reason}
        events.append(NewEvent("inventory.failed", order_id, key, data))
    with transaction.atomic():
        return outbox_events_record(events)


def _pending() -> int:
    return OutboxEvent.objects.filter(published_at__isnull=True).count()


def _drain(relay: OutboxRelay) -> None:
    wait_until(lambda: (relay.publish_batch(), not relay.active)[1], timeout=60)


@pytest.fixture
def topics(transactional_db, kafka_namespace: str) -> None:
    topics_ensure(pipeline_topics())


def test_two_relays_publish_every_row_once_in_per_key_order(pipeline):
    # Given two relays running side by side, with small batches so that they take turns
    relays = [pipeline.relay(OUTBOX_BATCH_SIZE="40") for _ in range(2)]
    wait_until(lambda: all("outbox relay started" in r.log() for r in relays), timeout=30)

    # When 10 customers each commit 12 transactions of 10 events, concurrently
    def customer_writes(key: str) -> None:
        try:
            for _ in range(12):
                _record(key, 10)
        finally:
            connection.close()

    keys = [str(k) for k in range(1, 11)]
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(customer_writes, keys))
    wait_until(lambda: _pending() == 0, timeout=60, message="every row stamped")

    # Then the topic holds every event exactly once, each customer's in the order recorded
    rows = list(OutboxEvent.objects.order_by("id").values_list("event_id", "key"))
    assert len(rows) == 1200
    messages = topic_read_all(topic_name("inventory"), expected=len(rows), timeout=60)
    published = [json.loads(m.value())["event_id"] for m in messages]
    assert sorted(published) == sorted(str(event_id) for event_id, _ in rows)
    expected_order: dict[str, list[str]] = defaultdict(list)
    for event_id, key in rows:
        expected_order[key].append(str(event_id))
    actual_order: dict[str, list[str]] = defaultdict(list)
    for message in messages:  # one key, one partition: consumed in offset order
        actual_order[message.key().decode()].append(json.loads(message.value())["event_id"])
    assert actual_order == expected_order
    # and by their own count the two relays published 1200 events between them
    for relay in relays:
        assert relay.terminate() == 0
    counts = [
        int(re.search(r"stopped after publishing (\d+) events", r.log()).group(1)) for r in relays
    ]
    assert sum(counts) == 1200, counts


def test_a_relay_publishes_nothing_while_another_holds_the_right(topics):
    # Given a relay in the middle of a backlog: it holds the right to publish
    _record("1", 30)
    first = OutboxRelay(batch_size=10)
    first.publish_batch()
    assert first.active

    # When a second relay (its own database session) tries a step
    def second_relay_step() -> tuple[int, bool, int]:
        try:
            second = OutboxRelay(batch_size=10)
            stamped = second.publish_batch()
            return stamped, second.active, len(second.producer)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        stamped, active, queued = pool.submit(second_relay_step).result()

    # Then it neither publishes nor takes the right
    assert (stamped, active, queued) == (0, False, 0)
    # and the first one finishes the backlog, then gives the right up
    _drain(first)
    assert _pending() == 0
    assert not first.active
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_acquire_in_own_session).result()


def _acquire_in_own_session() -> bool:
    relay = OutboxRelay()
    try:
        return relay.right.acquire()
    finally:
        relay.right.release()
        connection.close()


def test_a_row_committed_late_goes_out_before_later_events_of_its_key(topics):
    # Given a transaction that recorded an event of customer 1 and has not committed yet
    recorded, commit = threading.Event(), threading.Event()

    def slow_transaction() -> OutboxEvent:
        try:
            with transaction.atomic():
                row = _record("1", 1)[0]
                recorded.set()
                commit.wait(timeout=30)
            return row
        finally:
            connection.close()

    relay = OutboxRelay(batch_size=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(slow_transaction)
        assert recorded.wait(timeout=30)
        # and a relay already publishing a later id, committed first
        _record("2", 1)
        relay.publish_batch()
        commit.set()
        late = slow.result()

    # When customer 1's next event is recorded, after the late one committed
    later = _record("1", 1)[0]
    _drain(relay)

    # Then customer 1's events go out in the order they were recorded
    messages = topic_read_all(topic_name("inventory"), expected=3)
    customer_1 = [json.loads(m.value())["event_id"] for m in messages if m.key() == b"1"]
    assert late.id < later.id
    assert customer_1 == [str(late.event_id), str(later.event_id)]


def test_a_failed_delivery_is_recorded_and_retried(topics):
    # Given three events and a relay whose producer reaches no broker
    rows = _record("5", 3)
    nowhere = {
        **producer_config("test-unreachable"),
        "bootstrap.servers": f"127.0.0.1:{free_port()}",
        "message.timeout.ms": 500,
    }
    failing = OutboxRelay(producer=Producer(nowhere))

    # When it tries to publish them
    failing.publish_batch()
    failing.close()

    # Then each row records the failed attempt and stays pending
    for row in OutboxEvent.objects.filter(id__in=[r.id for r in rows]):
        assert row.published_at is None
        assert row.attempts == 1
        assert "timed out" in row.last_error.lower(), row.last_error

    # When a relay that reaches the broker runs
    _drain(OutboxRelay())

    # Then they are published, once each, and the failed attempt stays on record
    assert _pending() == 0
    messages = topic_read_all(topic_name("inventory"), expected=3)
    assert sorted(m.value() for m in messages) == sorted(bytes(r.value) for r in rows)
    assert set(OutboxEvent.objects.values_list("attempts", flat=True)) == {1}


def test_a_refused_message_holds_back_the_rows_after_it(topics):
    # Given three events of one customer, the middle one too large for any broker
    first = _record("9", 1)[0]
    too_large = _record("9", 1, reason="x" * 1_100_000)[0]
    last = _record("9", 1)[0]

    # When the relay works through them
    relay = OutboxRelay()
    for _ in range(3):
        relay.publish_batch()
    relay.close()

    # Then the first is published; the refusal is recorded; the last waits behind it
    states = {
        row.id: row for row in OutboxEvent.objects.filter(id__in=[first.id, too_large.id, last.id])
    }
    assert states[first.id].published_at is not None
    assert states[too_large.id].published_at is None
    assert states[too_large.id].attempts >= 1
    assert "too large" in states[too_large.id].last_error.lower()
    assert states[last.id].published_at is None
    assert states[last.id].attempts == 0
    (message,) = topic_read_all(topic_name("inventory"), expected=1)
    assert message.value() == bytes(first.value)


def test_a_caught_up_relay_stamps_a_row_with_its_next_read_at_the_acknowledgement_time(topics):
    # (In process, step by step: a relay process would also be woken by other tests' commits.)
    # Given a relay that has published the one pending row and caught up
    first = _record("3", 1)[0]
    relay = OutboxRelay(batch_size=10)
    relay.publish_batch()
    assert relay.active and not relay.idle  # produced, in flight

    # When it waits for the acknowledgement, as its loop does before waiting for a wake-up
    relay.acks_await_when_caught_up()

    # Then it spent no statement on stamping the row alone: the row is still pending ...
    assert relay.idle
    first.refresh_from_db()
    assert first.published_at is None
    # ... until the next step (the next commit's wake-up) stamps it with its read
    second = _record("3", 1)[0]
    assert relay.publish_batch() == 1
    first.refresh_from_db()
    # with the time of its acknowledgement, from before the second row existed
    assert first.published_at is not None
    assert first.published_at < second.created_at
    _drain(relay)
    assert _pending() == 0
    messages = topic_read_all(topic_name("inventory"), expected=2)
    assert [m.value() for m in messages] == [bytes(first.value), bytes(second.value)]
