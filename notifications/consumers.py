"""Kafka handler of the notifications consumer: one notification per order transition."""

from collections.abc import Sequence

from kafka_bridge.contracts import Event, OrderStatusChangedV1
from notifications.services import OrderChangeNotice, notifications_create_for_order_changes


def on_order_status_changes(events: Sequence[Event]) -> None:
    notices = []
    for event in events:
        assert isinstance(event.payload, OrderStatusChangedV1)
        notices.append(OrderChangeNotice(change=event.payload, event_id=event.event_id))
    notifications_create_for_order_changes(notices=notices)
