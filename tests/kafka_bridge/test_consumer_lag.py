"""`manage.py consumer_lag`: committed offsets, end offsets and lag per partition.

Committed offsets are right on every broker, so the table's shape and its CURRENT-OFFSET
column are tested everywhere; end offsets (and so lag) only against Apache Kafka."""

import io

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from django.core.management import CommandError, call_command

from kafka_bridge.client import (
    admin_client,
    common_config,
    group_name,
    pipeline_topics,
    topic_name,
    topics_ensure,
)
from kafka_bridge.lag import END_OFFSETS_APPROXIMATE_NOTE
from kafka_bridge.registry import CONSUMERS
from testing.services import SERVICES
from tools.localservices import free_port

pytestmark = pytest.mark.integration

HEADER = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
# Messages produced to each partition of the orders topic, and the inventory group's commits.
PRODUCED = {0: 5, 1: 3, 2: 0, 3: 0}
COMMITTED = {0: 2, 1: 3}


@pytest.fixture
def inventory_group_with_commits(kafka_namespace: str) -> None:
    """The orders topic (4 partitions in tests) with PRODUCED messages, and the inventory
    group's offsets committed at COMMITTED (none on partitions 2 and 3)."""
    topics_ensure(pipeline_topics())
    topic = topic_name("orders")
    producer = Producer(common_config())
    for partition, count in PRODUCED.items():
        for n in range(count):
            producer.produce(topic, value=f"m{n}".encode(), partition=partition)
    assert producer.flush(10) == 0
    offsets = [TopicPartition(topic, p, offset) for p, offset in COMMITTED.items()]
    request = [ConsumerGroupTopicPartitions(group_name("inventory"), offsets)]
    admin = admin_client()  # kept alive until the answer came
    for future in admin.alter_consumer_group_offsets(request).values():
        future.result(timeout=10)


def _table(*names: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """Run the command: (header, rows as column → cell, other lines)."""
    out = io.StringIO()
    call_command("consumer_lag", *names, stdout=out)
    header, *lines = out.getvalue().splitlines()
    rows = [line for line in lines if not line.startswith(("note:", "topic "))]
    notes = [line for line in lines if line.startswith(("note:", "topic "))]
    return header.split(), [dict(zip(HEADER, line.split(), strict=True)) for line in rows], notes


def _by_partition(rows: list[dict[str, str]]) -> dict[int, dict[str, str]]:
    topic = topic_name("orders")
    return {int(row["PARTITION"]): row for row in rows if row["TOPIC"] == topic}


def test_the_table_shows_every_partition_with_its_committed_offset(inventory_group_with_commits):
    header, rows, notes = _table("inventory")

    assert header == HEADER
    assert {row["GROUP"] for row in rows} == {group_name("inventory")}
    orders = _by_partition(rows)
    assert sorted(orders) == [0, 1, 2, 3]
    assert {p: row["CURRENT-OFFSET"] for p, row in orders.items()} == {
        0: "2",
        1: "3",
        2: "-",
        3: "-",
    }
    for row in rows:
        assert row["LOG-END-OFFSET"].isdigit()
        int(row["LAG"])  # a number (possibly wrong, and then said so, on our test broker)
    # Our test broker's end offsets are wrong: the harness says so, and so does the output
    approximate = not SERVICES.is_apache_kafka
    assert (END_OFFSETS_APPROXIMATE_NOTE in notes) == approximate


@pytest.mark.apache_kafka
def test_lag_is_end_offset_minus_committed_offset(inventory_group_with_commits):
    _, rows, _ = _table("inventory")

    orders = _by_partition(rows)
    assert {p: int(row["LOG-END-OFFSET"]) for p, row in orders.items()} == PRODUCED
    # Committed: end - committed; never committed: everything in the partition
    assert {p: int(row["LAG"]) for p, row in orders.items()} == {0: 3, 1: 0, 2: 0, 3: 0}


def test_every_registered_consumer_is_listed_by_default(inventory_group_with_commits):
    _, rows, _ = _table()

    groups = {row["GROUP"] for row in rows}
    assert groups == {group_name(name) for name in CONSUMERS}
    assert {"inventory", "order_rate", "read_models", "dead_letters"} <= set(CONSUMERS)


def test_an_unknown_consumer_or_an_unreachable_broker_is_one_readable_line(settings):
    with pytest.raises(CommandError, match="unknown consumer 'nope'"):
        call_command("consumer_lag", "nope")

    settings.KAFKA = {**settings.KAFKA, "BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    with pytest.raises(CommandError, match="Kafka is not reachable"):
        call_command("consumer_lag", "inventory", timeout=1)
