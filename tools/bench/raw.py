"""Raw confluent-kafka baselines, measured in the same run as the pipeline.

The produce baseline is a tight loop over the relay's own messages (same keys, envelope
bytes and headers as the relay would send, read from the outbox) with the relay's
`producer_config`. What made the old baseline report ~19k msgs/s where a plain loop gets
~200k/s on the same broker: its timer started before the producer's first message, so the
start-up (bootstrap connection, metadata, the idempotent producer's id) was a second of a
20,000-message run; and per message it formatted a key, went through a while/try and a
modulo-1000 poll. Here the producer is warmed up with one acknowledged message first (the
start-up is reported apart), the loop does nothing but `produce`, and the clock stops when
`flush` returns: every message acknowledged (acks=all).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from django.conf import settings
from tqdm import tqdm

from kafka_bridge.client import common_config, producer_config, topic_name, topics_ensure
from tools.bench.measure import percentiles


@dataclass(frozen=True)
class RawMessage:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _produce_when_room(
    producer: Producer, topic: str, message: RawMessage, *, headers: bool
) -> None:
    """The local queue is full: serve delivery reports until the message fits."""
    while True:
        producer.poll(0.001)
        try:
            if headers:
                producer.produce(topic, message.value, message.key, headers=message.headers)
            else:
                producer.produce(topic, message.value, message.key)
            return
        except BufferError:
            continue


def produce_rate(
    topic: str, messages: Sequence[RawMessage], count: int, *, headers: bool = True
) -> tuple[float, float]:
    """(messages/s, start-up ms) of a tight produce loop of `count` messages, cycling
    through `messages`, with the relay's producer settings."""
    started = time.perf_counter()
    producer = Producer(producer_config("bench-raw"))
    first = messages[0]
    producer.produce(topic, first.value, first.key)
    producer.flush(30)  # connected, metadata known, producer id assigned
    startup_ms = (time.perf_counter() - started) * 1000
    produce = producer.produce
    cycle = itertools.islice(itertools.cycle(messages), count)
    started = time.perf_counter()
    # Two loops rather than a branch per message: nothing but produce() in the hot path.
    if headers:
        for message in cycle:
            try:
                produce(topic, message.value, message.key, headers=message.headers)
            except BufferError:
                _produce_when_room(producer, topic, message, headers=True)
    else:
        for message in cycle:
            try:
                produce(topic, message.value, message.key)
            except BufferError:
                _produce_when_room(producer, topic, message, headers=False)
    producer.flush(120)
    return count / (time.perf_counter() - started), startup_ms


def consume_rate(topic: str, count: int) -> float:
    """messages/s reading `count` messages back from the beginning (no group: assigned),
    timed from the first message received to the last."""
    consumer = Consumer(
        {
            **common_config(),
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.KAFKA["FETCH_WAIT_MAX_MS"],
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        received, first_batch, first_at, last_at = 0, 0, 0.0, 0.0
        deadline = time.monotonic() + 120
        while received < count and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(10_000, timeout=0.5) if not m.error()]
            if not batch:
                continue
            last_at = time.perf_counter()
            if not first_at:
                first_at, first_batch = last_at, len(batch)  # the first batch starts the clock
            received += len(batch)
        elapsed = last_at - first_at
        return (received - first_batch) / elapsed if elapsed > 0 else 0.0
    finally:
        consumer.close()


def round_trip_ms(topic: str, message: RawMessage, samples: int) -> list[float]:
    """produce → consume latency, one message at a time (a lightly loaded pipeline)."""
    producer = Producer(producer_config("bench-raw-latency"))
    consumer = Consumer(
        {
            **common_config(),
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": settings.KAFKA["FETCH_WAIT_MAX_MS"],
        }
    )
    latencies = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # Start at the end of what exists: only the probes below are read.
        producer.produce(topic, message.value, message.key)
        producer.flush(30)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while consumer.poll(0.5) is not None:
            pass
        for index in range(samples):
            marker = f"probe-{index}".encode()
            sent = time.perf_counter()
            producer.produce(topic, message.value, marker)
            producer.flush(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                received = consumer.poll(1.0)
                if received is not None and not received.error() and received.key() == marker:
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
    finally:
        consumer.close()
    return latencies


def raw_baselines(
    messages: Sequence[RawMessage], *, count: int, latency_samples: int
) -> dict[str, object]:
    topic = topic_name(f"bench-raw-{uuid.uuid4().hex[:6]}")
    bare_topic = topic_name(f"bench-raw-bare-{uuid.uuid4().hex[:6]}")
    latency_topic = topic_name(f"bench-raw-latency-{uuid.uuid4().hex[:6]}")
    topics_ensure([topic, bare_topic, latency_topic])
    with tqdm(total=4, desc="raw baselines", unit="step", leave=False) as bar:
        produce, startup_ms = produce_rate(topic, messages, count)
        bar.update()
        bare, _ = produce_rate(bare_topic, messages, count, headers=False)
        bar.update()
        consume = consume_rate(topic, count + 1)
        bar.update()
        latencies = round_trip_ms(latency_topic, messages[0], latency_samples)
        bar.update()
    sizes = [len(m.value) for m in messages]
    return {
        "messages": count,
        "distinct_messages": len(messages),
        "value_bytes_mean": sum(sizes) / len(sizes),
        "headers_per_message": len(messages[0].headers),
        "produce_per_s": produce,
        "produce_without_headers_per_s": bare,
        "producer_startup_ms": startup_ms,
        "consume_per_s": consume,
        "produce_to_consume_ms": percentiles(latencies),
    }
