"""Direct Kafka access for tests: read a topic from the start, inspect committed offsets."""

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from django.utils import timezone

from kafka_bridge.client import common_config, topic_name


def event_envelope(
    event_type: str,
    data: dict,
    *,
    version: int = 1,
    aggregate_id: str = "",
    event_id: str = "",
    occurred_at: datetime | None = None,
) -> bytes:
    """The bytes of an event as a producer of ours would send them (no validation: tests
    use this to send poison too)."""
    return json.dumps(
        {
            "event_id": event_id or str(uuid.uuid4()),
            "event_type": event_type,
            "schema_version": version,
            "occurred_at": (occurred_at or timezone.now()).isoformat(),
            "correlation_id": "test",
            "aggregate_id": aggregate_id or str(uuid.uuid4()),
            "data": data,
        }
    ).encode()


def order_paid_event(customer_id: int) -> tuple[str, bytes]:
    """An orders.paid event of a new order (one notification for the notifications
    consumer): its event id and bytes."""
    order_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = {
        "order_id": order_id,
        "customer_id": customer_id,
        "previous_status": "reserved",
        "status": "paid",
    }
    return event_id, event_envelope("orders.paid", data, aggregate_id=order_id, event_id=event_id)


def messages_produce(
    logical_topic: str,
    key: str,
    values: list[bytes],
    *,
    headers: list[list[tuple[str, bytes]]] | None = None,
) -> None:
    """Send values to a topic of this test's namespace, in order, with one key (so one
    partition) and the partitioner our producers use; `headers`, one list per value."""
    producer = Producer({**common_config(), "partitioner": "murmur2_random"})
    for index, value in enumerate(values):
        producer.produce(
            topic_name(logical_topic),
            key=key.encode(),
            value=value,
            headers=headers[index] if headers else None,
        )
    assert producer.flush(10) == 0


def topic_read_all(topic: str, *, expected: int, timeout: float = 20.0) -> list[Message]:
    """Read every partition of `topic` from the beginning until `expected` messages came."""
    return topic_read_until(
        topic,
        lambda messages: len(messages) >= expected,
        timeout=timeout,
        describe=lambda messages: f"read {len(messages)} of {expected} messages from {topic}",
    )


def topic_read_until(
    topic: str,
    done: Callable[[list[Message]], bool],
    *,
    timeout: float = 20.0,
    describe: Callable[[list[Message]], str] | None = None,
) -> list[Message]:
    """Read every partition of `topic` from the beginning until `done(messages so far)`.

    Partitions are assigned directly (no group join), so reading starts at once. Like every
    reader of ours it reads committed messages only (what a transaction aborted is skipped,
    on brokers that isolate transactions)."""
    consumer = Consumer(
        {
            **common_config(),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "isolation.level": "read_committed",
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(messages):
            if time.monotonic() > deadline:
                raise AssertionError(
                    describe(messages) if describe else f"read {len(messages)} from {topic}"
                )
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages


def message_reproduce(message: Message) -> None:
    """Send an exact copy of a message again (same key, value, headers): a redelivery."""
    producer = Producer(common_config())
    producer.produce(
        message.topic(),
        key=message.key(),
        value=message.value(),
        headers=message.headers(),
        partition=message.partition(),
    )
    assert producer.flush(10) == 0


def committed_offset(group: str, topic: str, partition: int) -> int:
    """The group's committed offset for one partition (negative when none)."""
    consumer = Consumer({**common_config(), "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset
    finally:
        consumer.close()
