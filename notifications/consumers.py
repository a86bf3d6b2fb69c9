"""Kafka handlers of the notifications consumer: one notification per customer-visible event."""

from kafka_bridge.contracts import Event, InventoryFailedV1, InventoryReservedV1
from notifications.models import Notification
from notifications.services import notification_create


def on_inventory_reserved(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryReservedV1)
    notification_create(
        customer_id=payload.customer_id,
        order_id=payload.order_id,
        kind=Notification.Kind.ORDER_CONFIRMED,
        event_id=event.event_id,
    )


def on_inventory_failed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, InventoryFailedV1)
    notification_create(
        customer_id=payload.customer_id,
        order_id=payload.order_id,
        kind=Notification.Kind.OUT_OF_STOCK,
        event_id=event.event_id,
        detail=", ".join(payload.short_skus) or payload.reason,
    )
