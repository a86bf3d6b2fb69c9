"""The one table of consumers: name → the events it handles (and so its topics) and group.

Each app declares its consumers beside their handlers (`<app>/consumers.py`) and registers
them from its AppConfig.ready() (`consumers_register`); this module knows none of them by
name but the keeper of the dead letters. `manage.py run_consumer <name>` runs any of them.
Each name is its own consumer group, so every consumer sees every event; several processes
of one name share its partitions.

Handlers are set-based: each takes every event of its type in a batch, in offset order (at
most one per aggregate per call, unless the group applies `whole_batches`), and runs inside
the batch's database transaction (see `kafka_bridge.consumer`). A handler that
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

from kafka_bridge.contracts import Event, all_topics, event_type_get

Prepared = TypeVar("Prepared")
BatchHandler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class TwoPhaseHandler(Generic[Prepared]):
    """A handler whose I/O runs outside the transaction: `prepare(events)` first, with no
    transaction open, then `apply(events, prepared)` inside the batch transaction. `apply`
    may see fewer events than `prepare` (duplicates are dropped in between), and must
    re-check under its locks whatever `prepare` decided on: the world may have moved."""

    # How metrics and logs name it (a plain function is named by its __name__).
    name: str
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


# The batch wait of a group nobody waits on within a quarter of a second (a read model,
# per-minute windows, deliveries sent later with retries): at low rates its batches then
# hold several events instead of one, and the fixed cost of a batch is paid once for all of
# them (docs/benchmarks.md).
OFF_PATH_BATCH_MAX_WAIT_MS = 250


@dataclass(frozen=True)
class ConsumerSpec:
    name: str
    # event type → its handler: `(events: Sequence[Event]) -> None` or a TwoPhaseHandler.
    # Event types sharing a handler are applied together.
    handlers: dict[str, Handler] = field(default_factory=dict)
    # A raw consumer gets each Kafka message itself (no envelope decoding, no per-event
    # dedupe): its handler must be idempotent on the message position. It runs once per
    # message, inside the batch transaction. Raising PermanentEventError dead-letters the
    # message (except for the keeper of the dead letters: see `writes_dead_letters`).
    message_handler: Callable[[Message], None] | None = None
    message_topics: tuple[str, ...] = ()
    # The raw consumer of every dead-letter topic (kafka_bridge's own `dead_letters`).
    reads_dead_letters: bool = False
    # A transactional consumer: the logical topic its output goes to (a derived stream of
    # records, no envelope, created with the event topics), and what it publishes there.
    output_topic: str = ""
    output: TransactionalOutput | None = None
    # How long a batch may wait to fill once its first message is in (None: the
    # deployment's KAFKA_CONSUMER_BATCH_MAX_WAIT_MS). A group whose output nobody waits for
    # sets OFF_PATH_BATCH_MAX_WAIT_MS. KAFKA_CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP overrides
    # it per group.
    batch_max_wait_ms: int | None = None
    # Its one handler takes a whole batch in one call, several events of one aggregate
    # included, in offset order: it folds them itself (a read model, a list of deliveries).
    # Otherwise a batch is applied in waves of one event per aggregate (consumer/apply.py),
    # and a batch holding an order's two events pays each statement twice.
    whole_batches: bool = False

    def __post_init__(self) -> None:
        distinct = {id(handler): handler for handler in self.handlers.values()}
        if self.whole_batches and (
            len(distinct) != 1 or isinstance(next(iter(distinct.values())), TwoPhaseHandler)
        ):
            raise ValueError(f"consumer {self.name!r}: whole_batches needs one plain handler")

    @property
    def is_raw(self) -> bool:
        return self.message_handler is not None

    @property
    def is_transactional(self) -> bool:
        return bool(self.output_topic)

    @property
    def writes_dead_letters(self) -> bool:
        """Whether messages it gives up on go to a DLQ: not for the consumer of the DLQs
        themselves, which retries until a message is stored."""
        return not self.reads_dead_letters

    @property
    def topics(self) -> list[str]:
        """Logical topics: every DLQ, the raw ones, or those carrying the handled types."""
        if self.reads_dead_letters:
            return sorted(f"{topic}.dlq" for topic in logical_topics())
        if self.is_raw:
            return sorted(self.message_topics)
        return sorted({event_type_get(event_type).topic for event_type in self.handlers})

    @cached_property
    def handler_names(self) -> dict[Handler, str]:
        """Each handler's name in metrics and logs (read once per batch: built once)."""
        return {handler: handler_name(handler) for handler in self.handlers.values()}


def handler_name(handler: Handler) -> str:
    if isinstance(handler, TwoPhaseHandler):
        return handler.name
    return handler.__name__


# Every consumer the apps declared, by name, in the order they registered.
CONSUMERS: dict[str, ConsumerSpec] = {}


def consumers_register(*specs: ConsumerSpec) -> None:
    """Declare consumers (from an app's `ready()`). A name is one consumer group: a second,
    different declaration of it is a bug."""
    for spec in specs:
        known = CONSUMERS.get(spec.name)
        if known is not None and known != spec:
            raise ValueError(f"consumer {spec.name!r} is declared twice")
        CONSUMERS[spec.name] = spec


def consumer_spec_get(name: str) -> ConsumerSpec:
    try:
        return CONSUMERS[name]
    except KeyError:
        known = ", ".join(sorted(CONSUMERS))
        raise KeyError(f"unknown consumer {name!r}; known consumers: {known}") from None


def stream_topics() -> list[str]:
    """Logical topics of derived streams: each written by one transactional consumer."""
    return sorted({spec.output_topic for spec in CONSUMERS.values() if spec.output_topic})


def logical_topics() -> list[str]:
    """Every logical topic, in a stable order: those of the event types, then the streams.
    Each has a `<topic>.dlq` beside it."""
    return [*all_topics(), *stream_topics()]
