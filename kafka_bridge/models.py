import uuid

from django.db import models
from django.db.models import Q


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes.

    The relay publishes rows in `id` order and stamps `published_at`; a row is never deleted
    by the relay, so the table doubles as an audit log of everything the system emitted.
    """

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=100, db_index=True)
    schema_version = models.PositiveSmallIntegerField()
    topic = models.CharField(max_length=200, help_text="Logical topic, before the namespace.")
    key = models.CharField(max_length=200, help_text="Kafka message key (the customer id).")
    aggregate_id = models.CharField(max_length=100, db_index=True)
    correlation_id = models.CharField(max_length=100, db_index=True)
    envelope = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"], name="outbox_pending_idx", condition=Q(published_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class ProcessedEvent(models.Model):
    """The database backstop of consumer idempotency: one row per (consumer group, event).

    Inserted inside the handler's transaction, so an event's effects and its "processed"
    mark commit together or not at all.
    """

    consumer_group = models.CharField(max_length=200)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["consumer_group", "event_id"], name="processed_event_once_per_group"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consumer_group}:{self.event_id}"


class RelayLock(models.Model):
    """A single row that relay processes lock in turn, so batches never interleave.

    Serialising batches keeps per-key order and avoids double publishing while letting any
    number of relays run as hot standbys.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)

    def __str__(self) -> str:
        return "relay lock"
