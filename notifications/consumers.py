"""Kafka handlers of the notifications consumer: one notification per order transition."""

from collections.abc import Sequence

from kafka_bridge.contracts import Event
from kafka_bridge.registry import ConsumerSpec
from notifications.services import OrderChangeNotice, notifications_create_for_order_changes
from orders.events import ORDER_TRANSITION_EVENTS, OrderStatusChangedV1


def on_order_status_changes(events: Sequence[Event]) -> None:
    notices = []
    for event in events:
        assert isinstance(event.payload, OrderStatusChangedV1)
        notices.append(
            OrderChangeNotice(
                change=event.payload,
                event_id=event.event_id,
                correlation_id=event.correlation_id,
            )
        )
    notifications_create_for_order_changes(notices=notices)


CONSUMER = ConsumerSpec(
    name="notifications",
    handlers=dict.fromkeys(ORDER_TRANSITION_EVENTS, on_order_status_changes),
    whole_batches=True,  # each transition is its own notice, queued in event order
)
