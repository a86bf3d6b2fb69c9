"""The pipeline benchmark behind `manage.py bench_pipeline`.

Measured in one run, on one machine, against the configured broker, Redis and database:
1. baseline: raw confluent-kafka produce and consume rates and produce→consume latency,
   with the same producer settings as the relay and messages of the same size;
2. the pipeline: N orders through the API at concurrency C while the relay and every
   consumer run as separate processes → API intake orders/s, and the latency from order
   creation to its last automatic notification ("payment received", or the refusal);
3. relay drain: a backlog of outbox rows published by the relay code → events/s.
Figures, not assertions; ratios compare the pipeline with the raw client.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from tqdm import tqdm

from ecommerce.supervisor import Supervisor, current_database_url
from inventory.services import product_create
from kafka_bridge.client import (
    common_config,
    pipeline_topics,
    producer_config,
    topic_name,
    topics_ensure,
)
from kafka_bridge.models import OutboxEvent
from kafka_bridge.registry import CONSUMERS
from kafka_bridge.relay import OutboxRelay
from notifications.models import Notification
from orders.models import Order

MESSAGE_BYTES = 500  # about the size of an orders.created envelope


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class BenchResult:
    orders: int
    concurrency: int
    intake_per_s: float
    latency_ms: dict[str, float]
    relay_per_s: float
    raw_produce_per_s: float
    raw_consume_per_s: float
    raw_latency_ms: dict[str, float]
    api_errors: int

    def table(self) -> str:
        rows = [
            ("API intake (orders/s)", f"{self.intake_per_s:,.0f}", ""),
            *(
                (
                    f"created→last notice {name} (ms)",
                    f"{value:,.1f}",
                    f"{value / self.raw_latency_ms[name]:.1f}x  raw produce→consume",
                )
                for name, value in self.latency_ms.items()
            ),
            (
                "relay drain (events/s)",
                f"{self.relay_per_s:,.0f}",
                f"{self.relay_per_s / self.raw_produce_per_s:.2%} of raw produce",
            ),
            ("raw produce (msgs/s)", f"{self.raw_produce_per_s:,.0f}", "baseline"),
            ("raw consume (msgs/s)", f"{self.raw_consume_per_s:,.0f}", "baseline"),
            *(
                (f"raw produce→consume {name} (ms)", f"{value:,.1f}", "baseline")
                for name, value in self.raw_latency_ms.items()
            ),
            ("API errors", str(self.api_errors), ""),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [
            f"orders={self.orders} concurrency={self.concurrency} "
            f"broker={settings.KAFKA['BOOTSTRAP_SERVERS']} db={connection.vendor}",
            f"| {'metric':<{width}} | {'value':>10} | ratio |",
            f"|{'-' * (width + 2)}|{'-' * 12}|-------|",
        ]
        lines += [f"| {name:<{width}} | {value:>10} | {ratio} |" for name, value, ratio in rows]
        return "\n".join(lines)


def raw_kafka_baseline(count: int) -> tuple[float, float, dict[str, float]]:
    """Produce `count` messages like the relay does, then consume them back."""
    topic = topic_name(f"bench-raw-{uuid.uuid4().hex[:6]}")
    topics_ensure([topic])
    producer = Producer(producer_config("bench-raw"))
    payload = b"x" * MESSAGE_BYTES
    started = time.perf_counter()
    with tqdm(total=count, desc="raw produce", unit="msg", leave=False) as bar:
        for index in range(count):
            while True:
                try:
                    producer.produce(topic, key=str(index % 50).encode(), value=payload)
                    break
                except BufferError:
                    producer.poll(0.05)
            if index % 1000 == 999:
                producer.poll(0)
                bar.update(1000)
    producer.flush(60)
    produce_rate = count / (time.perf_counter() - started)

    consumer = Consumer(
        {
            **common_config(),
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.KAFKA["FETCH_WAIT_MAX_MS"],
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    received = 0
    started = time.perf_counter()
    while received < count and time.perf_counter() - started < 120:
        received += len([m for m in consumer.consume(1000, timeout=0.5) if not m.error()])
    consume_rate = received / (time.perf_counter() - started)

    # Latency: one message at a time, the way a lightly loaded pipeline sees it.
    latencies = []
    for _ in range(200):
        sent = time.perf_counter()
        producer.produce(topic, key=b"latency", value=payload)
        producer.flush(10)
        while True:
            message = consumer.poll(1.0)
            if message is not None and not message.error() and message.key() == b"latency":
                latencies.append((time.perf_counter() - sent) * 1000)
                break
    consumer.close()
    return (
        produce_rate,
        consume_rate,
        {q: percentile(latencies, v) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))},
    )


def api_intake(orders: int, concurrency: int, skus: list[str]) -> tuple[float, list[str], int]:
    """POST `orders` orders through the API from `concurrency` threads."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    users = get_user_model().objects
    tokens = []
    for index in range(max(concurrency, 20)):
        user, _ = users.get_or_create(username=f"bench-{index}")
        tokens.append(Token.objects.get_or_create(user=user)[0].key)

    def place(index: int) -> str | None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[index % len(tokens)]}")
        body = {"items": [{"sku": skus[index % len(skus)], "quantity": 1}]}
        try:
            response = client.post("/api/orders/", body, format="json")
            return response.json()["id"] if response.status_code == 201 else None
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(
            tqdm(pool.map(place, range(orders)), total=orders, desc="API intake", unit="order")
        )
    elapsed = time.perf_counter() - started
    ids = [r for r in results if r]
    return len(ids) / elapsed, ids, orders - len(ids)


