"""Writes of the messaging library that consumers and apps call: the processed-event marks
that make handling an event once per consumer group (kafka_bridge.consumer.idempotency)."""

import uuid
from collections.abc import Sequence

from django.utils import timezone

from kafka_bridge.contracts import Event
from kafka_bridge.models import ProcessedEvent
from kafka_bridge.sql import rows_insert


def processed_events_mark(*, group: str, events: Sequence[Event]) -> set[uuid.UUID]:
    """Insert the ProcessedEvent rows of `events` in one statement; return the ids that were
    new. Must run in the transaction that applies their effects."""
    if not events:
        return set()
    now = timezone.now()
    # ON CONFLICT ... RETURNING (PostgreSQL, SQLite ≥ 3.35): the conflicts are the duplicates.
    inserted = rows_insert(
        ProcessedEvent,
        ("consumer_group", "event_id", "event_type", "processed_at"),
        [(group, event.event_id, event.event_type, now) for event in events],
        suffix="ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id",
    )
    return {_as_uuid(value) for (value,) in inserted}


def _as_uuid(value: object) -> uuid.UUID:
    # PostgreSQL returns UUIDs, SQLite the 32-character hex Django stores.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def processed_events_forget(*, group: str) -> int:
    """Delete every processed-event mark of `group` (a consumer group retired for good, such
    as a read-model generation); return how many."""
    deleted, _ = ProcessedEvent.objects.filter(consumer_group=group).delete()
    return deleted
