"""Retention of the tables that grow with every event: the outbox and ProcessedEvent.

- **Outbox**: a published row older than `RETENTION["OUTBOX_DAYS"]` is moved to
  `ArchivedEvent` (its metadata: the timeline of its aggregate keeps every entry) and
  deleted. Unpublished rows are never touched, whatever their age.
- **ProcessedEvent**: rows older than `RETENTION["PROCESSED_EVENT_DAYS"]` are deleted. They
  are the database backstop against redelivery, so the retention must cover the longest
  window in which an event can come back: the topics' retention (Apache Kafka keeps 7 days
  by default) and the time a dead letter may wait before staff replay it. Dead letters
  older than this retention are not replayed (`dead_letter_replay` refuses them), since
  the groups that did process the event would no longer recognise it.

Both are pruned in batches of `RETENTION["BATCH_SIZE"]` rows, each batch its own short
transaction, by the Celery beat task `kafka_bridge.tasks.event_tables_prune`. A retention
of 0 days keeps the table forever.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kafka_bridge.models import ArchivedEvent, OutboxEvent, ProcessedEvent

_ARCHIVED_FIELDS = ("event_id", "event_type", "aggregate_id", "correlation_id", "created_at")


@dataclass(frozen=True)
class PruneResult:
    outbox_archived: int
    processed_events_deleted: int


def retention_cutoff(days: float) -> datetime | None:
    """The instant before which rows go, or None when the retention is off (0 days)."""
    return timezone.now() - timedelta(days=days) if days > 0 else None


def outbox_prune_published(*, older_than: datetime, batch_size: int) -> int:
    """Move published outbox rows older than `older_than` to ArchivedEvent, in batches;
    return how many moved."""
    moved = 0
    while True:
        with transaction.atomic():
            rows = list(
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(published_at__lt=older_than)
                .order_by("id")
                .values("id", "published_at", *_ARCHIVED_FIELDS)[:batch_size]
            )
            if not rows:
                return moved
            ArchivedEvent.objects.bulk_create(
                [
                    ArchivedEvent(
                        outbox_id=row["id"],
                        published_at=row["published_at"],
                        **{name: row[name] for name in _ARCHIVED_FIELDS},
                    )
                    for row in rows
                ]
            )
            OutboxEvent.objects.filter(id__in=[row["id"] for row in rows]).delete()
            moved += len(rows)


def processed_events_prune(*, older_than: datetime, batch_size: int) -> int:
    """Delete ProcessedEvent rows older than `older_than`, in batches; return how many."""
    deleted = 0
    while True:
        ids = list(
            ProcessedEvent.objects.filter(processed_at__lt=older_than)
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        deleted += ProcessedEvent.objects.filter(id__in=ids).delete()[0]


def event_tables_prune() -> PruneResult:
    """Apply the configured retention to both tables (the beat task's work)."""
    retention = settings.RETENTION
    outbox_cutoff = retention_cutoff(retention["OUTBOX_DAYS"])
    processed_cutoff = retention_cutoff(retention["PROCESSED_EVENT_DAYS"])
    batch_size = retention["BATCH_SIZE"]
    return PruneResult(
        outbox_archived=(
            outbox_prune_published(older_than=outbox_cutoff, batch_size=batch_size)
            if outbox_cutoff
            else 0
        ),
        processed_events_deleted=(
            processed_events_prune(older_than=processed_cutoff, batch_size=batch_size)
            if processed_cutoff
            else 0
        ),
    )
