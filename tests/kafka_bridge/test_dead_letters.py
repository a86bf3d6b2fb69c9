"""Poison messages end in the dead letters with the reason in their headers, while good
messages behind them on the same partition keep flowing; dead letters can be replayed."""

import json
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from inventory.models import Reservation
from kafka_bridge.client import topic_name
from kafka_bridge.models import DeadLetter
from orders.models import Order, Payment
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.kafka import event_envelope, messages_produce
from testing.polling import wait_until
from testing.saga import gateway_calls, wait_for_status

pytestmark = pytest.mark.integration


def _envelope(event_type: str, version: int, data: dict) -> bytes:
    return event_envelope(event_type, data, version=version)


def test_each_kind_of_poison_is_dead_lettered_and_the_partition_keeps_flowing(pipeline):
    # Given the inventory consumer, the dead-letter store, and a customer whose key the
    # poison shares (same key → same partition as the customer's real order)
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    valid_order = {
        "order_id": str(uuid.uuid4()),
        "customer_id": customer.pk,
        "currency": "EUR",
        "total": "1.00",
        "items": [{"sku": product.sku, "quantity": 1, "unit_price": "1.00"}],
    }
    poison = {
        "undecodable": b"\x00\xff\xfe this is not JSON",
        "unknown type": _envelope("orders.teleported", 1, valid_order),
        "unknown version": _envelope("orders.created", 99, valid_order),
        "invalid payload": _envelope(
            "orders.created", 1, {**valid_order, "items": [{"sku": product.sku, "quantity": -1}]}
        ),
    }
    messages_produce("orders", str(customer.pk), list(poison.values()))
    pipeline.relay()
    pipeline.consumer("inventory")
    pipeline.consumer("dead_letters")

    # When a good order of the same customer comes after them on that partition
    order_id = order_place_via_api(customer, product.sku, 2)

    # Then the good one is processed and every poison message is a stored dead letter
    wait_until(lambda: Reservation.objects.filter(order_id=order_id).exists(), timeout=30)
    wait_until(lambda: DeadLetter.objects.count() == len(poison), timeout=30, message="DLQ")
    letters = list(DeadLetter.objects.order_by("original_offset"))
    reasons = [letter.error_message for letter in letters]
    assert "not JSON" in reasons[0]
    assert "unknown event type 'orders.teleported'" in reasons[1]
    assert "unsupported version 99" in reasons[2]
    assert "invalid orders.created v1 payload" in reasons[3]
    for letter in letters:
        assert letter.error_class == "kafka_bridge.contracts.EventDecodeError"
        assert letter.original_topic == topic_name("orders")
        assert letter.consumer_group.endswith("inventory")
        assert letter.attempts == 1  # permanent: not retried
        assert letter.failed_at is not None
        assert letter.headers["dlq.original_offset"] == str(letter.original_offset)
    assert bytes(letters[0].value) == poison["undecodable"]
    # And each is named by the type and id its envelope gives, if it is JSON at all
    assert [letter.event_type for letter in letters] == [
        "",
        "orders.teleported",
        "orders.created",
        "orders.created",
    ]
    assert letters[0].event_id is None
    for letter, value in zip(letters[1:], list(poison.values())[1:], strict=True):
        assert str(letter.event_id) == json.loads(value)["event_id"]
    assert str(letters[1]) == f"orders.teleported from {topic_name('orders')} (new)"


def test_a_domain_error_is_dead_lettered_at_once(pipeline):
    # Given a transition event naming a customer that does not exist
    pipeline.consumer("notifications")
    pipeline.consumer("dead_letters")
    ghost = {
        "order_id": str(uuid.uuid4()),
        "customer_id": 999_999_999,
        "previous_status": "pending",
        "status": "reserved",
    }

    messages_produce("orders", "999999999", [_envelope("orders.reserved", 1, ghost)])

    letter = wait_until(lambda: DeadLetter.objects.first(), timeout=30, message="dead letter")
    assert letter.error_class.endswith("DoesNotExist")
    assert letter.attempts == 1
    assert letter.event_type == "orders.reserved"


def test_transient_failures_retry_then_dead_letter_and_replay_fixes_the_order(pipeline):
    # Given a payment provider that is down for this order
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 1, payment_token="tok_unavailable")

    # When the orders consumer has retried with backoff and given up
    letter = wait_until(lambda: DeadLetter.objects.first(), timeout=60, message="dead letter")
    assert letter.error_class == "orders.payments.GatewayUnavailable"
    assert letter.attempts == 5
    assert letter.event_type == "inventory.reserved"
    # The stock is held for it (reserved commits before the provider is called), and no
    # payment was recorded: the charge's recording rolled back
    assert Order.objects.get(id=order_id).status == "reserved"
    assert not Payment.objects.filter(order_id=order_id).exists()

    # Then, once the provider works again, a replay completes the order exactly once
    Order.objects.filter(id=order_id).update(payment_token="")
    call_command("replay_dead_letters", event_type="inventory.reserved", yes=True)
    wait_for_status(order_id, "paid")
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert gateway_calls(order_id) == {"charge": 1}


def test_replay_command_dry_run_changes_nothing_and_discard_resolves(transactional_db, capsys):
    DeadLetter.objects.create(
        dlq_topic="x.dlq",
        dlq_partition=0,
        dlq_offset=7,
        original_topic="orders",
        consumer_group="inventory",
        error_class="kafka_bridge.contracts.EventDecodeError",
        value=b"garbage",
        failed_at=timezone.now(),
    )

    call_command("replay_dead_letters")
    assert "would replay 1 dead letter(s)" in capsys.readouterr().out
    assert DeadLetter.objects.get().status == DeadLetter.Status.NEW

    call_command("replay_dead_letters", yes=True)  # not an event: refused, kept
    assert DeadLetter.objects.get().status == DeadLetter.Status.NEW

    call_command("replay_dead_letters", discard=True, yes=True)
    assert DeadLetter.objects.get().status == DeadLetter.Status.DISCARDED
