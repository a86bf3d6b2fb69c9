"""Kafka handlers of the read side: thin, each calls a service."""

from collections.abc import Sequence

from confluent_kafka import Message
from pydantic import ValidationError

from kafka_bridge.consumer import PermanentEventError
from kafka_bridge.contracts import Event
from kafka_bridge.registry import TransactionalOutput
from reporting.services import (
    order_rate_count,
    order_rate_records_pending,
    order_rate_records_published,
    order_rate_window_store,
    read_models_apply,
)
from reporting.windows import OrderRateWindowRecord


def on_orders_created_count(events: Sequence[Event]) -> None:
    """order_rate: count each new order into its minute."""
    order_rate_count(events=events)


# order_rate's output: the windows its committed state says are still to be published.
order_rate_output = TransactionalOutput(
    pending=order_rate_records_pending, published=order_rate_records_published
)


def on_order_rate_record(message: Message) -> None:
    """order_rate_windows: keep one record of metrics.order.rate."""
    try:
        record = OrderRateWindowRecord.model_validate_json(message.value() or b"")
    except ValidationError as exc:
        raise PermanentEventError(f"not an order-rate window record: {exc}") from exc
    order_rate_window_store(record=record)


def on_order_events(events: Sequence[Event]) -> None:
    """read_models: orders.created and every orders.<status>."""
    read_models_apply(events=events)
