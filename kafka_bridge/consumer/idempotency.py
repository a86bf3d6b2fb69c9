"""Step 2, dedupe: events a consumer group already processed are dropped, twice over.

Redis answers first, for the whole batch in one MGET; the keys are set in one pipeline after
the batch commits. The database decides: `ProcessedEvent` rows are inserted for the whole
batch in one statement inside the batch transaction (`kafka_bridge.services`), and the rows
that conflict are the duplicates. So effects and "processed" marks commit together, and a
Redis that lost its keys (or is down) costs speed, never correctness.
"""

import logging
import uuid
from collections.abc import Sequence

import redis
from django.conf import settings

from common.redis_client import OutageBackoff, redis_client
from kafka_bridge.contracts import Event

logger = logging.getLogger(__name__)


def idempotency_redis_key(group: str, event_id: object) -> str:
    return f"kafka_bridge:processed:{group}:{event_id}"


class RedisSeenEvents:
    """The Redis half: a cache of processed event ids, skipped while Redis is down."""

    def __init__(self, *, group: str, consumer_name: str) -> None:
        self.group = group
        self.consumer_name = consumer_name
        self._backoff = OutageBackoff()

    def seen(self, events: Sequence[Event]) -> set[uuid.UUID]:
        """Ids of the events Redis knows as processed (none while Redis is down)."""
        if not events or not self._backoff.ready():
            return set()
        try:
            values = redis_client().mget(
                [idempotency_redis_key(self.group, e.event_id) for e in events]
            )
        except redis.RedisError as exc:
            self._failed(exc)
            return set()
        self._succeeded()
        return {e.event_id for e, value in zip(events, values, strict=True) if value is not None}

    def remember(self, events: Sequence[Event]) -> None:
        if not events or not self._backoff.ready():
            return
        try:
            pipeline = redis_client().pipeline(transaction=False)
            for event in events:
                pipeline.set(
                    idempotency_redis_key(self.group, event.event_id),
                    b"1",
                    ex=settings.IDEMPOTENCY_KEY_TTL_SECONDS,
                )
            pipeline.execute()
        except redis.RedisError as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if self._backoff.failed():  # one line per outage, not per batch
            logger.warning(
                "consumer %s: Redis unavailable (%s); idempotency falls back to the database",
                self.consumer_name,
                exc,
            )

    def _succeeded(self) -> None:
        if self._backoff.succeeded():
            logger.info("consumer %s: Redis is back", self.consumer_name)
