"""Kafka handler of the notifications consumer: one notification per order transition."""

from kafka_bridge.contracts import Event, OrderStatusChangedV1
from notifications.services import notification_create_for_order_change


def on_order_status_changed(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, OrderStatusChangedV1)
    notification_create_for_order_change(change=payload, event_id=event.event_id)
