"""Relay wake-ups go through Redis, and nothing that commits events waits for them."""

import logging
import time
import uuid

import pytest
from django.db import transaction

from common.redis_client import redis_client
from kafka_bridge.models import OutboxEvent
from kafka_bridge.outbox import (
    RELAY_WAKE_CHANNEL,
    NewEvent,
    outbox_events_record,
    relay_wake,
    relay_wake_deferred,
    relay_waker,
)
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.faults import service_frozen
from testing.polling import wait_until
from testing.services import SERVICES

pytestmark = pytest.mark.django_db(transaction=True)  # wake-ups are sent after commit

# The Redis client's socket timeout (common.redis_client): a request that waited for
# a wake-up during a freeze would take at least this long.
REDIS_SOCKET_TIMEOUT_S = 2.0


def test_a_frozen_redis_does_not_slow_order_creation(caplog, settings):
    # Rate limits on, as in production: their counters live in Redis too
    settings.API_THROTTLING = True
    redis_service = SERVICES.local.get("redis")
    if redis_service is None:
        pytest.skip(f"Redis comes from {SERVICES.redis_source!r}: this harness cannot freeze it")
    product = product_with_stock(on_hand=1_000)
    customer = customer_create()
    order_place_via_api(customer, product.sku)  # connections and caches warm

    # When Redis is frozen while a customer places 30 orders, one at a time
    seconds = []
    with caplog.at_level(logging.WARNING):
        with service_frozen(redis_service):
            for _ in range(30):
                started = time.monotonic()
                order_place_via_api(customer, product.sku)
                seconds.append(time.monotonic() - started)
            # (held until the waker's own publish has timed out on the frozen socket)
            wait_until(lambda: relay_waker.backoff.down, timeout=REDIS_SOCKET_TIMEOUT_S + 5)
        assert relay_waker.wait_idle(timeout=REDIS_SOCKET_TIMEOUT_S + 5)

    # Then no request waited for the wake-up: all well under the socket timeout
    seconds.sort()
    assert seconds[-1] < REDIS_SOCKET_TIMEOUT_S / 2, f"slowest {seconds[-1]:.2f}s"
    # and the outage was logged once, not once per order, by each of the two
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "wake-ups paused" in m]) == 1, messages
    assert len([m for m in messages if "rate limits off" in m]) == 1, messages
    print(f"\n30 orders, Redis frozen: p50 {seconds[15]:.3f}s, max {seconds[-1]:.3f}s")


def test_wake_ups_reach_relays_again_once_redis_answers():
    # Given a relay-like subscriber, after an outage was recorded
    relay_waker.backoff.failed()
    subscriber = redis_client().pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(RELAY_WAKE_CHANNEL)
    arrived = []
    try:
        # When commits keep asking for wake-ups
        def woken() -> bool:
            relay_wake()
            if subscriber.get_message(timeout=0.2) is not None:
                arrived.append(True)
            # the waker's thread records the end of the outage just after its publish
            # returns, so possibly a moment after the subscriber got the message
            return bool(arrived) and not relay_waker.backoff.down

        # Then one arrives once the back-off has passed, and the outage is recorded over
        wait_until(woken, timeout=relay_waker.backoff.seconds + 10, interval=0.2)
    finally:
        subscriber.close()
    assert arrived and not relay_waker.backoff.down


def test_events_recorded_with_the_wake_deferred_leave_the_wake_up_to_the_next_ones():
    # (The hooks a commit will run, not Redis: other test processes wake relays too.)
    def wakes_on_commit() -> int:
        hooks = transaction.get_connection().run_on_commit
        return sum(1 for _, hook, _ in hooks if hook is relay_wake)

    with transaction.atomic():
        # Given events recorded while the wake-up is deferred (a reservation before its charge)
        with relay_wake_deferred():
            outbox_events_record([_failed_event("1")])
        # Then their commit would wake no relay ...
        assert wakes_on_commit() == 0
        # ... and the deferral ends with its block: the next events (the charge's) wake it
        outbox_events_record([_failed_event("1")])
        assert wakes_on_commit() == 1
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 2


def _failed_event(key: str) -> NewEvent:
    order_id = str(uuid.uuid4())
    data = {"order_id": order_id, "customer_id": int(key), "reason": "out_of_stock"}
    return NewEvent("inventory.failed", order_id, key, data)
