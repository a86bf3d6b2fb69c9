"""Kafka handlers of the inventory consumer: each takes a batch of events, calls a service."""

import uuid
from collections.abc import Sequence

from inventory.services import (
    OrderStockRequest,
    StockRequest,
    stock_commit_for_orders,
    stock_release_for_orders,
    stock_reserve_for_orders_and_report,
)
from kafka_bridge.contracts import Event
from kafka_bridge.registry import ConsumerSpec
from orders.events import OrderCreatedV2, OrderStatusChangedV1


def on_orders_created(events: Sequence[Event]) -> None:
    requests = []
    for event in events:
        payload = event.payload
        assert isinstance(payload, OrderCreatedV2)  # V1 events arrive upcast
        requests.append(
            OrderStockRequest(
                order_id=payload.order_id,
                customer_id=payload.customer_id,
                items=[StockRequest(sku=i.sku, quantity=i.quantity) for i in payload.items],
                causation_id=event.event_id,
            )
        )
    stock_reserve_for_orders_and_report(orders=requests)


def _order_ids(events: Sequence[Event]) -> list[uuid.UUID]:
    ids = []
    for event in events:
        assert isinstance(event.payload, OrderStatusChangedV1)
        ids.append(event.payload.order_id)
    return ids


def on_orders_ended_unshipped(events: Sequence[Event]) -> None:
    """orders.cancelled / orders.expired: give the reserved units back."""
    stock_release_for_orders(order_ids=_order_ids(events))


def on_orders_shipped(events: Sequence[Event]) -> None:
    """The reservations are consumed: the units leave on-hand stock."""
    stock_commit_for_orders(order_ids=_order_ids(events))


CONSUMER = ConsumerSpec(
    name="inventory",
    handlers={
        "orders.created": on_orders_created,
        "orders.cancelled": on_orders_ended_unshipped,
        "orders.expired": on_orders_ended_unshipped,
        "orders.shipped": on_orders_shipped,
    },
)
