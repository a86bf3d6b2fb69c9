"""Direct Kafka access for tests: read a topic from the start, inspect committed offsets."""

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from kafka_bridge.client import common_config


def topic_read_all(topic: str, *, expected: int, timeout: float = 20.0) -> list[Message]:
    """Read every partition of `topic` from the beginning until `expected` messages came.

    Partitions are assigned directly (no group join), so reading starts at once."""
    consumer = Consumer(
        {
            **common_config(),
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(messages)} of {expected} messages from {topic}")
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
