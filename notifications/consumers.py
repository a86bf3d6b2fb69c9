"""Kafka handlers of the notifications consumer: one notification per order transition, and
the shipping address of each new order for those e-mails."""

from collections.abc import Sequence

from kafka_bridge.contracts import Event
from kafka_bridge.registry import ConsumerSpec
from notifications.services import (
    OrderChangeNotice,
    notifications_create_for_order_changes,
    order_shipping_addresses_record,
)
from orders.events import ORDER_TRANSITION_EVENTS, OrderCreatedV2, OrderStatusChangedV1


def on_orders_created(events: Sequence[Event]) -> None:
    orders = []
    for event in events:
        assert isinstance(event.payload, OrderCreatedV2)  # V1 events arrive upcast
        orders.append(event.payload)
    order_shipping_addresses_record(orders=orders)


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
    handlers={
        "orders.created": on_orders_created,
        **{name: on_order_status_changes for name in ORDER_TRANSITION_EVENTS},
    },
)
