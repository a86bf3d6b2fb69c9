"""The outbox relay: publishes committed outbox rows to Kafka, in id order, at least once.

**One publisher at a time.** On PostgreSQL the right to publish is a session-level advisory
lock (`PublishRight`). A relay takes it with `pg_try_advisory_lock` when it has work, keeps it
while rows keep coming (pending, in flight, or found within the last poll interval), and
releases it once it has found nothing for a poll interval and every row it produced is
acknowledged and stamped. So at a steady trickle it takes the lock once, not on every wake-up.
Any number of relays can run: the others are hot standbys that try the lock on each wake-up or
poll. The lock belongs to the database
session, so a relay that dies loses it at once; a relay whose connection was replaced notices
before its next batch, stops producing and waits for what it has in flight before trying
again. While it holds the lock a relay never recycles its connection. Other databases (SQLite
for `make run`) have no such lock: run a single relay there.

**Pipelined batches.** The holder reads plain values (no model instances, no JSON parsing): the
oldest `batch_size` pending rows that are not in flight. It hands them to the producer, and
only then waits for the acknowledgements of the batch before, so reading and producing one
batch overlaps the broker round trip of the previous one (at most two batches in flight). On
PostgreSQL each step is one statement: an UPDATE in a WITH clause stamps the delivered rows
`published_at` (the time of their acknowledgement), and its SELECT reads the next batch; its
commit does not wait for the WAL flush (a session setting, made when the lock is taken),
since a stamp lost in a database crash only causes a duplicate publish. A relay that has
caught up does not stamp its last batch on its own: the next wake-up's read does, or the
next poll's, so at a steady trickle each wake-up costs one statement.
A delivery failure is recorded on its row (`attempts`, `last_error`) and, the row being
pending again, it is read first by the next batch. Reading from the oldest pending row every
time, rather than after the last id produced, matters: a row whose transaction committed
after higher ids were published is read before any later event of its key, which was
recorded after it committed.

**Order and duplicates.** A single publisher producing in id order through an idempotent
producer keeps per-key order. A crash, or a lost lock, between produce and stamp publishes
those rows again; consumers are idempotent by event id.

**Tracing.** With tracing on (decided once, at start-up), the read also takes each row's
stored trace context, and each event is produced under a span of its own whose context goes
out in the message headers (`kafka_bridge.tracing.PublishSpans`); with it off, nothing of
that runs.
"""

import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from common import tracing
from common.redis_client import redis_client
from kafka_bridge.client import pipeline_topics, producer_config, topic_name, topics_ensure
from kafka_bridge.heartbeat import Heartbeat
from kafka_bridge.lifecycle import StopFlag
from kafka_bridge.metrics import OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED
from kafka_bridge.models import OutboxEvent
from kafka_bridge.outbox import RELAY_WAKE_CHANNEL
from kafka_bridge.tracing import PublishSpans
from kafka_bridge.wire import RegistryFramer, registry_framer

logger = logging.getLogger(__name__)

# The longest a relay waiting for a wake-up goes without looking at its stop flag.
WAKE_WAIT_SLICE_SECONDS = 1.0

# Batches awaiting acknowledgements at once: the one just produced and the one before it.
PIPELINE_DEPTH = 2

# What the relay reads of a row: everything it sends, nothing it would have to parse.
ROW_VALUES = (
    "id",
    "topic",
    "key",
    "value",
    "event_id",
    "event_type",
    "schema_version",
    "correlation_id",
)
# With tracing on, also the trace context the row was recorded in (last).
TRACED_ROW_VALUES = (*ROW_VALUES, "trace_context")


def _read_sql_parts(values: tuple[str, ...]) -> tuple[str, str]:
    quote = connection.ops.quote_name
    meta = OutboxEvent._meta
    return quote(meta.db_table), ", ".join(quote(meta.get_field(v).column) for v in values)


