"""What batching adds, against real worker processes and the real broker: a poison event in
the middle of a batch, one event twice in a batch, SIGKILL and SIGTERM while a batch is in
hand, and partitions revoked while a batch is in hand.

Events that must land in one batch are produced before their consumer starts: its first
fetch then brings them all, and the consumer takes them as one batch (its log says so)."""

import json

import pytest

from kafka_bridge.client import group_name, topic_name
from kafka_bridge.models import DeadLetter, ProcessedEvent
from notifications.models import Notification
from orders.models import Payment
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.kafka import committed_offset, messages_produce, order_paid_event, topic_read_all
from testing.polling import wait_until
from testing.saga import gateway_calls, order_status

pytestmark = pytest.mark.integration

SLOW_PROVIDER = {"PAYMENTS_FAKE_LATENCY_MS": "4000"}


def _notified_event_ids() -> set[str]:
    return {str(i) for i in Notification.objects.values_list("event_id", flat=True)}


def test_a_poison_event_mid_batch_is_dead_lettered_and_the_events_around_it_commit(pipeline):
    # Given five events on one partition, the middle one naming a customer that does not
    # exist (a permanent error inside the handler, which fails the whole batch)
    customer = customer_create()
    good = [order_paid_event(customer.pk) for _ in range(4)]
    poison_id, poison = order_paid_event(999_999_999)
    values = [value for _, value in good]
    messages_produce("orders", str(customer.pk), [*values[:2], poison, *values[2:]])

    # When the notifications consumer takes them as one batch
    pipeline.consumer("dead_letters")
    notifications = pipeline.consumer("notifications")
    wait_until(
        lambda: len(_notified_event_ids()) == 4 and DeadLetter.objects.count() == 1,
        timeout=60,
        message="four notifications and one dead letter",
    )

    # Then the batch failed once, was split, and the failing event alone was dead-lettered
    assert "batch of 5 failed" in notifications.log()
    assert _notified_event_ids() == {event_id for event_id, _ in good}
    letter = DeadLetter.objects.get()
    assert str(letter.event_id) == poison_id
    assert letter.error_class.endswith("DoesNotExist")
    assert letter.attempts == 1


def test_an_undecodable_message_mid_batch_does_not_split_the_batch(pipeline):
    customer = customer_create()
    good = [order_paid_event(customer.pk) for _ in range(4)]
    values = [value for _, value in good]
    messages_produce("orders", str(customer.pk), [*values[:2], b"\x00 not JSON", *values[2:]])

    pipeline.consumer("dead_letters")
    notifications = pipeline.consumer("notifications")
    wait_until(
        lambda: len(_notified_event_ids()) == 4 and DeadLetter.objects.count() == 1,
        timeout=60,
        message="four notifications and one dead letter",
    )

    # The bytes were known to be poison before anything ran: the rest committed as one unit
    assert "failed" not in notifications.log()
    assert DeadLetter.objects.get().error_class.endswith("EventDecodeError")


def test_a_group_passes_over_other_groups_types_by_header_and_dead_letters_unknown_ones(
    pipeline,
):
    # Given, on one partition of the orders topic, bytes that are no event at all under the
    # header of a type another group handles (orders.paid: not the inventory group's), the
    # same under a type nobody registered, a real orders.paid, and a last unknown one
    customer = customer_create()
    _, paid = order_paid_event(customer.pk)
    values = [b"\x00 not JSON", b"\x00 not JSON either", paid, b"\x00 the last one"]
    types = [b"orders.paid", b"orders.teleported", b"orders.paid", b"orders.teleported"]
    messages_produce(
        "orders", str(customer.pk), values, headers=[[("event_type", t)] for t in types]
    )

    # When the inventory group reads them
    pipeline.consumer("dead_letters")
    pipeline.consumer("inventory")
    last = topic_read_all(topic_name("orders"), expected=4)[-1]
    wait_until(
        lambda: (
            committed_offset(group_name("inventory"), last.topic(), last.partition())
            == last.offset() + 1
        ),
        timeout=60,
        message="the inventory group past all four",
    )

    # Then it decoded and dead-lettered the unknown types only (dead letters keep the order
    # of their partition: once the last is stored, any before it is too); the other
    # group's bytes were passed over as its real event was
    wait_until(
        lambda: DeadLetter.objects.filter(value=values[-1]).exists(),
        timeout=30,
        message="the last dead letter",
    )
    letters = DeadLetter.objects.order_by("original_offset")
    assert [bytes(letter.value) for letter in letters] == [values[1], values[3]]
    assert {letter.consumer_group for letter in letters} == {group_name("inventory")}
    assert all(letter.error_class.endswith("EventDecodeError") for letter in letters)


