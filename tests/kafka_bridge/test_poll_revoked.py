"""A rebalance while a batch is still filling (librdkafka runs rebalance callbacks inside
`consume`): messages of the partitions it took are dropped from the batch, unprocessed, for
their new owner. The consumer here is a stand-in that hands out messages and runs the
runner's own callbacks as librdkafka would: what is tested is the runner's bookkeeping."""

from collections.abc import Callable

import pytest
from confluent_kafka import Message, TopicPartition

from kafka_bridge.consumer.runner import ConsumerRunner
from kafka_bridge.registry import CONSUMERS

TOPIC = "orders"


class _RebalancingConsumer:
    def __init__(self, during_consume: Callable[[], None]) -> None:
        self.during_consume = during_consume

    def poll(self, timeout: float) -> Message:
        return Message(topic=TOPIC, partition=0, offset=7, value=b"{}")

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.during_consume()
        return [
            Message(topic=TOPIC, partition=1, offset=3, value=b"{}"),
            Message(topic=TOPIC, partition=0, offset=8, value=b"{}"),
        ]


@pytest.fixture
def runner() -> ConsumerRunner:
    return ConsumerRunner(CONSUMERS["read_models"])


def _positions(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition(), m.offset()) for m in messages]


def test_messages_of_a_partition_revoked_while_the_batch_filled_are_left(runner):
    runner.consumer = _RebalancingConsumer(
        lambda: runner._on_revoke(runner.consumer, [TopicPartition(TOPIC, 0)])
    )

    assert _positions(runner._poll_batch()) == [(1, 3)]


def test_a_partition_revoked_and_given_back_keeps_its_messages(runner):
    def revoke_and_assign_again() -> None:
        runner._on_revoke(runner.consumer, [TopicPartition(TOPIC, 0)])
        runner._on_assign(runner.consumer, [TopicPartition(TOPIC, 0)])

    runner.consumer = _RebalancingConsumer(revoke_and_assign_again)

    assert _positions(runner._poll_batch()) == [(0, 7), (1, 3), (0, 8)]


def test_a_revocation_is_forgotten_by_the_next_batch(runner):
    runner.consumer = _RebalancingConsumer(
        lambda: runner._on_revoke(runner.consumer, [TopicPartition(TOPIC, 0)])
    )
    runner._poll_batch()
    runner.consumer = _RebalancingConsumer(lambda: None)

    assert _positions(runner._poll_batch()) == [(0, 7), (1, 3), (0, 8)]