class _ReadSqlParts(dict[bool, tuple[str, str]]):
    """The quoted table and column list of the relay's read, untraced and traced."""

    def __missing__(self, traced: bool) -> tuple[str, str]:
        self[traced] = _read_sql_parts(TRACED_ROW_VALUES if traced else ROW_VALUES)
        return self[traced]


_READ_SQL_PARTS = _ReadSqlParts()


@contextlib.contextmanager
def _postgres_local(**config: str) -> Iterator[None]:
    """A transaction whose statements run with these PostgreSQL settings (as SET LOCAL);
    just a transaction on other databases."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            calls = ", ".join(["set_config(%s, %s, true)"] * len(config))
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {calls}", [p for item in config.items() for p in item])
        yield


class PublishRight:
    """The right to publish, held by at most one relay at a time (see the module docstring).

    A PostgreSQL advisory lock taken on the relay's own database session; elsewhere always
    granted, since those databases have nothing equivalent.
    """

    # Any constant works; advisory lock keys are scoped to the current database.
    LOCK_KEY = 0x6F7574626F78  # "outbox"

    def __init__(self) -> None:
        self._session: object | None = None  # the DB-API connection that holds the lock

    @staticmethod
    def _enforced() -> bool:
        return connection.vendor == "postgresql"

    def held(self) -> bool:
        if self._session is None:
            return False
        # A closed and reopened connection is a new session, which does not hold the lock.
        return not self._enforced() or connection.connection is self._session

    def acquire(self) -> bool:
        """Take the right if no other relay holds it; never waits."""
        if self.held():
            return True  # advisory locks stack: taking it twice would need two releases
        connection.ensure_connection()
        if self._enforced():
            # The same statement sets the relay's session up (whether or not it got the
            # lock; the session does nothing but relay work). Statistics taken before a
            # backlog say that almost nothing is pending: PostgreSQL would then read and
            # sort the whole backlog for every batch (a bitmap scan) instead of walking the
            # pending index in id order. And a stamp lost in a database crash only causes a
            # duplicate publish, which consumers ignore: its commit need not wait for the
            # WAL flush.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_lock(%s),"
                    " set_config('enable_bitmapscan', 'off', false),"
                    " set_config('synchronous_commit', 'off', false)",
                    [self.LOCK_KEY],
                )
                acquired = cursor.fetchone()[0]
            if not acquired:
                return False
        self._session = connection.connection
        return True

    def release(self) -> None:
        if self.held() and self._enforced():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self.LOCK_KEY])
        self._session = None  # if the session is gone, so is its lock


def message_headers(
    event_id: object, event_type: str, schema_version: int, correlation_id: str
) -> list[tuple[str, str]]:
    """The headers every published event carries (readable without decoding the value)."""
    return [
        ("event_id", str(event_id)),
        ("event_type", event_type),
        ("schema_version", str(schema_version)),
        ("correlation_id", correlation_id),
    ]


@dataclass(eq=False)
class _Batch:
    """Rows produced together; stamped together once every one of them is acknowledged."""

    ids: list[int] = field(default_factory=list)  # produced, in id order
    outstanding: int = 0
    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    # When the last acknowledgement came: what `published_at` says, however late the stamp.
    acked_at: datetime | None = None

    def on_delivery(self, row_id: int, error: KafkaError | None, message: Message) -> None:
        self.outstanding -= 1
        if error is None:
            self.delivered.append(row_id)
        else:
            self.failed[row_id] = str(error)
        if not self.outstanding:
            self.acked_at = timezone.now()


@dataclass
class OutboxRelay:
    producer: Producer = field(default_factory=lambda: Producer(producer_config("outbox-relay")))
    batch_size: int = field(default_factory=lambda: settings.OUTBOX["BATCH_SIZE"])
    flush_timeout: float = field(default_factory=lambda: settings.OUTBOX["FLUSH_TIMEOUT_SECONDS"])
    published_total: int = 0
    right: PublishRight = field(default_factory=PublishRight)
    # Schema Registry wire format when SCHEMA_REGISTRY_URL is set; None: the stored bytes
    # go out as they are (see kafka_bridge.wire on why framing happens here).
    framer: RegistryFramer | None = field(default_factory=registry_framer)
    # Produced, awaiting acknowledgements, oldest first; never read again while in flight.
    _in_flight: deque[_Batch] = field(default_factory=deque)
    # Acknowledged (delivered or failed), not yet recorded in the database.
    _acked: list[_Batch] = field(default_factory=list)
    # The last read found fewer than `batch_size` rows: wait for every acknowledgement
    # before reading again (nothing to overlap, and no busy loop).
    _caught_up: bool = True
    # Set when a step recorded failures: the run loop pauses before retrying them.
    failed_recently: bool = False
    # Whether batches are traced (kafka_bridge.tracing): decided once, at start-up.
    traced: bool = field(default_factory=lambda: tracing.enabled)
    # The right is kept while rows keep coming: given up only after a read found nothing
    # for this long (and nothing is in flight). At a steady trickle of events that is never,
    # which saves taking and releasing the lock on every wake-up.
    hold_idle_seconds: float = field(
        default_factory=lambda: settings.OUTBOX["POLL_INTERVAL_SECONDS"]
    )
    _last_rows_at: float = 0.0

    @property
    def idle(self) -> bool:
        """Caught up with nothing in flight: the next step can wait for a wake-up."""
        return self._caught_up and not self._in_flight

    @property
    def active(self) -> bool:
        """Holding the right to publish: it has rows pending or in flight."""
        return self.right.held()

    def publish_batch(self) -> int:
        """One pipeline step: wait for the acknowledgements of the batch before the newest,
        then, in one transaction, stamp it and read the next batch; produce that.
        Returns how many rows were stamped published (0 if another relay publishes)."""
        self.failed_recently = False
        if not self.right.held():
            # Never taken, released when idle, or lost with the database session: whatever
            # is still in flight is settled before anything is read again.
            stamped, settled = self._settle_all()
            if not settled or not self.right.acquire():
                return stamped
        # The newest batch stays in flight while the next one is read and produced.
        settled = self._await_acks(keep=0 if self._caught_up else PIPELINE_DEPTH - 1)
        in_flight = [row_id for batch in self._in_flight for row_id in batch.ids]
        rows: list[tuple] = []
        if settled and self._one_statement():
            rows, stamped = self._stamp_and_read(in_flight)
        else:
            # The session's settings (PublishRight.acquire) are PostgreSQL's; elsewhere, a
            # transaction. Also the path for recording failed deliveries.
            with _postgres_local(enable_bitmapscan="off", synchronous_commit="off"):
                stamped = self._record_outcomes()
                if settled:  # else acknowledgements timed out: produce nothing more for now
                    pending = OutboxEvent.objects.filter(published_at__isnull=True)
                    if in_flight:
                        pending = pending.exclude(id__in=in_flight)
                    values = TRACED_ROW_VALUES if self.traced else ROW_VALUES
                    rows = list(pending.order_by("id").values_list(*values)[: self.batch_size])
        self._outcomes_committed()
        if not settled:
            return stamped
        now = time.monotonic()
        if rows:
            self._produce(rows)
            self._last_rows_at = now
        self._caught_up = len(rows) < self.batch_size
        if not rows and not self._in_flight and now - self._last_rows_at >= self.hold_idle_seconds:
            self.right.release()
        return stamped

    def acks_await_when_caught_up(self) -> None:
        """Caught up with batches in flight: wait for their acknowledgements, and leave the
        stamp to the next step's read (the next wake-up's, or the poll's) rather than spend
        a statement of its own on it. A crash meanwhile publishes those rows again."""
        if self.active and self._caught_up and self._in_flight:
            self._await_acks(keep=0)

    def _one_statement(self) -> bool:
        """Whether this step can stamp and read in one statement: on PostgreSQL, when no
        acknowledged row failed (failures are recorded by the transaction path)."""
        return connection.vendor == "postgresql" and not any(b.failed for b in self._acked)

    def _stamp_and_read(self, in_flight: list[int]) -> tuple[list[tuple], int]:
        """Stamp the delivered rows and read the next batch in one statement (its own
        transaction: autocommit): an UPDATE in a WITH clause, then the oldest pending rows
        that are neither in flight nor just stamped (the SELECT sees the table as it was
        before the UPDATE). Returns (rows, how many were stamped)."""
        delivered = [row_id for batch in self._acked for row_id in batch.delivered]
        table, columns = _READ_SQL_PARTS[self.traced]
        sql = (
            f"WITH stamped AS (UPDATE {table} SET published_at = %s WHERE id = ANY(%s)) "
            f"SELECT {columns} FROM {table} "
            "WHERE published_at IS NULL AND NOT (id = ANY(%s)) ORDER BY id LIMIT %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                sql, [self._acked_at(), delivered, delivered + in_flight, self.batch_size]
            )
            rows = cursor.fetchall()
        return rows, len(delivered)

    def _acked_at(self) -> datetime:
        """The `published_at` of the acknowledged rows: when the last of them was
        acknowledged (at most two batches, milliseconds apart), however late the stamp."""
        return max((b.acked_at for b in self._acked if b.acked_at), default=None) or timezone.now()

    def _produce(self, rows: list[tuple]) -> None:
        batch = _Batch()
        self._in_flight.append(batch)
        if not self.traced:
            self._produce_rows(batch, rows, None)
            return
        spans = PublishSpans(rows)
        try:
            self._produce_rows(batch, spans.rows, spans)
        finally:
            spans.produced(batch.failed)

    def _produce_rows(self, batch: _Batch, rows: list[tuple], spans: PublishSpans | None) -> None:
        topics: dict[str, str] = {}
        produce, delivered = self.producer.produce, batch.on_delivery
        if spans is not None:
            delivered = spans.delivered(delivered)
        for row_id, topic, key, value, event_id, event_type, version, correlation_id in rows:
            physical = topics.get(topic) or topics.setdefault(topic, topic_name(topic))
            headers = message_headers(event_id, event_type, version, correlation_id)
            if spans is not None:
                headers += spans.start(
                    row_id,
                    topic=physical,
                    event_id=event_id,
                    event_type=event_type,
                    correlation_id=correlation_id,
                )
            on_delivery = partial(delivered, row_id)
            if self.framer is not None:
                try:
                    value = self.framer.frame(
                        value, event_type=event_type, version=version, topic=physical
                    )
                except Exception as exc:  # registry down, or refused: whatever the client raises
                    # Recorded like a failed delivery; nothing after it is produced, so the
                    # row is read first again and order holds.
                    batch.failed[row_id] = f"schema registry: {exc}"
                    self.failed_recently = True
                    return
            while True:
                try:
                    produce(physical, value, key, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:  # the producer's queue is full: let it drain a little
                    self.producer.poll(0.1)
                except KafkaException as exc:
                    # Refused outright (e.g. too large): recorded like a failed delivery.
                    # Nothing after it is produced; it is read first again, so order holds.
                    batch.failed[row_id] = str(exc)
                    self.failed_recently = True
                    return
            batch.ids.append(row_id)
            batch.outstanding += 1

    def _await_acks(self, *, keep: int) -> bool:
        """Wait (up to `flush_timeout` each) until at most `keep` batches are in flight;
        False if acknowledgements timed out."""
        while len(self._in_flight) > keep:
            batch = self._in_flight[0]
            deadline = time.monotonic() + self.flush_timeout
            while batch.outstanding:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.producer.poll(remaining)
            self._acked.append(self._in_flight.popleft())
        return True

    def _record_outcomes(self) -> int:
        """Stamp the delivered rows of every acknowledged batch with one UPDATE and count a
        failed attempt on the others (one UPDATE per distinct error); return rows stamped.
        Runs in a transaction; `_outcomes_committed` follows once it committed."""
        delivered = [row_id for batch in self._acked for row_id in batch.delivered]
        failed: dict[str, list[int]] = defaultdict(list)
        for batch in self._acked:
            for row_id, error in batch.failed.items():
                failed[error].append(row_id)
        if delivered:
            OutboxEvent.objects.filter(id__in=delivered).update(published_at=self._acked_at())
        for error, row_ids in failed.items():
            logger.warning(
                "%d outbox rows not delivered, will retry (ids %s): %s",
                len(row_ids),
                row_ids[:5],
                error,
                extra={"outbox_ids": row_ids[:50], "error": error},
            )
            OutboxEvent.objects.filter(id__in=row_ids).update(
                attempts=F("attempts") + 1, last_error=error[:2000]
            )
        return len(delivered)

    def _outcomes_committed(self) -> None:
        # Until now a database error left the outcomes to be recorded again next time.
        failed = sum(len(batch.failed) for batch in self._acked)
        if failed:
            self.failed_recently = True
            OUTBOX_PUBLISH_FAILURES.inc(failed)
        published = sum(len(batch.delivered) for batch in self._acked)
        logger.debug("outbox batches recorded", extra={"published": published, "failed": failed})
        if published:
            self.published_total += published
            OUTBOX_PUBLISHED.inc(published)
        self._acked.clear()

    def _settle_all(self) -> tuple[int, bool]:
        """Wait for every batch in flight and record the outcomes; (stamped, all settled)."""
        settled = self._await_acks(keep=0)
        if not self._acked:
            return 0, settled
        # A stamp lost in a database crash only means a duplicate publish, which consumers
        # ignore: it need not wait for its WAL flush.
        with _postgres_local(synchronous_commit="off"):
            stamped = self._record_outcomes()
        self._outcomes_committed()
        return stamped, settled

    def close(self) -> None:
        """Wait for what is in flight, stamp it, and give up the right to publish."""
        self._settle_all()
        self.right.release()

    def run(self, stop: StopFlag) -> None:
        poll_interval = settings.OUTBOX["POLL_INTERVAL_SECONDS"]
        topics_ensure(pipeline_topics())
        wake = WakeSignal()
        heartbeat = Heartbeat("relay")
        logger.info("outbox relay started")
        last_report = time.monotonic()
        try:
            while not stop.stopping:
                heartbeat.beat()
                if not self.active:
                    # Recycling the connection would drop the lock with batches in flight.
                    close_old_connections()
                try:
                    self.publish_batch()
                except Exception:
                    logger.exception("outbox relay batch failed; retrying")
                    close_old_connections()
                    stop.wait(poll_interval)
                    continue
                if time.monotonic() - last_report > 30 and self.published_total:
                    logger.info("outbox relay: %d events published so far", self.published_total)
                    last_report = time.monotonic()
                self.acks_await_when_caught_up()
                if not self.active or self.idle:  # another relay publishes, or caught up
                    wake.wait(poll_interval, stop)
                elif self.failed_recently:
                    stop.wait(poll_interval)
            self.close()
        finally:
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
        deadline = time.monotonic() + timeout
        try:
            # In slices, so that a stop request is seen within one, however long the poll.
            while not stop.stopping and (remaining := deadline - time.monotonic()) > 0:
                if pubsub.get_message(timeout=min(remaining, WAKE_WAIT_SLICE_SECONDS)):
                    # Drain the burst: one batch handles all rows committed so far.
                    while pubsub.get_message(timeout=0) is not None:
                        pass
                    return
        except redis.RedisError as exc:
            logger.warning("relay wake-ups lost (Redis), polling only: %s", exc)
            self.close()
            stop.wait(timeout)

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError):
                self._pubsub.close()
            self._pubsub = None
