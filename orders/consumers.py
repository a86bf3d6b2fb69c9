"""Kafka handlers of the orders consumer: apply inventory outcomes to the order status."""

from kafka_bridge.contracts import Event, InventoryFailedV1, InventoryReservedV1
from orders.services import order_mark_rejected, order_mark_reserved


def on_inventory_reserved(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryReservedV1)
    order_mark_reserved(order_id=payload.order_id)


def on_inventory_failed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryFailedV1)
    reason = (
        f"{payload.reason}: {', '.join(payload.short_skus)}"
        if payload.short_skus
        else payload.reason
    )
    order_mark_rejected(order_id=payload.order_id, reason=reason[:200])
