"""Shutdown and rebalances of the real worker processes."""

import signal
import time

import pytest

from kafka_bridge.client import group_name, topic_name
from kafka_bridge.models import ProcessedEvent
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.kafka import committed_offset, topic_read_all
from testing.polling import wait_until

pytestmark = pytest.mark.integration


def test_sigterm_during_retries_exits_promptly_and_leaves_the_event_uncommitted(pipeline):
    # Given an orders consumer stuck retrying a charge against a provider that is down
    pipeline.relay()
    pipeline.consumer("inventory")
    slow_retries = {
        "KAFKA_HANDLER_BACKOFF_BASE_SECONDS": "5",
        "KAFKA_HANDLER_BACKOFF_MAX_SECONDS": "5",
    }
    stuck = pipeline.consumer("orders", **slow_retries)
    order_id = order_place_via_api(
        customer_create(), product_with_stock().sku, 1, payment_token="tok_unavailable"
    )
    wait_until(lambda: "retrying in" in stuck.log(), timeout=30, message="a retry under way")

    # When it is asked to stop
    started = time.monotonic()
    code = stuck.terminate(timeout=15)

    # Then it stops at once (not after its backoff), cleanly, without committing the event
    assert code == 0
    assert time.monotonic() - started < 5
    assert "consumer orders stopped" in stuck.log()
    inventory_topic = topic_name("inventory")
    partitions = range(4)
    committed = [committed_offset(group_name("orders"), inventory_topic, p) for p in partitions]
    assert all(offset < 1 for offset in committed), committed  # nothing past the event
    assert not ProcessedEvent.objects.filter(consumer_group=group_name("orders")).exists()
    assert order_id


def test_a_second_signal_exits_immediately(pipeline):
    relay = pipeline.relay()
    wait_until(lambda: "outbox relay started" in relay.log(), timeout=30)
    # Hold the relay in its shutdown: send the two signals back to back.
    relay.process.send_signal(signal.SIGTERM)
    relay.process.send_signal(signal.SIGTERM)
    code = relay.wait(timeout=10)
    assert code in (0, 128 + signal.SIGTERM)  # either finished first, or was cut short
    relay.killed = True  # already gone; the fixture must not wait for it again


def test_revoked_partitions_are_committed_before_they_move(pipeline):
    # Given one inventory consumer that commits only when it must (never on its timer)
    product = product_with_stock(on_hand=1000)
    customers = [customer_create() for _ in range(12)]  # keys spread over the partitions
    first = pipeline.consumer("inventory", KAFKA_COMMIT_INTERVAL_SECONDS="3600")
    pipeline.relay()
    for customer in customers:
        order_place_via_api(customer, product.sku, 1)
    wait_until(
        lambda: (
            ProcessedEvent.objects.filter(consumer_group=group_name("inventory")).count()
            == len(customers)
        ),
        timeout=30,
        message="all orders.created processed",
    )

    # When a second process joins and takes some partitions away
    second = pipeline.consumer("inventory")
    wait_until(lambda: "revoked" in first.log(), timeout=30, message="rebalance")

    # Then the moved partitions' offsets were committed by the revoke callback, so the
    # newcomer starts after them and processes nothing twice
    orders_topic = topic_name("orders")
    ends = _end_offsets(orders_topic, expected=len(customers))
    moved = [p for p in ends if f"{orders_topic}[{p}]" in _revoked_line(first.log())]
    assert moved
    for partition in moved:
        assert committed_offset(group_name("inventory"), orders_topic, partition) == ends[partition]
    assert "duplicate event" not in second.log()


def _revoked_line(log: str) -> str:
    return next(line for line in log.splitlines() if "revoked" in line)


def _end_offsets(topic: str, expected: int) -> dict[int, int]:
    """Next offset per partition, found by reading the `expected` messages (end offsets
    from the broker are not trusted: our test broker reports them wrongly)."""
    ends: dict[int, int] = {}
    for message in topic_read_all(topic, expected=expected):
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    return ends


@pytest.mark.apache_kafka
def test_kafka_topics_end_offsets_match_what_was_published(pipeline, capsys):
    """End offsets (and so lag) from standard admin calls; our test broker lacks them."""
    from django.core.management import call_command

    pipeline.relay()
    customer, product = customer_create(), product_with_stock()
    for _ in range(5):
        order_place_via_api(customer, product.sku, 1)
    _end_offsets(topic_name("orders"), expected=5)
    call_command("kafka_topics", list_only=True)
    row = next(
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(topic_name("orders") + " ")
    )
    assert row.split()[-1] == "5"


# The client settings of local runs (docs/running.md): with the tests' shorter session
# timeout the broker does not show the wedge.
LOCAL_RUN_GROUP_SETTINGS = {
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
}


@pytest.mark.parametrize("seconds_into_join", [0.0, 1.0])
def test_a_consumer_stopped_during_its_join_does_not_wedge_its_group(pipeline, seconds_into_join):
    # Given a consumer stopped while its group is still forming (a crash-looping or
    # redeployed worker); before the fix its replacements waited 80 s and more, unassigned
    first = pipeline.consumer("inventory", **LOCAL_RUN_GROUP_SETTINGS)
    wait_until(lambda: "consumer inventory started" in first.log(), timeout=60)
    time.sleep(seconds_into_join)  # the moment of the stop within the join, not a wait
    assert first.terminate(timeout=30) == 0
    assert "completing the join first" in first.log()

    # When a replacement starts
    started = time.monotonic()
    replacement = pipeline.consumer("inventory", **LOCAL_RUN_GROUP_SETTINGS)

    # Then it is assigned partitions within a normal join (about half a session timeout)
    wait_until(lambda: "assigned" in replacement.log(), timeout=30, message="an assignment")
    print(f"\nreplacement assigned after {time.monotonic() - started:.1f}s")
