import json
import uuid
from typing import Any

from django.db import models
from django.db.models import Q


class OutboxEvent(models.Model):
    """A domain event written in the same transaction as the change it describes.

    The relay publishes rows in `id` order and stamps `published_at`; a row is never deleted
    by the relay, so the table doubles as an audit log of everything the system emitted.
    `value` holds the exact message bytes, serialised once when the event was recorded, so
    the relay sends them as they are; `envelope` is those bytes parsed, for readers.
    """

    # Not unique: a replayed dead letter is recorded again with its original event id, so
    # that consumers which already processed it recognise it as a duplicate.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False, db_index=True)
    event_type = models.CharField(max_length=100)
    schema_version = models.PositiveSmallIntegerField()
    topic = models.CharField(max_length=200, help_text="Logical topic, before the namespace.")
    key = models.CharField(max_length=200, help_text="Kafka message key (the customer id).")
    aggregate_id = models.CharField(max_length=100)
    correlation_id = models.CharField(max_length=100)
    value = models.BinaryField(help_text="The message value sent to Kafka: the JSON envelope.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    replay_of = models.ForeignKey(
        "DeadLetter", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays"
    )
    # The W3C trace context (traceparent, tracestate) of what recorded the event, as JSON;
    # the relay sends it on as Kafka headers (common.tracing). Empty when tracing is off:
    # the database default, so that writers leave the column out of their INSERT then.
    trace_context = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"], name="outbox_pending_idx", condition=Q(published_at__isnull=True)
            ),
            # Plain B-trees: `db_index` would add a LIKE index per column on PostgreSQL, which
            # no query uses and which every insert and every relay stamp would have to update.
            models.Index(fields=["event_type"], name="outbox_event_type_idx"),
            models.Index(fields=["aggregate_id"], name="outbox_aggregate_idx"),
            models.Index(fields=["correlation_id"], name="outbox_correlation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope parsed from `value`; read-only, since the bytes are what is sent."""
        return json.loads(bytes(self.value))


class ArchivedEvent(models.Model):
    """An outbox row's metadata, kept when retention prunes the published row
    (`kafka_bridge.retention`): what an aggregate's timeline shows, without the message
    bytes, which Kafka (and the analysts' Connect export) keep. A row is moved, never
    copied: it is in the outbox or here, in one transaction."""

    outbox_id = models.BigIntegerField(unique=True, help_text="The row's id in the outbox.")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=100)
    correlation_id = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["outbox_id"]
        indexes = [models.Index(fields=["aggregate_id"], name="archived_event_aggregate_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} (archived)"

    @property
    def is_published(self) -> bool:
        return True


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


class DeadLetter(models.Model):
    """A message a consumer gave up on, copied from its `<topic>.dlq` topic for staff to
    inspect, replay (through the outbox, same event id) or discard."""

    class Status(models.TextChoices):
        NEW = "new", "New"
        REPLAYED = "replayed", "Replayed"
        DISCARDED = "discarded", "Discarded"

    dlq_topic = models.CharField(max_length=200)
    dlq_partition = models.IntegerField()
    dlq_offset = models.BigIntegerField()
    original_topic = models.CharField(max_length=200, db_index=True)
    original_partition = models.IntegerField(null=True)
    original_offset = models.BigIntegerField(null=True)
    consumer_group = models.CharField(max_length=200, db_index=True)
    error_class = models.CharField(max_length=300, db_index=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    failed_at = models.DateTimeField(null=True, db_index=True)
    key = models.TextField(blank=True)
    value = models.BinaryField()
    headers = models.JSONField(default=dict)
    event_id = models.UUIDField(null=True, blank=True, db_index=True)
    event_type = models.CharField(max_length=100, blank=True, db_index=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.NEW, db_index=True
    )
    stored_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-failed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dlq_topic", "dlq_partition", "dlq_offset"], name="dead_letter_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type or 'undecodable'} from {self.original_topic} ({self.status})"

    @property
    def value_text(self) -> str:
        return bytes(self.value).decode("utf-8", errors="replace")
