"""The loop of `manage.py run_consumer <name>`: poll a batch, decode, dedupe, apply, commit.

1. **Poll**: wait for one message, then take what else is already fetched, up to
   `KAFKA_CONSUMER_BATCH_SIZE` messages and `KAFKA_CONSUMER_BATCH_MAX_WAIT_MS` of waiting
   (`batch_max_wait_ms`). Under load batches fill up; at low load a batch is the one
   message that came, so batching adds no latency, except in groups that wait longer on
   purpose (read models, webhook deliveries, the order rate: nobody waits on their output).
2. **Decode** each message (`received.py`); undecodable ones are dead-lettered.
3. **Dedupe** (`idempotency.py`): events of other consumers on a shared topic are skipped
   (most without being decoded: `received.py`),
   an event repeated within the batch counts once, Redis drops known ones in one MGET.
4. **Apply** (`apply.py`): one transaction for the batch: ProcessedEvent rows in one INSERT
   (the conflicts are the duplicates), then set-based handlers. With tracing on, each event
   has a span meanwhile, continuing the trace its message carries (`tracing.py`).
5. **Commit** (`offsets.py`): offsets of the whole batch are stored after the transaction
   committed, and committed to Kafka about once a second, on revocation and on shutdown.

A batch that fails is split in halves, each applied as a unit, down to the failing event
alone: the events around it commit, and it alone is retried with backoff and jitter, then
dead-lettered (at once, for permanent errors). A stop request during those retries leaves
the rest of the batch uncommitted, so it is redelivered to whoever owns the partition next.
Rebalance callbacks only run inside `poll`/`consume`, never while a batch is applied, so a
revoked partition's finished batch is always committed before it moves; messages of a
partition revoked while a batch was still filling are dropped from it, for the new owner.
"""

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import close_old_connections, transaction

from common import tracing
from common.structured_logs import bind_contextvars, clear_contextvars, log_context
from kafka_bridge.client import consumer_config, group_name, topic_name
from kafka_bridge.contracts import EVENT_TYPES, Event
from kafka_bridge.heartbeat import Heartbeat
from kafka_bridge.lifecycle import StopFlag
from kafka_bridge.metrics import ConsumerMetrics
from kafka_bridge.registry import ConsumerSpec

from .apply import events_apply
from .failures import PERMANENT_ERRORS, DeadLetterWriter, RetryPolicy
from .idempotency import RedisSeenEvents
from .offsets import OffsetCommitter
from .received import Received, received_decode
from .tracing import events_traced

logger = logging.getLogger(__name__)

# Stale database connections are looked for before a batch at most this often.
CONNECTION_CHECK_INTERVAL_SECONDS = 1.0


def batch_max_wait_ms(spec: ConsumerSpec) -> int:
    """The deployment's wait for this group, else the group's own, else the default."""
    kafka = settings.KAFKA
    by_group = kafka["CONSUMER_BATCH_MAX_WAIT_MS_BY_GROUP"]
    if spec.name in by_group:
        return by_group[spec.name]
    if spec.batch_max_wait_ms is not None:
        return spec.batch_max_wait_ms
    return int(kafka["CONSUMER_BATCH_MAX_WAIT_MS"])


@dataclass
class ProcessingStats:
    processed: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    batches: int = 0


