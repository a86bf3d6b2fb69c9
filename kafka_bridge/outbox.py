"""Record domain events in the transactional outbox; wake the relay after commit.

Each event is validated and serialised here, once: the row stores the exact message bytes,
so the relay only copies them to Kafka.
"""

import contextlib
import contextvars
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

# pydantic's own serialiser (it ships with and is pinned by pydantic): it writes the
# validated payload model straight to JSON bytes, about four times faster than
# model_dump() + json.dumps(), with no extra dependency.
from pydantic_core import to_json

from common import tracing
from common.correlation import correlation_id_for
from common.redis_client import OutageBackoff, redis_client
from kafka_bridge.contracts import event_type_get, payload_validate
from kafka_bridge.models import ArchivedEvent, DeadLetter, OutboxEvent
from kafka_bridge.sql import rows_insert

logger = logging.getLogger(__name__)

RELAY_WAKE_CHANNEL = "kafka_bridge:outbox:wake"


@dataclass(frozen=True)
class NewEvent:
    """An event to record: `data` is validated against the current version of its type."""

    event_type: str
    aggregate_id: str
    key: str
    data: BaseModel | dict
    causation_id: uuid.UUID | None = None


def outbox_events_record(events: Sequence[NewEvent]) -> list[OutboxEvent]:
    """Validate and store events in the caller's transaction (one INSERT for all), wake the
    relay once after commit.

    Must run inside `transaction.atomic()`: an event is only ever seen if the change it
    describes committed. Every event is validated before any is stored.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox events must be recorded inside transaction.atomic()")
    occurred_at = timezone.now().isoformat()  # one instant for everything recorded together
    rows = [
        # A consumer batch records events of many chains at once: each carries its cause's
        # correlation id (the request's, outside a consumer).
        _event_row(
            event, correlation_id=correlation_id_for(event.causation_id), occurred_at=occurred_at
        )
        for event in events
    ]
    if rows:
        fields = _INSERTED_FIELDS
        if tracing.enabled:
            # Each row continues its cause's trace (a batch holds many); with tracing off
            # the column is left to its database default and costs nothing.
            contexts: dict[uuid.UUID | None, str] = {}
            for event, row in zip(events, rows, strict=True):
                cause = event.causation_id
                if cause not in contexts:
                    contexts[cause] = tracing.stored_context(cause)
                row.trace_context = contexts[cause]
            fields = _TRACED_INSERTED_FIELDS
        _outbox_rows_insert(rows, fields)
        if not _wake_deferred.get():
            transaction.on_commit(relay_wake)
    return rows


# Set while events are recorded whose wake-up is left to a commit that follows moments later.
_wake_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "relay_wake_deferred", default=False
)


@contextlib.contextmanager
def relay_wake_deferred() -> Iterator[None]:
    """Events recorded in this block do not wake the relay when they commit: the caller
    commits more events moments later, and their wake-up makes the relay read both commits'
    rows in one batch (an order's reservation and its payment, published together). A
    caller that ends up recording nothing more wakes the relay itself (`relay_wake`); if it
    fails, the relay's poll publishes them."""
    token = _wake_deferred.set(True)
    try:
        yield
    finally:
        _wake_deferred.reset(token)


_INSERTED_FIELDS = (
    "event_id",
    "event_type",
    "schema_version",
    "topic",
    "key",
    "aggregate_id",
    "correlation_id",
    "value",
    "created_at",
    "attempts",
    "last_error",
)
_TRACED_INSERTED_FIELDS = (*_INSERTED_FIELDS, "trace_context")


def _outbox_rows_insert(rows: Sequence[OutboxEvent], fields: Sequence[str]) -> None:
    # Not bulk_create: see kafka_bridge.sql for why, and for what it costs.
    created_at = timezone.now()
    for row in rows:
        row.created_at = created_at
    inserted = rows_insert(
        OutboxEvent,
        fields,
        [[getattr(row, name) for name in fields] for row in rows],
        suffix="RETURNING id",
    )
    for row, (row_id,) in zip(rows, inserted, strict=True):
        row.pk = row_id
        row._state.adding = False


def outbox_event_record(
    *,
    event_type: str,
    aggregate_id: str,
    key: str,
    data: BaseModel | dict,
    causation_id: uuid.UUID | None = None,
) -> OutboxEvent:
    """Validate and store one event in the caller's transaction; see `outbox_events_record`."""
    event = NewEvent(event_type, aggregate_id, key, data, causation_id)
    return outbox_events_record([event])[0]


def _event_row(event: NewEvent, *, correlation_id: str, occurred_at: str) -> OutboxEvent:
    kind = event_type_get(event.event_type)
    version = kind.current_version
    data = event.data
    raw = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    payload = payload_validate(event_type=event.event_type, version=version, data=raw)
    event_id = uuid.uuid4()
    value = to_json(
        {
            "event_id": str(event_id),
            "event_type": event.event_type,
            "schema_version": version,
            "occurred_at": occurred_at,
            "correlation_id": correlation_id,
            "causation_id": str(event.causation_id) if event.causation_id else None,
            "aggregate_id": event.aggregate_id,
            "data": payload,  # serialised in JSON mode: UUIDs and decimals as strings
        }
    )
    return OutboxEvent(
        event_id=event_id,
        event_type=event.event_type,
        schema_version=version,
        topic=kind.topic,
        key=event.key,
        aggregate_id=event.aggregate_id,
        correlation_id=correlation_id,
        value=value,
    )


def aggregate_events(*, aggregate_id: str) -> list[OutboxEvent | ArchivedEvent]:
    """Every event recorded about an aggregate in the order it was recorded, including
    those retention moved out of the outbox (`kafka_bridge.retention`)."""
    archived: list[OutboxEvent | ArchivedEvent] = list(
        ArchivedEvent.objects.filter(aggregate_id=aggregate_id)
    )
    recent = list(OutboxEvent.objects.filter(aggregate_id=aggregate_id))
    return sorted(
        [*archived, *recent],
        key=lambda e: e.outbox_id if isinstance(e, ArchivedEvent) else e.id,
    )


def outbox_event_replay(*, value: bytes, key: str, replay_of: DeadLetter) -> OutboxEvent:
    """Record an already-published event again, byte for byte (same event id), for the
    relay to publish once more: the replay of a dead letter. The caller has decoded it."""
    envelope = json.loads(value)
    kind = event_type_get(envelope["event_type"])
    row = OutboxEvent.objects.create(
        event_id=envelope["event_id"],
        event_type=kind.name,
        schema_version=envelope["schema_version"],
        topic=kind.topic,
        key=key,
        aggregate_id=envelope["aggregate_id"],
        correlation_id=envelope["correlation_id"],
        value=value,
        replay_of=replay_of,
        # A replay is staff's new action: it joins the trace of the request that asked for it.
        trace_context=tracing.stored_context(None) if tracing.enabled else "",
    )
    transaction.on_commit(relay_wake)
    return row


class RelayWaker:
    """Publishes "there is work" to relays from a thread of its own.

    A wake-up is an optimisation (relays poll anyway), so nothing that commits events (a
    request, a consumer batch) may wait for it: a frozen Redis would hold each of them for
    the client's socket timeout. `wake()` only sets a flag; the thread publishes once for
    however many commits happened meanwhile. After a failure it stays quiet for a while
    (`OutageBackoff`) and logs once per outage.
    """

    def __init__(self) -> None:
        self.backoff = OutageBackoff()
        self._pending = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        with self._lock:
            self._pending.set()
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():  # first use, or a fork
                self._thread = threading.Thread(target=self._run, name="relay-waker", daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every wake-up asked for has been published or given up (tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._pending.wait()
            self._pending.clear()
            self._publish()
            with self._lock:
                if not self._pending.is_set():
                    self._idle.set()

    def _publish(self) -> None:
        if not self.backoff.ready():
            return
        try:
            redis_client().publish(RELAY_WAKE_CHANNEL, b"1")
        except redis.RedisError as exc:
            if self.backoff.failed():
                logger.warning("outbox relay wake-ups paused, Redis unavailable: %s", exc)
            return
        self.backoff.succeeded()


relay_waker = RelayWaker()


def relay_wake() -> None:
    """Tell relays there is work, without waiting for Redis; see `RelayWaker`."""
    relay_waker.wake()
