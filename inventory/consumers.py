"""Kafka handlers of the inventory consumer: parse, call a service, nothing else."""

from inventory.services import (
    StockRequest,
    stock_commit_for_order,
    stock_release_for_order,
    stock_reserve_for_order_and_report,
)
from kafka_bridge.contracts import Event, OrderCreatedV1, OrderStatusChangedV1


def on_order_created(event: Event) -> None:
    payload = event.payload
    assert isinstance(payload, OrderCreatedV1)
    stock_reserve_for_order_and_report(
        order_id=payload.order_id,
        customer_id=payload.customer_id,
        items=[StockRequest(sku=item.sku, quantity=item.quantity) for item in payload.items],
        causation_id=event.event_id,
    )


def on_order_ended_unshipped(event: Event) -> None:
    """orders.cancelled / orders.expired: give the reserved units back."""
    payload = event.payload
    assert isinstance(payload, OrderStatusChangedV1)
    stock_release_for_order(order_id=payload.order_id)


def on_order_shipped(event: Event) -> None:
    """The reservation is consumed: the units leave on-hand stock."""
    payload = event.payload
    assert isinstance(payload, OrderStatusChangedV1)
    stock_commit_for_order(order_id=payload.order_id)
