"""Worker metrics move when their event happens: real worker processes serving METRICS_PORT,
scraped over HTTP before and after, on the real broker, Redis and PostgreSQL."""

import time
import uuid

import pytest
from django.db import connection, transaction
from prometheus_client import REGISTRY

from common.redis_client import redis_client
from kafka_bridge.client import group_name, pipeline_topics, topic_name, topics_ensure
from kafka_bridge.consumer import idempotency_redis_key
from kafka_bridge.metrics import ConsumerMetrics, partition_lags
from kafka_bridge.models import DeadLetter
from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.relay import OutboxRelay, PublishRight
from orders.models import Order
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.kafka import (
    event_envelope,
    message_reproduce,
    messages_produce,
    order_paid_event,
    topic_read_all,
)
from testing.metrics import Scraper, metric_series
from testing.polling import wait_until
from tools.localservices import free_port

pytestmark = pytest.mark.integration

# Lag is read from librdkafka statistics: report them often in tests.
FAST_STATISTICS = {"KAFKA_STATISTICS_INTERVAL_MS": "100"}


def _metrics_env() -> tuple[Scraper, dict[str, str]]:
    port = free_port()
    return Scraper(port), {"METRICS_PORT": str(port), "METRICS_ADDR": "127.0.0.1"}


def test_consumer_counts_processed_events_and_duplicates_by_source(pipeline):
    # Given events on the notifications consumer's topic, produced before it starts so that
    # its first batch holds them all: one event twice, and another
    customer = customer_create()
    (_, twice), (other_id, other) = [order_paid_event(customer.pk) for _ in range(2)]
    messages_produce("orders", str(customer.pk), [twice, other, twice])
    scraper, env = _metrics_env()
    group, topic = group_name("notifications"), topic_name("orders")

    # When the consumer starts (a fresh process: every counter starts at zero)
    pipeline.consumer("notifications", **env, **FAST_STATISTICS)
    scraper.wait_up()

    # Then it counts what it received, what it applied, and the in-batch repeat
    scraper.wait_for("kafka_consumer_events_processed_total", 2, group=group)
    assert scraper.value("kafka_consumer_events_consumed_total", group=group, topic=topic) == 3
    duplicates = "kafka_consumer_duplicates_skipped_total"
    assert scraper.value(duplicates, group=group) == 1
    assert scraper.value(duplicates, group=group, source="batch") == 1
    assert scraper.value("kafka_consumer_batch_size_sum", group=group) == 3
    assert scraper.value("kafka_consumer_batch_duration_seconds_count", group=group) >= 1
    handler = {"group": group, "handler": "on_order_status_changes"}
    assert scraper.value("kafka_consumer_handler_duration_seconds_count", **handler) >= 1
    assert scraper.value("kafka_consumer_handler_duration_seconds_sum", **handler) > 0
    beat = scraper.value("worker_heartbeat_timestamp_seconds", worker="consumer-notifications")
    assert time.time() - 10 < beat <= time.time() + 1

    # And once its offsets are committed, every assigned partition reports lag 0 (whether
    # the end offsets are right is tested against Apache Kafka below)
    def lag_series() -> list:
        samples = scraper.samples()
        series = metric_series(samples, "kafka_consumer_lag_messages", group=group, topic=topic)
        return series if len(series) == 4 and all(s.value == 0 for s in series) else []

    wait_until(lag_series, timeout=30, message="lag 0 on every partition of orders")

    # When an event it processed comes again, Redis knows it
    message = next(m for m in topic_read_all(topic, expected=3) if m.value() == other)
    message_reproduce(message)
    scraper.wait_for("kafka_consumer_duplicates_skipped_total", 1, group=group, source="redis")

    # When it comes again after Redis lost its key, the database knows it
    redis_client().delete(idempotency_redis_key(group, other_id))
    message_reproduce(message)
    scraper.wait_for("kafka_consumer_duplicates_skipped_total", 1, group=group, source="database")
    assert scraper.value("kafka_consumer_events_processed_total", group=group) == 2
    assert scraper.value("kafka_consumer_events_consumed_total", group=group) == 5


def test_consumer_counts_retries_dead_letters_and_events_it_does_not_handle(pipeline):
    # Given the orders consumer, and an order whose payment provider is down
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 1, payment_token="tok_unavailable")
    scraper, env = _metrics_env()
    pipeline.consumer("orders", **env)
    pipeline.consumer("dead_letters")
    group = group_name("orders")
    scraper.wait_up()
    assert scraper.value("kafka_consumer_retries_total", group=group) == 0
    assert scraper.value("kafka_consumer_events_dead_lettered_total", group=group) == 0
    # And its dead-letter count of each topic it reads is there at 0 already (an alert's
    # increase() would miss a first dead letter that brought the series into being)
    [series] = metric_series(
        scraper.samples(),
        "kafka_consumer_events_dead_lettered_total",
        group=group,
        topic=topic_name("inventory"),
    )
    assert series.value == 0

    # When its stock is reserved (the event the relay would have published)
    reserved = {
        "order_id": order_id,
        "customer_id": customer.pk,
        "items": [{"sku": product.sku, "quantity": 1}],
    }
    messages_produce(
        "inventory",
        str(customer.pk),
        [event_envelope("inventory.reserved", reserved, aggregate_id=order_id)],
    )

    # Then the four retries and the dead letter after them are counted, by source topic
    wait_until(lambda: DeadLetter.objects.exists(), timeout=60, message="dead letter")
    labels = {"group": group, "topic": topic_name("inventory")}
    scraper.wait_for("kafka_consumer_events_dead_lettered_total", 1, **labels)
    assert scraper.value("kafka_consumer_retries_total", group=group) == 4
    assert scraper.value("kafka_consumer_events_processed_total", group=group) == 0
    assert Order.objects.get(id=order_id).status == "reserved"

    # When an event it does not handle arrives on a topic it reads (orders.paid, for the
    # notifications consumer), it is counted as ignored, not processed
    assert scraper.value("kafka_consumer_events_ignored_total", group=group) == 0
    messages_produce("orders", str(customer.pk), [order_paid_event(customer.pk)[1]])
    scraper.wait_for("kafka_consumer_events_ignored_total", 1, group=group)
    assert scraper.value("kafka_consumer_events_processed_total", group=group) == 0