@dataclass
class ConsumerRunner:
    spec: ConsumerSpec
    stop: StopFlag = field(default_factory=StopFlag)
    stats: ProcessingStats = field(default_factory=ProcessingStats)
    joined: bool = field(default=False, init=False)  # the group has assigned us (maybe nothing)
    # Partitions revoked while this poll's messages were being gathered (see _poll_batch).
    _revoked_in_poll: set[tuple[str, int]] = field(default_factory=set, init=False)
    _next_connections_check: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        kafka = settings.KAFKA
        self.group = group_name(self.spec.name)
        self.retry = RetryPolicy.from_settings(kafka)
        self.batch_size = max(1, kafka["CONSUMER_BATCH_SIZE"])
        self.batch_max_wait = batch_max_wait_ms(self.spec) / 1000
        self.metrics = ConsumerMetrics(self.group)
        config = consumer_config(group_id=self.group, role=f"consumer-{self.spec.name}")
        if settings.METRICS_PORT is not None:
            config.update(self.metrics.statistics_config())  # the per-partition lag gauge
        self.consumer = Consumer(config)
        self.heartbeat = Heartbeat(f"consumer-{self.spec.name}")
        self._physical_to_logical = {topic_name(t): t for t in self.spec.topics}
        if self.spec.writes_dead_letters:
            self.metrics.dead_letter_sources(self._physical_to_logical)
        self.offsets = OffsetCommitter(
            consumer=self.consumer,
            interval_seconds=kafka["COMMIT_INTERVAL_SECONDS"],
            label=self.spec.name,
        )
        self.redis = RedisSeenEvents(group=self.group, consumer_name=self.spec.name)
        self.dead_letters = DeadLetterWriter(
            group=self.group, consumer_name=self.spec.name, logical_topics=self._physical_to_logical
        )
        # Whether events get spans (step 4a, tracing.py): decided once, at start-up.
        self.traced = tracing.enabled
        # Registered event types on our topics that other groups handle: not decoded here.
        topics = set(self.spec.topics)
        self.foreign_types = frozenset(
            name
            for name, event_type in EVENT_TYPES.items()
            if event_type.topic in topics and name not in self.spec.handlers
        )

    # --- loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            list(self._physical_to_logical), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        logger.info(
            "consumer %s started: group=%s topics=%s batch=%d",
            self.spec.name,
            self.group,
            ",".join(self._physical_to_logical),
            self.batch_size,
        )
        last_report = time.monotonic()
        try:
            while not self.stop.stopping:
                self.heartbeat.beat()
                messages = self._poll_batch()
                if messages:
                    self._connections_check()
                    self.metrics.batch_polled(messages)
                    started = time.perf_counter()
                    raw, foreign = self.spec.is_raw, self.foreign_types
                    items = [received_decode(m, raw=raw, foreign_types=foreign) for m in messages]
                    self._log_context_bind(items)
                    self.handle_batch(items)
                    self.metrics.batch_duration.observe(time.perf_counter() - started)
                    clear_contextvars()  # the loop's own lines are about no batch
                self.offsets.commit_if_due()
                if time.monotonic() - last_report > 30 and self.stats.processed:
                    logger.info(
                        "consumer %s: %d events processed so far",
                        self.spec.name,
                        self.stats.processed,
                    )
                    last_report = time.monotonic()
        finally:
            self._finish_joining()
            self.offsets.commit()
            self.consumer.close()  # leaves the group so partitions move at once
            self.dead_letters.close()
            logger.info(
                "consumer %s stopped: processed=%d duplicates=%d skipped=%d dead_lettered=%d "
                "batches=%d",
                self.spec.name,
                self.stats.processed,
                self.stats.duplicates,
                self.stats.skipped,
                self.stats.dead_lettered,
                self.stats.batches,
            )

    def _connections_check(self) -> None:
        """Close stale database connections (broken, or older than CONN_MAX_AGE) before a
        batch, at most once per CONNECTION_CHECK_INTERVAL_SECONDS: each check costs the
        batch after it a `SELECT 1` (CONN_HEALTH_CHECKS), which at low load, one event per
        batch, was a statement per batch. A connection that breaks in between fails its
        batch, whose retry checks again."""
        now = time.monotonic()
        if now >= self._next_connections_check:
            close_old_connections()
            self._next_connections_check = now + CONNECTION_CHECK_INTERVAL_SECONDS

    def _log_context_bind(self, items: Sequence[Received]) -> None:
        """Every line logged while this batch is in hand names the group, and the message
        and its event when the batch is one message (retries and dead letters bind theirs)."""
        clear_contextvars()
        ids = items[0].log_ids() if len(items) == 1 else {"batch_size": len(items)}
        bind_contextvars(consumer_group=self.group, **ids)

    def _poll_batch(self) -> list[Message]:
        self._revoked_in_poll.clear()
        first = self.consumer.poll(0.5)
        if first is None:
            return []
        messages = [first]
        if self.batch_size > 1:
            messages += self.consumer.consume(self.batch_size - 1, timeout=self.batch_max_wait)
        if self._revoked_in_poll:
            # A rebalance while the batch filled (a group that waits for its batches waits up
            # to a quarter of a second) took partitions whose messages are already in hand:
            # they are left to the new owner, unprocessed and uncommitted here.
            messages = [
                m for m in messages if (m.topic(), m.partition()) not in self._revoked_in_poll
            ]
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:
                logger.warning("consumer %s: %s", self.spec.name, error)
        return good

    # --- a batch ----------------------------------------------------------------------
    def handle_batch(self, items: Sequence[Received]) -> bool:
        """Process `items` as one unit; on failure split it until the failing event is
        alone. Returns False if a stop request cut it short (nothing after is stored)."""
        try:
            self._process(items)
        except Exception as exc:
            if len(items) == 1:
                return self._retry_alone(items[0], exc)
            logger.warning(
                "consumer %s: batch of %d failed (%s: %s); splitting it to isolate the failure",
                self.spec.name,
                len(items),
                type(exc).__name__,
                exc,
            )
            half = len(items) // 2
            return self.handle_batch(items[:half]) and self.handle_batch(items[half:])
        self.offsets.store(item.message for item in items)
        return True

    def _retry_alone(self, item: Received, exc: Exception) -> bool:
        with log_context(**item.log_ids()):
            return self._retry_alone_logged(item, exc)

    def _retry_alone_logged(self, item: Received, exc: Exception) -> bool:
        attempts = 1
        while True:
            # A raw message cannot be replayed as an event: it is dead-lettered only when it
            # can never succeed. The dead-letter store has no DLQ of its own: it retries
            # until the message is stored, never committing past it.
            if self.spec.is_raw:
                gives_up = isinstance(exc, PERMANENT_ERRORS)
            else:
                gives_up = self.retry.gives_up(exc, attempts)
            if self.spec.writes_dead_letters and gives_up:
                self._dead_letter(item, exc, attempts)
                self.offsets.store([item.message])
                return True
            delay = self.retry.delay(attempts)
            logger.warning(
                "consumer %s: attempt %d at %s failed (%s: %s); retrying in %.2fs",
                self.spec.name,
                attempts,
                item.position,
                type(exc).__name__,
                exc,
                delay,
            )
            # A stop request ends the retries; the offset stays uncommitted so the
            # event is redelivered to whoever owns the partition next.
            if self.stop.wait(delay):
                return False
            close_old_connections()
            attempts += 1
            self.metrics.retries.inc()
            try:
                self._process([item])
            except Exception as retry_exc:
                exc = retry_exc
                continue
            self.offsets.store([item.message])
            return True

    def _process(self, items: Sequence[Received]) -> None:
        """Apply one unit; raises if it must be retried. Statistics count only on success."""
        message_handler = self.spec.message_handler
        if message_handler is not None:
            started = time.perf_counter()
            with transaction.atomic():
                for item in items:
                    message_handler(item.message)
            self.stats.processed += len(items)
            self.stats.batches += 1
            handler = message_handler.__name__
            self.metrics.batch_applied(
                processed=len(items),
                ignored=0,
                duplicates={},
                handler_seconds={handler: time.perf_counter() - started},
            )
            return
        undecodable = [item for item in items if item.undecodable is not None]
        if len(items) == 1 and undecodable:
            raise undecodable[0].undecodable  # type: ignore[misc]
        events, skipped, repeated = self._handled_once(items)
        seen = self.redis.seen(events)
        todo = [event for event in events if event.event_id not in seen]
        processed: list[Event] = []
        database_duplicates: list[Event] = []
        handler_seconds: dict[str, float] = {}
        if todo:
            traced = (
                events_traced(group=self.group, items=items, events=todo)
                if self.traced
                else contextlib.nullcontext()
            )
            with traced:
                applied = events_apply(
                    group=self.group,
                    events=todo,
                    handlers=self.spec.handlers,
                    whole_batches=self.spec.whole_batches,
                )
            processed, database_duplicates = applied.processed, applied.duplicates
            names = self.spec.handler_names
            handler_seconds = {names[h]: s for h, s in applied.handler_seconds.items()}
            self.redis.remember(todo)
        # Dead letters go out after the batch committed: a failed commit redelivers all.
        for item in undecodable:
            self._dead_letter(item, item.undecodable, attempts=1)  # type: ignore[arg-type]
        for where, duplicates in (
            ("batch", repeated),
            ("redis", [e for e in events if e.event_id in seen]),
            ("database", database_duplicates),
        ):
            for event in duplicates:
                logger.info(
                    "consumer %s: duplicate event %s skipped (%s)",
                    self.spec.name,
                    event.event_id,
                    where,
                )
        if processed and logger.isEnabledFor(logging.DEBUG):
            by_id = {item.event.event_id: item for item in items if item.event is not None}
            for event in processed:
                logger.debug("event applied", extra=by_id[event.event_id].log_ids())
        self.stats.processed += len(processed)
        self.stats.duplicates += len(repeated) + len(seen) + len(database_duplicates)
        self.stats.skipped += skipped
        self.stats.batches += 1
        self.metrics.batch_applied(
            processed=len(processed),
            ignored=skipped,
            duplicates={
                "batch": len(repeated),
                "redis": len(seen),
                "database": len(database_duplicates),
            },
            handler_seconds=handler_seconds,
        )

    def _handled_once(self, items: Sequence[Received]) -> tuple[list[Event], int, list[Event]]:
        """The decoded events this consumer handles, each once: (events, how many were
        another consumer's, events repeated within the batch)."""
        events: list[Event] = []
        repeated: list[Event] = []
        ids: set[object] = set()
        skipped = 0
        for item in items:
            event = item.event
            if item.foreign:
                skipped += 1  # another consumer's event on a shared topic (by its header)
                continue
            if event is None:
                continue
            if event.event_type not in self.spec.handlers:
                skipped += 1  # another consumer's event, whose header did not say so
            elif event.event_id in ids:
                repeated.append(event)
            else:
                ids.add(event.event_id)
                events.append(event)
        return events, skipped, repeated

    def _dead_letter(self, item: Received, exc: BaseException, attempts: int) -> None:
        dlq_topic = self.dead_letters.write(item.message, exc, attempts)
        self.stats.dead_lettered += 1
        self.metrics.dead_lettered(item.message.topic())
        with log_context(**item.log_ids()):
            self._dead_lettered_log(item, exc, attempts, dlq_topic)

    def _dead_lettered_log(
        self, item: Received, exc: BaseException, attempts: int, dlq_topic: str
    ) -> None:
        logger.error(
            "consumer %s: %s dead-lettered to %s after %d attempt(s): %s: %s",
            self.spec.name,
            item.position,
            dlq_topic,
            attempts,
            type(exc).__name__,
            exc,
        )

    # --- rebalances -------------------------------------------------------------------
    def _finish_joining(self) -> None:
        """A member that leaves while its group is still forming can leave the group unable
        to assign partitions to anyone for the rebalance timeout (seen on our test broker;
        docs/test-broker.md). A consumer stopped during its join therefore completes
        the join first, bounded by two session timeouts, and then leaves as a member in
        good standing. Whatever it receives meanwhile is neither processed nor committed:
        the next member gets it."""
        if self.joined:
            return
        limit = 2 * settings.KAFKA["SESSION_TIMEOUT_MS"] / 1000
        logger.info(
            "consumer %s stopping during its group join: completing the join first (<= %.0fs)",
            self.spec.name,
            limit,
        )
        deadline = time.monotonic() + limit
        while not self.joined and time.monotonic() < deadline:
            self.consumer.poll(0.1)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.joined = True
        self._revoked_in_poll.difference_update((p.topic, p.partition) for p in partitions)
        logger.info(
            "consumer %s assigned %s",
            self.spec.name,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self._revoked_in_poll.update(revoked)
        self.offsets.revoke(revoked)
        logger.info(
            "consumer %s revoked %s",
            self.spec.name,
            ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
        )
