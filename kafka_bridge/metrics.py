"""Prometheus metrics of the worker processes: the consumers and the outbox relay.

A worker serves them on `METRICS_PORT` (`metrics_serve`); the web tier has its own
(`common/metrics.py`). The consumer runtime is batched, and so is its instrumentation:
counters move once per batch by the batch's figures, never once per event. Label values
that never change in a process (the group) are bound once, up front. docs/operations.md
lists every metric with its labels.

Names follow the Prometheus conventions: counters end in `_total`, durations are
`_seconds`; group and topic labels carry the physical names (with `KAFKA_NAMESPACE`), as
Kafka's own tools show them.
"""

import json
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence

from confluent_kafka import Message
from django.conf import settings
from django.db import DatabaseError, connection
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

logger = logging.getLogger(__name__)

# The `_created` series would double what every scrape carries, for nothing we chart.
disable_created_metrics()

DUPLICATE_SOURCES = ("batch", "redis", "database")

# --- consumers --------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "kafka_consumer_events_consumed",
    "Messages received from Kafka, decodable or not.",
    ["group", "topic"],
)
EVENTS_PROCESSED = Counter(
    "kafka_consumer_events_processed",
    "Events whose handlers ran and committed (raw consumers: messages stored).",
    ["group"],
)
DUPLICATES_SKIPPED = Counter(
    "kafka_consumer_duplicates_skipped",
    "Events skipped as already processed: repeated within the batch, known to Redis, or "
    "known to the database (ProcessedEvent).",
    ["group", "source"],
)
EVENTS_IGNORED = Counter(
    "kafka_consumer_events_ignored",
    "Events of types this consumer does not handle (another consumer's, on a shared topic).",
    ["group"],
)
RETRIES = Counter(
    "kafka_consumer_retries",
    "Attempts to process a failing event again after a transient error.",
    ["group"],
)
DEAD_LETTERED = Counter(
    "kafka_consumer_events_dead_lettered",
    "Messages sent to the dead-letter topic, by the topic they came from.",
    ["group", "topic"],
)
BATCH_SIZE = Histogram(
    "kafka_consumer_batch_size",
    "Messages per polled batch.",
    ["group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_DURATION = Histogram(
    "kafka_consumer_batch_duration_seconds",
    "Time to process one polled batch: dedupe, handlers, retries and dead letters.",
    ["group"],
    buckets=_DURATION_BUCKETS,
)
HANDLER_DURATION = Histogram(
    "kafka_consumer_handler_duration_seconds",
    "Time one handler spent on its events of a batch (both phases of a two-phase handler).",
    ["group", "handler"],
    buckets=_DURATION_BUCKETS,
)
LAG = Gauge(
    "kafka_consumer_lag_messages",
    "Messages behind the end of each assigned partition, from the consumer's own committed "
    "and high-watermark offsets (librdkafka statistics; approximate on our test broker).",
    ["group", "topic", "partition"],
)

# --- outbox relay -----------------------------------------------------------------------
OUTBOX_PUBLISHED = Counter(
    "outbox_events_published", "Outbox rows acknowledged by Kafka and stamped published."
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures",
    "Outbox rows whose delivery failed (recorded on the row and retried).",
)

# --- every worker -----------------------------------------------------------------------
HEARTBEAT = Gauge(
    "worker_heartbeat_timestamp_seconds",
    "Unix time of the worker loop's latest heartbeat (see kafka_bridge/heartbeat.py).",
    ["worker"],
)


class ConsumerMetrics:
    """The metrics of one consumer group, label values bound once."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.processed = EVENTS_PROCESSED.labels(group)
        self.ignored = EVENTS_IGNORED.labels(group)
        self.retries = RETRIES.labels(group)
        self.duplicates = {s: DUPLICATES_SKIPPED.labels(group, s) for s in DUPLICATE_SOURCES}
        self.batch_size = BATCH_SIZE.labels(group)
        self.batch_duration = BATCH_DURATION.labels(group)
        self._consumed: dict[str, Counter] = {}
        self._dead_lettered: dict[str, Counter] = {}
        self._handler_duration: dict[str, Histogram] = {}
        self._lag_partitions: set[tuple[str, str]] = set()

    def batch_polled(self, messages: Sequence[Message]) -> None:
        self.batch_size.observe(len(messages))
        for topic, count in Tally(message.topic() for message in messages).items():
            child = self._consumed.get(topic)
            if child is None:
                child = self._consumed[topic] = EVENTS_CONSUMED.labels(self.group, topic)
            child.inc(count)

    def batch_applied(
        self,
        *,
        processed: int,
        ignored: int,
        duplicates: dict[str, int],
        handler_seconds: dict[str, float],
    ) -> None:
        """One unit applied and committed: count what it did."""
        if processed:
            self.processed.inc(processed)
        if ignored:
            self.ignored.inc(ignored)
        for source, count in duplicates.items():
            if count:
                self.duplicates[source].inc(count)
        for handler, seconds in handler_seconds.items():
            child = self._handler_duration.get(handler)
            if child is None:
                child = self._handler_duration[handler] = HANDLER_DURATION.labels(
                    self.group, handler
                )
            child.observe(seconds)

    def dead_letter_sources(self, topics: Iterable[str]) -> None:
        """Start the dead-letter count of each topic this consumer reads at 0: a series born
        at 1, with its first dead letter, would show no increase, and the alert on dead
        letters (deploy/prometheus/rules/) would miss that first one."""
        for topic in topics:
            if topic not in self._dead_lettered:
                self._dead_lettered[topic] = DEAD_LETTERED.labels(self.group, topic)

    def dead_lettered(self, topic: str) -> None:
        child = self._dead_lettered.get(topic)
        if child is None:
            child = self._dead_lettered[topic] = DEAD_LETTERED.labels(self.group, topic)
        child.inc()

    def statistics_received(self, statistics: str) -> None:
        """librdkafka's `stats_cb`: set the lag of every partition this consumer fetches,
        and drop the series of partitions it no longer has. Runs inside `poll`, where an
        exception would stop the consumer: a report it cannot read is skipped."""
        current: set[tuple[str, str]] = set()
        try:
            lags = list(partition_lags(json.loads(statistics)))
        except (ValueError, TypeError, AttributeError) as exc:
            logger.warning("consumer %s: unreadable librdkafka statistics: %s", self.group, exc)
            return
        for topic, partition, lag in lags:
            LAG.labels(self.group, topic, partition).set(lag)
            current.add((topic, partition))
        for topic, partition in self._lag_partitions - current:
            LAG.remove(self.group, topic, partition)
        self._lag_partitions = current

    def statistics_config(self) -> dict[str, object]:
        """Consumer settings that make librdkafka report the statistics lag is read from."""
        return {
            "statistics.interval.ms": settings.KAFKA["STATISTICS_INTERVAL_MS"],
            "stats_cb": self.statistics_received,
        }


def partition_lags(statistics: dict) -> Iterator[tuple[str, str, int]]:
    """(topic, partition, lag) of each partition being fetched, from librdkafka statistics.

    librdkafka computes `consumer_lag` as the high watermark minus the committed offset.
    Until the group commits on a partition it says -1; since our groups start at the
    earliest offset, the lag is then everything in the partition (high minus low)."""
    for topic, topic_stats in statistics.get("topics", {}).items():
        for partition, stats in topic_stats.get("partitions", {}).items():
            if partition == "-1" or stats.get("fetch_state") != "active":
                continue  # -1: librdkafka's internal "unassigned" partition
            lag = stats.get("consumer_lag", -1)
            if lag < 0 and stats.get("committed_offset", -1) < 0:
                high, low = stats.get("hi_offset", -1), stats.get("lo_offset", -1)
                lag = high - low if high >= 0 and low >= 0 else -1
            if lag >= 0:
                yield topic, partition, lag


class OutboxBacklogCollector(Collector):
    """Outbox backlog and the age of its oldest pending row, read from the database when
    Prometheus scrapes (two index-only lookups on the pending-rows index), not every loop.

    Scrapes run on a thread of the metrics server: it uses a database connection of its own
    and closes it at once. A database error leaves the two gauges out of that scrape."""

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        from kafka_bridge.selectors import outbox_backlog

        try:
            backlog = outbox_backlog()
        except DatabaseError as exc:
            logger.warning("outbox metrics unavailable: %s", exc)
            return []
        finally:
            connection.close()
        return self._families(backlog.pending, backlog.oldest_age_seconds)

    @staticmethod
    def _families(count: float | None = None, age: float | None = None) -> list[Metric]:
        pending = GaugeMetricFamily(
            "outbox_pending_events", "Outbox rows not yet published.", value=count
        )
        oldest = GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox row (0 when none is pending).",
            value=age,
        )
        return [pending, oldest]


def metrics_serve(*, outbox: bool = False) -> int | None:
    """Serve this process's metrics over HTTP on `METRICS_PORT`, if set; return the port.
    `outbox`: also report the outbox backlog (the relay does)."""
    port = settings.METRICS_PORT
    if port is None:
        return None
    if outbox:
        REGISTRY.register(OutboxBacklogCollector())
    from prometheus_client import start_http_server

    start_http_server(port, addr=settings.METRICS_ADDR)
    logger.info("metrics at http://%s:%d/metrics", settings.METRICS_ADDR, port)
    return port
