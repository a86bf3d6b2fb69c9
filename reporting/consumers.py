"""The read side's consumers and their handlers: thin, each calls a service."""

from collections.abc import Sequence

from confluent_kafka import Message
from pydantic import ValidationError

from kafka_bridge.consumer import PermanentEventError
from kafka_bridge.contracts import Event
from kafka_bridge.registry import OFF_PATH_BATCH_MAX_WAIT_MS, ConsumerSpec, TransactionalOutput
from orders.events import ORDER_TRANSITION_EVENTS
from reporting.services.order_rate import (
    order_rate_count,
    order_rate_records_pending,
    order_rate_records_published,
    order_rate_window_store,
)
from reporting.services.read_models import read_models_apply
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


# Where order_rate publishes its windows: a derived stream (records, no envelope).
ORDER_RATE_TOPIC = "metrics.order.rate"

CONSUMERS = [
    # Orders per minute, exactly once: orders.created → metrics.order.rate.
    ConsumerSpec(
        name="order_rate",
        handlers={"orders.created": on_orders_created_count},
        output_topic=ORDER_RATE_TOPIC,
        output=order_rate_output,
        batch_max_wait_ms=OFF_PATH_BATCH_MAX_WAIT_MS,
    ),
    # The table the staff API reads, fed by metrics.order.rate.
    ConsumerSpec(
        name="order_rate_windows",
        message_handler=on_order_rate_record,
        message_topics=(ORDER_RATE_TOPIC,),
    ),
    # Sales per product per day and per-customer summaries, from the order events alone.
    ConsumerSpec(
        name="read_models",
        handlers={name: on_order_events for name in ("orders.created", *ORDER_TRANSITION_EVENTS)},
        batch_max_wait_ms=OFF_PATH_BATCH_MAX_WAIT_MS,
        whole_batches=True,  # an order's facts are folded event by event in memory
    ),
]
