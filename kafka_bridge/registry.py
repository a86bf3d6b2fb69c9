"""The one table of consumers: name → the events it handles (and so its topics) and group.

`manage.py run_consumer <name>` runs any of them. Each name is its own consumer group, so
every consumer sees every event; several processes of one name share its partitions.

Handlers are set-based: each takes every event of its type in a batch, in offset order, and
runs inside the batch's database transaction (see `kafka_bridge.consumer`). A handler that
must wait on I/O that may not run inside a transaction (a payment provider) is a
`TwoPhaseHandler`: its `prepare` runs first, outside any transaction, and what it returns is
passed to `apply`, which runs inside.

A consumer with an `output_topic` is transactional (consume-transform-produce): its handlers
commit state to the database, and its offsets are committed in Kafka transactions together
with the records that state calls for (`TransactionalOutput`; kafka_bridge.consumer.transactional).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Generic, TypeVar

from confluent_kafka import Message
from django.utils.module_loading import import_string

from kafka_bridge.contracts import EVENT_TYPES, ORDER_TRANSITION_EVENTS, Event, all_topics

Prepared = TypeVar("Prepared")
BatchHandler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class TwoPhaseHandler(Generic[Prepared]):
    """A handler whose I/O runs outside the transaction: `prepare(events)` first, with no
    transaction open, then `apply(events, prepared)` inside the batch transaction. `apply`
    may see fewer events than `prepare` (duplicates are dropped in between), and must
    re-check under its locks whatever `prepare` decided on: the world may have moved."""

    prepare: Callable[[Sequence[Event]], Prepared]
    apply: Callable[[Sequence[Event], Prepared], None]


Handler = BatchHandler | TwoPhaseHandler[Any]


@dataclass(frozen=True)
class OutputRecord:
    key: bytes
    value: bytes
    # What `TransactionalOutput.published` needs to know which state this record showed
    # (e.g. a revision).
    ref: Any = None


@dataclass(frozen=True)
class TransactionalOutput:
    """The output of a transactional consumer, derived from the state its handlers committed.

    `pending()` returns the records that committed state calls for and that are not known
    to be published; each Kafka transaction publishes them with the input offsets, then
    `published(records)` records that they went out. A crash in between publishes them
    again, so readers must treat a record as an upsert (the same record twice is harmless)."""

    pending: Callable[[], Sequence[OutputRecord]]
    published: Callable[[Sequence[OutputRecord]], None]


# Topics of derived streams: records computed from events (no envelope), each written by one
# transactional consumer. Created with the event topics, each with its own .dlq.
ORDER_RATE_TOPIC = "metrics.order.rate"
STREAM_TOPICS = (ORDER_RATE_TOPIC,)


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    # event type → dotted path of a handler: `(events: Sequence[Event]) -> None` or a
    # TwoPhaseHandler. Event types sharing a handler are applied together.
    handler_paths: dict[str, str] = field(default_factory=dict)
    # A raw consumer gets each Kafka message itself (no envelope decoding, no per-event
    # dedupe): its handler must be idempotent on the message position. It runs once per
    # message, inside the batch transaction. Raising PermanentEventError dead-letters the
    # message (except for the consumer of the DLQs: see `writes_dead_letters`).
    message_handler_path: str = ""
    message_topics: tuple[str, ...] = ()
    # A transactional consumer: the logical topic its output goes to, and the dotted path of
    # its TransactionalOutput.
    output_topic: str = ""
    output_path: str = ""

    @property
    def is_raw(self) -> bool:
        return bool(self.message_handler_path)

    @property
    def is_transactional(self) -> bool:
        return bool(self.output_topic)

    @property
    def writes_dead_letters(self) -> bool:
        """Whether messages it gives up on go to a DLQ: not for the consumer of the DLQs
        themselves, which retries until a message is stored."""
        return not any(topic.endswith(".dlq") for topic in self.topics)

    @property
    def topics(self) -> list[str]:
        """Logical topics: the raw ones, or those carrying the handled event types."""
        if self.is_raw:
            return sorted(self.message_topics)
        return sorted({EVENT_TYPES[event_type].topic for event_type in self.handler_paths})

    @cached_property
    def handlers(self) -> dict[str, Handler]:
        return {name: import_string(path) for name, path in self.handler_paths.items()}

    @cached_property
    def message_handler(self) -> Callable[[Message], None]:
        return import_string(self.message_handler_path)

    @cached_property
    def output(self) -> TransactionalOutput:
        return import_string(self.output_path)

    @cached_property
    def handler_names(self) -> dict[Handler, str]:
        """Each handler's name in metrics: the last part of its dotted path."""
        return {
            self.handlers[event_type]: path.rsplit(".", 1)[-1]
            for event_type, path in self.handler_paths.items()
        }


# The groups an order's saga goes through, from orders.created to its last e-mail, in the
# order their inputs become available on a backlog. The others are the read side and the
# dead-letter keeper.
SAGA_CONSUMERS = ("inventory", "orders", "notifications")

CONSUMERS: dict[str, ConsumerSpec] = {
    spec.name: spec
    for spec in [
        ConsumerSpec(
            name="inventory",
            handler_paths={
                "orders.created": "inventory.consumers.on_orders_created",
                "orders.cancelled": "inventory.consumers.on_orders_ended_unshipped",
                "orders.expired": "inventory.consumers.on_orders_ended_unshipped",
                "orders.shipped": "inventory.consumers.on_orders_shipped",
            },
        ),
        ConsumerSpec(
            name="orders",
            handler_paths={
                "inventory.reserved": "orders.consumers.on_inventory_reserved",
                "inventory.failed": "orders.consumers.on_inventory_failed",
                "payments.processed": "orders.consumers.on_payments_processed",
                "payments.failed": "orders.consumers.on_payments_failed",
                "orders.cancelled": "orders.consumers.on_orders_ended_unshipped",
                "orders.expired": "orders.consumers.on_orders_ended_unshipped",
            },
        ),
        ConsumerSpec(
            name="notifications",
            handler_paths={
                "orders.created": "notifications.consumers.on_orders_created",
                **{
                    name: "notifications.consumers.on_order_status_changes"
                    for name in ORDER_TRANSITION_EVENTS
                },
            },
        ),
        # Orders per minute, exactly once: orders.created → metrics.order.rate.
        ConsumerSpec(
            name="order_rate",
            handler_paths={"orders.created": "reporting.consumers.on_orders_created_count"},
            output_topic=ORDER_RATE_TOPIC,
            output_path="reporting.consumers.order_rate_output",
        ),
        # The table the staff API reads, fed by metrics.order.rate.
        ConsumerSpec(
            name="order_rate_windows",
            message_handler_path="reporting.consumers.on_order_rate_record",
            message_topics=(ORDER_RATE_TOPIC,),
        ),
        # Sales per product per day and per-customer summaries, from the order events alone.
        ConsumerSpec(
            name="read_models",
            handler_paths={
                name: "reporting.consumers.on_order_events"
                for name in ("orders.created", *ORDER_TRANSITION_EVENTS)
            },
        ),
        ConsumerSpec(
            name="dead_letters",
            message_handler_path="kafka_bridge.consumers.on_dead_letter",
            message_topics=tuple(f"{topic}.dlq" for topic in (*all_topics(), *STREAM_TOPICS)),
        ),
    ]
}


def consumer_spec_get(name: str) -> ConsumerSpec:
    try:
        return CONSUMERS[name]
    except KeyError:
        known = ", ".join(sorted(CONSUMERS))
        raise KeyError(f"unknown consumer {name!r}; known consumers: {known}") from None