def test_the_same_event_twice_in_one_batch_has_one_effect(pipeline):
    customer = customer_create()
    (twice_id, twice), (other_id, other) = (
        order_paid_event(customer.pk),
        order_paid_event(customer.pk),
    )
    messages_produce("orders", str(customer.pk), [twice, other, twice])

    notifications = pipeline.consumer("notifications")
    wait_until(
        lambda: f"duplicate event {twice_id} skipped (batch)" in notifications.log(),
        timeout=60,
        message="the repeat recognised within the batch",
    )

    assert _notified_event_ids() == {twice_id, other_id}
    assert Notification.objects.filter(event_id=twice_id).count() == 1


def _orders_awaiting_payment(pipeline, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """`count` orders whose inventory.reserved events are all published, before any orders
    consumer runs: the first one to start takes them as one batch."""
    product = product_with_stock(on_hand=100)
    customers = [customer_create() for _ in range(3)]  # keys over several partitions
    pipeline.relay()
    pipeline.consumer("inventory")
    order_ids = [order_place_via_api(customers[i % 3], product.sku, 1) for i in range(count)]
    topic_read_all(topic_name("inventory"), expected=count, timeout=60)
    return order_ids


def _charging(worker, count: int) -> None:  # type: ignore[no-untyped-def]
    wait_until(
        lambda: f"charging {count} order(s)" in worker.log(),
        timeout=60,
        message=f"a batch of {count} charges in flight",
    )


def test_sigkill_mid_batch_applies_nothing_of_it_and_a_restart_completes_it_once(pipeline):
    # Given an orders consumer killed while its batch waits on a slow payment provider
    order_ids = _orders_awaiting_payment(pipeline, 6)
    doomed = pipeline.consumer("orders", **SLOW_PROVIDER)
    _charging(doomed, 6)
    doomed.kill()

    # Then nothing of the batch's transaction is there: no payment, no processed mark
    assert not Payment.objects.exists()
    assert not ProcessedEvent.objects.filter(consumer_group=group_name("orders")).exists()

    # And a new process redoes the batch: every order paid, charged exactly once
    pipeline.consumer("orders")
    for order_id in order_ids:
        wait_until(lambda o=order_id: order_status(o) == "paid", timeout=60, message="paid")
    for order_id in order_ids:
        assert gateway_calls(order_id) == {"charge": 1}
        assert Payment.objects.filter(order_id=order_id).count() == 1


def test_sigterm_mid_batch_finishes_the_batch_commits_and_exits_cleanly(pipeline):
    # Given an orders consumer asked to stop while its batch waits on the provider
    order_ids = _orders_awaiting_payment(pipeline, 6)
    stopping = pipeline.consumer("orders", **SLOW_PROVIDER)
    _charging(stopping, 6)

    # When it is stopped, it finishes the batch in hand and exits 0
    assert stopping.terminate(timeout=30) == 0

    # Then every charge of the batch is recorded once and its offsets are committed
    assert Payment.objects.filter(order_id__in=order_ids).count() == 6
    ends: dict[int, int] = {}
    for message in topic_read_all(topic_name("inventory"), expected=6):
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)
    for partition, end in ends.items():
        assert committed_offset(group_name("orders"), topic_name("inventory"), partition) == end


def test_partitions_revoked_while_a_batch_is_in_hand_move_after_it_commits(pipeline):
    # Given an orders consumer busy with a batch (a slow provider)
    order_ids = _orders_awaiting_payment(pipeline, 6)
    first = pipeline.consumer("orders", **SLOW_PROVIDER)
    _charging(first, 6)

    # When a second process joins the group mid-batch and takes partitions away
    second = pipeline.consumer("orders")
    wait_until(lambda: "revoked" in first.log(), timeout=60, message="rebalance")

    # Then the batch finished and was committed before its partitions moved: the newcomer
    # processes no event of it again, and each order is paid once
    for order_id in order_ids:
        wait_until(lambda o=order_id: order_status(o) == "paid", timeout=60, message="paid")
    wait_until(lambda: "assigned" in second.log(), timeout=60, message="newcomer assigned")
    reserved = topic_read_all(topic_name("inventory"), expected=6)
    reserved_ids = {json.loads(m.value())["event_id"] for m in reserved}
    assert not any(f"duplicate event {event_id}" in second.log() for event_id in reserved_ids)
    for order_id in order_ids:
        assert gateway_calls(order_id) == {"charge": 1}
