"""Consumer lag per partition, from standard admin calls (what `kafka-consumer-groups
--describe` shows): the group's committed offsets (`list_consumer_group_offsets`) against
each partition's end offset (`list_offsets`, latest).

End offsets are read at the read-committed isolation level, the level our consumers read
at: the last stable offset, which equals the high watermark while no transaction is open.
A partition the group never committed on is read from its start (our groups begin at the
earliest offset), so its lag is everything in it.

`KAFKA["END_OFFSETS_APPROXIMATE"]` marks a broker whose end offsets are known to be wrong
(our test broker, docs/test-broker.md): the figures are computed the same way and
the caller says they are approximate. Committed offsets are exact on every broker.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kafka_bridge.client import admin_client, group_name, topic_name
from kafka_bridge.registry import ConsumerSpec

END_OFFSETS_APPROXIMATE_NOTE = (
    "note: this broker's end offsets are approximate (KAFKA_END_OFFSETS_APPROXIMATE): "
    "end offsets and lag may be wrong; committed offsets are exact."
)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int
    lag: int


def _offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float
) -> dict[tuple[str, int], int]:
    if not partitions:
        return {}
    futures = admin.list_offsets(
        {tp: spec for tp in partitions},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=timeout,
    )
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def consumer_lag_list(
    specs: Iterable[ConsumerSpec], *, timeout: float = 10.0
) -> tuple[list[PartitionLag], list[str]]:
    """Lag of every partition of every topic these consumers read: (rows, physical topics
    that do not exist). Raises KafkaException when the broker does not answer."""
    admin = admin_client()
    metadata = admin.list_topics(timeout=timeout)
    groups: dict[str, list[TopicPartition]] = {}
    missing: list[str] = []
    for spec in specs:
        partitions = []
        for logical in spec.topics:
            topic = topic_name(logical)
            if topic not in metadata.topics:
                missing.append(topic)
                continue
            partitions += [
                TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)
            ]
        groups[group_name(spec.name)] = partitions
    every = list({(tp.topic, tp.partition): tp for ps in groups.values() for tp in ps}.values())
    ends = _offsets(admin, every, OffsetSpec.latest(), timeout)
    starts = _offsets(admin, every, OffsetSpec.earliest(), timeout)
    rows = []
    for group, partitions in groups.items():
        if not partitions:
            continue
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        future = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group]
        committed = {(tp.topic, tp.partition): tp.offset for tp in future.result().topic_partitions}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset = committed.get(key, -1)
            position = offset if offset >= 0 else starts[key]
            rows.append(
                PartitionLag(
                    group=group,
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=offset if offset >= 0 else None,
                    end=ends[key],
                    lag=ends[key] - position,
                )
            )
    return rows, sorted(set(missing))