@pytest.mark.apache_kafka
def test_consumer_lag_counts_the_events_not_yet_committed(pipeline):
    # Given 20 events for the notifications consumer
    customer = customer_create()
    events = [order_paid_event(customer.pk)[1] for _ in range(20)]
    messages_produce("orders", str(customer.pk), events)
    scraper, env = _metrics_env()
    group = group_name("notifications")

    # When the consumer starts and takes them, committing only after 5 seconds
    pipeline.consumer("notifications", **env, **FAST_STATISTICS, KAFKA_COMMIT_INTERVAL_SECONDS="5")
    scraper.wait_up()

    # Then the lag is the 20 events until they are committed, then 0
    scraper.wait_for("kafka_consumer_lag_messages", 20, group=group)
    scraper.wait_for("kafka_consumer_lag_messages", 0, timeout=30, group=group)
    assert scraper.value("kafka_consumer_events_processed_total", group=group) == 20


def test_relay_reports_backlog_age_and_published_events(pipeline):
    # Given a relay that cannot publish: another session holds the right to
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [PublishRight.LOCK_KEY])
    try:
        scraper, env = _metrics_env()
        pipeline.relay(**env)
        scraper.wait_up()
        assert scraper.value("outbox_pending_events") == 0
        assert scraper.value("outbox_oldest_pending_age_seconds") == 0
        assert scraper.value("outbox_events_published_total") == 0
        # (the metrics server starts before the loop's first beat)
        wait_until(
            lambda: (
                scraper.value("worker_heartbeat_timestamp_seconds", worker="relay")
                > time.time() - 10
            ),
            message="a fresh relay heartbeat",
        )

        # When two orders are placed
        customer, product = customer_create(), product_with_stock()
        for _ in range(2):
            order_place_via_api(customer, product.sku)

        # Then they are the backlog, and the oldest of them ages
        scraper.wait_for("outbox_pending_events", 2)
        wait_until(lambda: scraper.value("outbox_oldest_pending_age_seconds") > 0.05)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [PublishRight.LOCK_KEY])

    # When the right to publish is free again, the relay publishes them
    scraper.wait_for("outbox_events_published_total", 2)
    scraper.wait_for("outbox_pending_events", 0)
    assert scraper.value("outbox_oldest_pending_age_seconds") == 0


def test_relay_counts_a_refused_delivery_as_a_failure(transactional_db, kafka_namespace):
    topics_ensure(pipeline_topics())
    failures = REGISTRY.get_sample_value("outbox_publish_failures_total")
    published = REGISTRY.get_sample_value("outbox_events_published_total")

    # Given an event too large for any broker, behind one that is fine
    def failed(reason: str) -> NewEvent:
        order_id = str(uuid.uuid4())
        data = {"order_id": order_id, "customer_id": 7, "reason": reason}
        return NewEvent("inventory.failed", order_id, "7", data)

    with transaction.atomic():
        outbox_events_record([failed("out_of_stock")])
    with transaction.atomic():
        outbox_events_record([failed("x" * 1_100_000)])

    # When the relay works through them
    relay = OutboxRelay()
    for _ in range(2):
        relay.publish_batch()
    relay.close()

    # Then one is counted published and the refusal a failure (once per attempt)
    assert REGISTRY.get_sample_value("outbox_events_published_total") == published + 1
    assert REGISTRY.get_sample_value("outbox_publish_failures_total") >= failures + 1


def test_lag_of_a_partition_never_committed_is_all_of_it_and_others_are_left_out():
    # librdkafka statistics, reduced to the fields lag is read from
    statistics = {
        "topics": {
            "orders": {
                "partitions": {
                    "0": {"fetch_state": "active", "consumer_lag": 4, "committed_offset": 6},
                    "1": {
                        "fetch_state": "active",
                        "consumer_lag": -1,
                        "committed_offset": -1001,
                        "hi_offset": 9,
                        "lo_offset": 2,
                    },
                    "2": {"fetch_state": "none", "consumer_lag": -1},  # not assigned here
                    "-1": {"fetch_state": "none", "consumer_lag": -1},  # librdkafka's own
                }
            }
        }
    }

    assert list(partition_lags(statistics)) == [("orders", "0", 4), ("orders", "1", 7)]


def test_dead_letter_counts_of_declared_topics_start_at_zero():
    # Given the metrics of a consumer group that reads two topics
    group = f"group-{uuid.uuid4().hex[:8]}"
    metrics = ConsumerMetrics(group)

    # When it declares them as the sources of its dead letters, and one message dead-letters
    metrics.dead_letter_sources(["orders", "inventory"])
    before = {
        topic: REGISTRY.get_sample_value(
            "kafka_consumer_events_dead_lettered_total", {"group": group, "topic": topic}
        )
        for topic in ("orders", "inventory")
    }
    metrics.dead_lettered("orders")

    # Then both series existed at 0, and the dead letter moved its topic's to 1
    assert before == {"orders": 0.0, "inventory": 0.0}
    labels = {"group": group, "topic": "orders"}
    assert REGISTRY.get_sample_value("kafka_consumer_events_dead_lettered_total", labels) == 1