# The last notification an order gets without staff action: paid, or refused.
FINAL_KINDS = (
    Notification.Kind.PAYMENT_RECEIVED,
    Notification.Kind.OUT_OF_STOCK,
    Notification.Kind.CANCELLED,
)


def final_notices(order_ids: list[str]) -> QuerySet[Notification]:
    return Notification.objects.filter(order_id__in=order_ids, kind__in=FINAL_KINDS)


def wait_with_progress(label: str, total: int, count: Callable[[], int], timeout: float) -> int:
    done = 0
    deadline = time.monotonic() + timeout
    with tqdm(total=total, desc=label, unit="order") as bar:
        while done < total and time.monotonic() < deadline:
            now = count()
            bar.update(now - done)
            done = now
            if done < total:
                time.sleep(0.2)
    return done


def relay_drain(events: int) -> float:
    """Publish a backlog of `events` outbox rows with the relay code; events/s."""
    template = OutboxEvent.objects.order_by("id").first()
    assert template is not None, "the pipeline phase left no outbox row to copy"
    rows = []
    for _ in range(events):
        event_id = uuid.uuid4()
        rows.append(
            OutboxEvent(
                event_id=event_id,
                event_type=template.event_type,
                schema_version=template.schema_version,
                topic="bench-drain",
                key=template.key,
                aggregate_id=template.aggregate_id,
                correlation_id=template.correlation_id,
                envelope={**template.envelope, "event_id": str(event_id)},
            )
        )
    OutboxEvent.objects.bulk_create(rows, batch_size=1000)
    topics_ensure([topic_name("bench-drain")])
    relay = OutboxRelay()
    started = time.perf_counter()
    with tqdm(total=events, desc="relay drain", unit="event") as bar:
        while OutboxEvent.objects.filter(published_at__isnull=True).exists():
            bar.update(relay.publish_batch())
    return events / (time.perf_counter() - started)


def run_bench(
    *,
    orders: int,
    concurrency: int,
    baseline_messages: int,
    drain_events: int,
    log: Callable[[str], None],
) -> BenchResult:
    namespace = f"bench{uuid.uuid4().hex[:6]}-"
    settings.KAFKA = {**settings.KAFKA, "NAMESPACE": namespace}
    topics_ensure(pipeline_topics())

    log("measuring the raw confluent-kafka baseline")
    raw_produce, raw_consume, raw_latency = raw_kafka_baseline(baseline_messages)

    skus = []
    for index in range(10):
        sku = f"BENCH-{namespace}{index}"
        product_create(sku=sku, name=f"Bench product {index}", price="1.00", on_hand=orders * 2)
        skus.append(sku)

    log("starting the relay and consumers")
    workers = Supervisor(
        env={
            **os.environ,
            "DATABASE_URL": current_database_url(),
            "KAFKA_NAMESPACE": namespace,
            "PYTHONUNBUFFERED": "1",
        },
        log_dir=Path(mkdtemp(prefix="bench-")),
    )
    workers.relay()
    consumers = [workers.consumer(name) for name in CONSUMERS]
    deadline = time.monotonic() + 60
    while not all("assigned" in c.log() for c in consumers):
        if time.monotonic() > deadline:
            workers.stop()
            raise RuntimeError(f"consumers did not join their groups:\n{workers.logs()[-3000:]}")
        time.sleep(0.1)
    try:
        intake, order_ids, errors = api_intake(orders, concurrency, skus)
        wait_with_progress(
            "notified",
            len(order_ids),
            lambda: final_notices(order_ids).count(),
            timeout=300,
        )
    finally:
        workers.stop()
    order_created = dict(Order.objects.filter(id__in=order_ids).values_list("id", "created_at"))
    latencies = [
        (notified - order_created[order_id]).total_seconds() * 1000
        for order_id, notified in final_notices(order_ids).values_list("order_id", "created_at")
    ]
    log("measuring relay drain")
    relay_rate = relay_drain(drain_events)
    return BenchResult(
        orders=orders,
        concurrency=concurrency,
        intake_per_s=intake,
        latency_ms={
            q: percentile(latencies, v) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        relay_per_s=relay_rate,
        raw_produce_per_s=raw_produce,
        raw_consume_per_s=raw_consume,
        raw_latency_ms=raw_latency,
        api_errors=errors,
    )
