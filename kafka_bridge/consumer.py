"""The consumer runtime shared by every registered consumer.

Per message: decode → skip if already processed (Redis key, then the ProcessedEvent row in
the same transaction as the handler) → handler → commit the DB transaction → remember the
next offset. Offsets are committed to Kafka only after that, at most about once a second
while busy, and always when partitions are revoked and on shutdown. Nothing auto-commits.

Failures: an event that cannot be decoded or that a handler rejects as permanently invalid
goes straight to `<topic>.dlq`; any other exception is retried with exponential backoff and
jitter a bounded number of times, then dead-lettered. Either way the partition moves on.
"""

import logging
import random
import time
from dataclasses import dataclass, field

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from kafka_bridge.client import consumer_config, group_name, producer_config, topic_name
from kafka_bridge.contracts import Event, EventDecodeError, event_decode
from kafka_bridge.correlation import correlation_scope
from kafka_bridge.lifecycle import StopFlag
from kafka_bridge.models import ProcessedEvent
from kafka_bridge.redis_client import OutageBackoff, redis_client
from kafka_bridge.registry import ConsumerSpec

logger = logging.getLogger(__name__)


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never succeed; it goes to the DLQ at once."""


# Errors that no retry can fix: the message goes to the DLQ at once. Everything else
# (database or Redis unavailable, timeouts, a provider outage, a bug) is retried first.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    EventDecodeError,  # undecodable bytes, unknown type or version, invalid payload
    PermanentEventError,
    ObjectDoesNotExist,  # the event refers to something that does not exist
    ValidationError,  # a domain rule refused the event
)


def idempotency_redis_key(group: str, event_id: object) -> str:
    return f"kafka_bridge:processed:{group}:{event_id}"


@dataclass
class ProcessingStats:
    processed: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0


@dataclass
class ConsumerRunner:
    spec: ConsumerSpec
    stop: StopFlag = field(default_factory=StopFlag)
    stats: ProcessingStats = field(default_factory=ProcessingStats)
    # Next offsets to commit per (topic, partition), stored only after processing succeeded.
    _pending: dict[tuple[str, int], int] = field(default_factory=dict)
    _last_commit: float = field(default_factory=time.monotonic)
    _redis: OutageBackoff = field(default_factory=OutageBackoff)

    def __post_init__(self) -> None:
        self.group = group_name(self.spec.name)
        self.kafka = settings.KAFKA
        self.consumer = Consumer(
            consumer_config(group_id=self.group, role=f"consumer-{self.spec.name}")
        )
        self._dlq_producer: Producer | None = None
        self._check_retry_budget()
        self._physical_to_logical = {topic_name(t): t for t in self.spec.topics}

    # --- loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            list(self._physical_to_logical), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        logger.info(
            "consumer %s started: group=%s topics=%s",
            self.spec.name,
            self.group,
            ",".join(self._physical_to_logical),
        )
        try:
            while not self.stop.stopping:
                message = self.consumer.poll(0.5)
                if message is None:
                    self._commit_if_due()
                    continue
                if message.error():
                    self._log_client_error(message.error())
                    continue
                close_old_connections()
                self.handle_message(message)
                self._commit_if_due()
        finally:
            self._commit_pending()
            self.consumer.close()  # leaves the group so partitions move at once
            if self._dlq_producer is not None:
                self._dlq_producer.flush(10)
            logger.info(
                "consumer %s stopped: processed=%d duplicates=%d skipped=%d dead_lettered=%d",
                self.spec.name,
                self.stats.processed,
                self.stats.duplicates,
                self.stats.skipped,
                self.stats.dead_lettered,
            )

    def _log_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        logger.warning("consumer %s: %s", self.spec.name, error)

    # --- one message ------------------------------------------------------------------
    def handle_message(self, message: Message) -> None:
        attempts = 0
        while True:
            attempts += 1
            try:
                self._process(message)
                break
            except Exception as exc:
                # A raw consumer (the dead-letter store) has no DLQ of its own: it retries
                # until the message is stored, never committing past it.
                if not self.spec.is_raw and (
                    isinstance(exc, PERMANENT_ERRORS)
                    or attempts >= self.kafka["HANDLER_MAX_ATTEMPTS"]
                ):
                    self._dead_letter(message, exc, attempts)
                    break
                delay = self._backoff(attempts)
                logger.warning(
                    "consumer %s: attempt %d at %s[%d]@%d failed (%s: %s); retrying in %.2fs",
                    self.spec.name,
                    attempts,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                # A stop request ends the retries; the offset stays uncommitted so the
                # event is redelivered to whoever owns the partition next.
                if self.stop.wait(delay):
                    return
                close_old_connections()
        self._pending[(message.topic(), message.partition())] = message.offset() + 1

    def _check_retry_budget(self) -> None:
        """Retries wait in place, between polls: their total must stay well inside
        max.poll.interval.ms, or the group would evict us mid-retry."""
        attempts = self.kafka["HANDLER_MAX_ATTEMPTS"]
        worst = sum(
            min(
                self.kafka["HANDLER_BACKOFF_BASE_SECONDS"] * 2 ** (n - 1),
                self.kafka["HANDLER_BACKOFF_MAX_SECONDS"],
            )
            for n in range(1, attempts)
        )
        limit = self.kafka["MAX_POLL_INTERVAL_MS"] / 1000 / 2
        if worst > limit:
            raise ImproperlyConfigured(
                f"handler retries may wait {worst:.0f}s, more than half of "
                f"KAFKA_MAX_POLL_INTERVAL_MS ({limit * 2:.0f}s): lower KAFKA_HANDLER_MAX_ATTEMPTS "
                "or the backoff, or raise the poll interval"
            )

    def _backoff(self, attempts: int) -> float:
        base = self.kafka["HANDLER_BACKOFF_BASE_SECONDS"] * 2 ** (attempts - 1)
        capped = min(base, self.kafka["HANDLER_BACKOFF_MAX_SECONDS"])
        return capped / 2 + random.uniform(0, capped / 2)  # jitter: spread retries apart

    def _process(self, message: Message) -> None:
        if self.spec.is_raw:
            with transaction.atomic():
                self.spec.message_handler(message)
            self.stats.processed += 1
            return
        event = event_decode(message.value())
        handler = self.spec.handlers.get(event.event_type)
        if handler is None:
            self.stats.skipped += 1  # another consumer's event on a shared topic
            return
        if self._seen_in_redis(event):
            self.stats.duplicates += 1
            logger.info(
                "consumer %s: duplicate event %s skipped (redis)", self.spec.name, event.event_id
            )
            return
        with correlation_scope(event.correlation_id), transaction.atomic():
            if not self._mark_processed(event):
                self.stats.duplicates += 1
                logger.info(
                    "consumer %s: duplicate event %s skipped (database)",
                    self.spec.name,
                    event.event_id,
                )
                return
            handler(event)
        self.stats.processed += 1
        self._remember_in_redis(event)

    def _mark_processed(self, event: Event) -> bool:
        try:
            with transaction.atomic():
                ProcessedEvent.objects.create(
                    consumer_group=self.group, event_id=event.event_id, event_type=event.event_type
                )
        except IntegrityError:
            return False
        return True

    def _seen_in_redis(self, event: Event) -> bool:
        if not self._redis.ready():
            return False  # Redis is down: the database backstop decides alone
        try:
            seen = bool(redis_client().exists(idempotency_redis_key(self.group, event.event_id)))
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return False
        if self._redis.succeeded():
            logger.info("consumer %s: Redis is back", self.spec.name)
        return seen

    def _remember_in_redis(self, event: Event) -> None:
        if not self._redis.ready():
            return
        try:
            redis_client().set(
                idempotency_redis_key(self.group, event.event_id),
                b"1",
                ex=settings.IDEMPOTENCY_KEY_TTL_SECONDS,
            )
        except redis.RedisError as exc:
            self._redis_failed(exc)

    def _redis_failed(self, exc: Exception) -> None:
        if self._redis.failed():  # one line per outage, not per message
            logger.warning(
                "consumer %s: Redis unavailable (%s); idempotency falls back to the database",
                self.spec.name,
                exc,
            )

    # --- dead letters -----------------------------------------------------------------
    def _dead_letter(self, message: Message, exc: BaseException, attempts: int) -> None:
        logical = self._physical_to_logical.get(message.topic(), message.topic())
        dlq_topic = topic_name(f"{logical}.dlq")
        headers = [
            *(message.headers() or []),
            ("dlq.original_topic", message.topic().encode()),
            ("dlq.original_partition", str(message.partition()).encode()),
            ("dlq.original_offset", str(message.offset()).encode()),
            ("dlq.consumer_group", self.group.encode()),
            ("dlq.error_class", f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
            ("dlq.error_message", str(exc)[:4000].encode(errors="replace")),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.failed_at", timezone.now().isoformat().encode()),
        ]
        if self._dlq_producer is None:
            self._dlq_producer = Producer(producer_config(f"dlq-{self.spec.name}"))
        delivery_errors: list[KafkaError] = []
        self._dlq_producer.produce(
            dlq_topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            on_delivery=lambda err, _msg: delivery_errors.append(err) if err else None,
        )
        # The offset is only committed once the dead letter is safely written.
        remaining = self._dlq_producer.flush(30)
        if remaining or delivery_errors:
            raise KafkaException(f"could not write dead letter to {dlq_topic}: {delivery_errors}")
        self.stats.dead_lettered += 1
        logger.error(
            "consumer %s: %s[%d]@%d dead-lettered to %s after %d attempt(s): %s: %s",
            self.spec.name,
            message.topic(),
            message.partition(),
            message.offset(),
            dlq_topic,
            attempts,
            type(exc).__name__,
            exc,
        )

    # --- offsets ----------------------------------------------------------------------
    def _commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= self.kafka["COMMIT_INTERVAL_SECONDS"]:
            self._commit_pending()

    def _commit_pending(self, only: set[tuple[str, int]] | None = None) -> None:
        keys = [k for k in self._pending if only is None or k in only]
        if keys:
            offsets = [TopicPartition(t, p, self._pending[(t, p)]) for t, p in keys]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # Not fatal: uncommitted events are redelivered and skipped as duplicates.
                logger.warning("consumer %s: offset commit failed: %s", self.spec.name, exc)
            else:
                for key in keys:
                    self._pending.pop(key, None)
        self._last_commit = time.monotonic()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info(
            "consumer %s assigned %s",
            self.spec.name,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._commit_pending(only=revoked)
        for key in revoked:  # never commit later for a partition we no longer own
            self._pending.pop(key, None)
        logger.info(
            "consumer %s revoked %s",
            self.spec.name,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
        )
