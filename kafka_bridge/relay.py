"""The outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

Batches are serialised across relay processes by locking one row (`RelayLock`), so any
number of relays can run (hot standby) without interleaving batches: per-key order holds
and a row is published once in normal operation. After a crash between produce and mark,
the rows are published again; consumers are idempotent by event id.
"""

import contextlib
import logging
import time
from dataclasses import dataclass, field

import redis
from confluent_kafka import KafkaError, Message, Producer
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from kafka_bridge.client import pipeline_topics, producer_config, topic_name, topics_ensure
from kafka_bridge.lifecycle import StopFlag
from kafka_bridge.models import OutboxEvent, RelayLock
from kafka_bridge.outbox import RELAY_WAKE_CHANNEL
from kafka_bridge.redis_client import redis_client

logger = logging.getLogger(__name__)


def message_headers(row: OutboxEvent) -> list[tuple[str, bytes]]:
    return [
        ("event_id", str(row.event_id).encode()),
        ("event_type", row.event_type.encode()),
        ("schema_version", str(row.schema_version).encode()),
        ("correlation_id", row.correlation_id.encode()),
    ]


@dataclass
class OutboxRelay:
    producer: Producer = field(default_factory=lambda: Producer(producer_config("outbox-relay")))
    batch_size: int = field(default_factory=lambda: settings.OUTBOX["BATCH_SIZE"])
    flush_timeout: float = field(default_factory=lambda: settings.OUTBOX["FLUSH_TIMEOUT_SECONDS"])
    published_total: int = 0
    # Rows handed to the producer whose delivery is not yet known: never produced twice.
    _in_flight: set[int] = field(default_factory=set)
    _delivered: set[int] = field(default_factory=set)
    _failed: dict[int, str] = field(default_factory=dict)

    def _on_delivery(self, row_id: int, error: KafkaError | None, message: Message) -> None:
        self._in_flight.discard(row_id)
        if error is None:
            self._delivered.add(row_id)
        else:
            self._failed[row_id] = str(error)

    def publish_batch(self) -> int:
        """Publish up to one batch of pending rows; return how many were confirmed."""
        with transaction.atomic():
            RelayLock.objects.get_or_create(pk=1)
            RelayLock.objects.select_for_update().get(pk=1)
            rows = list(
                OutboxEvent.objects.filter(published_at__isnull=True)
                .exclude(id__in=self._in_flight)
                .order_by("id")[: self.batch_size]
            )
            for row in rows:
                self._in_flight.add(row.id)
                self.producer.produce(
                    topic_name(row.topic),
                    key=row.key.encode(),
                    value=bytes(row.value),
                    headers=message_headers(row),
                    on_delivery=lambda err, msg, row_id=row.id: self._on_delivery(row_id, err, msg),
                )
            if rows or self._in_flight:
                self.producer.flush(self.flush_timeout)
            return self._record_outcomes()

    def _record_outcomes(self) -> int:
        delivered, self._delivered = self._delivered, set()
        failed, self._failed = self._failed, {}
        if delivered:
            OutboxEvent.objects.filter(id__in=delivered).update(published_at=timezone.now())
        for row_id, error in failed.items():
            logger.warning("outbox row %s not delivered, will retry: %s", row_id, error)
            OutboxEvent.objects.filter(id=row_id).update(
                attempts=F("attempts") + 1, last_error=error[:2000]
            )
        self.published_total += len(delivered)
        return len(delivered)

    def run(self, stop: StopFlag) -> None:
        poll_interval = settings.OUTBOX["POLL_INTERVAL_SECONDS"]
        topics_ensure(pipeline_topics())
        wake = WakeSignal()
        logger.info("outbox relay started")
        last_report = time.monotonic()
        while not stop.stopping:
            close_old_connections()
            try:
                published = self.publish_batch()
            except Exception:
                logger.exception("outbox relay batch failed; retrying")
                stop.wait(poll_interval)
                continue
            if time.monotonic() - last_report > 30 and self.published_total:
                logger.info("outbox relay: %d events published so far", self.published_total)
                last_report = time.monotonic()
            if published < self.batch_size and not self._in_flight:
                wake.wait(poll_interval, stop)
        self.producer.flush(self.flush_timeout)
        self._record_outcomes()
        wake.close()
        logger.info("outbox relay stopped after publishing %d events", self.published_total)


class WakeSignal:
    """Redis pub/sub wake-ups from committing transactions, degrading to plain polling."""

    def __init__(self) -> None:
        self._pubsub: redis.client.PubSub | None = None

    def _subscribe(self) -> "redis.client.PubSub | None":
        if self._pubsub is None:
            try:
                pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(RELAY_WAKE_CHANNEL)
                self._pubsub = pubsub
            except redis.RedisError as exc:
                logger.warning("relay wake-ups unavailable (Redis), polling only: %s", exc)
        return self._pubsub

    def wait(self, timeout: float, stop: StopFlag) -> None:
        pubsub = self._subscribe()
        if pubsub is None:
            stop.wait(timeout)
            return
        try:
            if pubsub.get_message(timeout=timeout) is not None:
                # Drain the burst: one batch handles all rows committed so far.
                while pubsub.get_message(timeout=0) is not None:
                    pass
        except redis.RedisError as exc:
            logger.warning("relay wake-ups lost (Redis), polling only: %s", exc)
            self.close()
            stop.wait(timeout)

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None
