"""Record domain events in the transactional outbox; wake the relay after commit."""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

from kafka_bridge.contracts import event_type_get, payload_validate
from kafka_bridge.correlation import correlation_id_for
from kafka_bridge.models import DeadLetter, OutboxEvent
from kafka_bridge.redis_client import OutageBackoff, redis_client

logger = logging.getLogger(__name__)

RELAY_WAKE_CHANNEL = "kafka_bridge:outbox:wake"


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    aggregate_id: str
    key: str
    data: BaseModel | dict
    causation_id: uuid.UUID | None = None


def outbox_events_record(events: Sequence[NewEvent]) -> list[OutboxEvent]:
    """Validate and store events in the caller's transaction (one INSERT for all); the relay
    is woken once after commit.

    Must run inside `transaction.atomic()`: an event is only ever seen if the change it
    describes committed.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_events_record must be called inside transaction.atomic()")
    rows = []
    now = timezone.now()
    for new in events:
        kind = event_type_get(new.event_type)
        version = kind.current_version
        raw = new.data.model_dump(mode="json") if isinstance(new.data, BaseModel) else new.data
        payload = payload_validate(event_type=new.event_type, version=version, data=raw)
        event_id = uuid.uuid4()
        correlation_id = correlation_id_for(new.causation_id)
        envelope = {
            "event_id": str(event_id),
            "event_type": new.event_type,
            "schema_version": version,
            "occurred_at": now.isoformat(),
            "correlation_id": correlation_id,
            "causation_id": str(new.causation_id) if new.causation_id else None,
            "aggregate_id": new.aggregate_id,
            "data": payload.model_dump(mode="json"),
        }
        rows.append(
            OutboxEvent(
                event_id=event_id,
                event_type=new.event_type,
                schema_version=version,
                topic=kind.topic,
                key=new.key,
                aggregate_id=new.aggregate_id,
                correlation_id=correlation_id,
                envelope=envelope,
            )
        )
    if not rows:
        return []
    created = OutboxEvent.objects.bulk_create(rows)
    transaction.on_commit(relay_wake)
    return created


def outbox_event_record(
    *,
    event_type: str,
    aggregate_id: str,
    key: str,
    data: BaseModel | dict,
    causation_id: uuid.UUID | None = None,
) -> OutboxEvent:
    """Record one event: see `outbox_events_record`."""
    (row,) = outbox_events_record([NewEvent(event_type, aggregate_id, key, data, causation_id)])
    return row


def outbox_event_replay(*, envelope: dict, key: str, replay_of: DeadLetter) -> OutboxEvent:
    """Record an already-published event again, unchanged (same event id), for the relay
    to publish once more: the replay of a dead letter."""
    kind = event_type_get(envelope["event_type"])
    row = OutboxEvent.objects.create(
        event_id=envelope["event_id"],
        event_type=kind.name,
        schema_version=envelope["schema_version"],
        topic=kind.topic,
        key=key,
        aggregate_id=envelope["aggregate_id"],
        correlation_id=envelope["correlation_id"],
        envelope=envelope,
        replay_of=replay_of,
    )
    transaction.on_commit(relay_wake)
    return row


# During a Redis outage each wake-up would cost a request its socket timeout; relays poll
# anyway, so after a failure wake-ups are skipped for a while.
_wake_backoff = OutageBackoff()


def relay_wake() -> None:
    """Tell relays there is work; harmless if Redis is down (they poll as well)."""
    if not _wake_backoff.ready():
        return
    try:
        redis_client().publish(RELAY_WAKE_CHANNEL, b"1")
    except redis.RedisError as exc:
        if _wake_backoff.failed():
            logger.warning("outbox relay wake-ups paused, Redis unavailable: %s", exc)
        return
    _wake_backoff.succeeded()
