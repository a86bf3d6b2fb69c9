"""Kafka handlers of the orders consumer: the saga's coordinator for one order.

Each handler parses its payload and calls services; all of them run in the consumer's
transaction, so the status change, the charge record and the next event commit together.
"""

from kafka_bridge.contracts import (
    Event,
    InventoryFailedV1,
    InventoryReservedV1,
    OrderStatusChangedV1,
    PaymentFailedV1,
    PaymentProcessedV1,
)
from orders.payments import payment_charge_for_order, payment_refund_for_order
from orders.services import (
    order_mark_paid,
    order_mark_payment_failed,
    order_mark_rejected,
    order_mark_reserved,
)


def on_inventory_reserved(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryReservedV1)
    order_mark_reserved(order_id=payload.order_id, causation_id=event.event_id)
    payment_charge_for_order(order_id=payload.order_id, causation_id=event.event_id)


def on_inventory_failed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryFailedV1)
    detail = ", ".join(payload.short_skus)
    reason = f"{payload.reason}: {detail}" if detail else payload.reason
    order_mark_rejected(order_id=payload.order_id, reason=reason, causation_id=event.event_id)


def on_payment_processed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, PaymentProcessedV1)
    order_mark_paid(order_id=payload.order_id, causation_id=event.event_id)


def on_payment_failed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, PaymentFailedV1)
    order_mark_payment_failed(
        order_id=payload.order_id, reason=payload.reason, causation_id=event.event_id
    )


def on_order_ended_unshipped(event: Event) -> None:
    """orders.cancelled / orders.expired: give back any money taken."""
    payload = event.payload
    assert isinstance(payload, OrderStatusChangedV1)
    payment_refund_for_order(order_id=payload.order_id, causation_id=event.event_id)
