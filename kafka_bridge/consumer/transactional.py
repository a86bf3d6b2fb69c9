"""Consume-transform-produce, exactly once: a consumer whose offsets are committed in Kafka
transactions, together with the records it publishes (`manage.py run_consumer order_rate`).

It is the batched runner with one step replaced. Poll, decode, dedupe and apply are the
runner's own: each batch's effects, here the state of the transformation, commit to the
database together with the events' ProcessedEvent rows. What changes is the commit step.
Instead of committing offsets to the group, each commit (about once a second, on
revocation, on shutdown) is one Kafka transaction that:
1. publishes every record the committed state calls for and that is not known to be
   published (`TransactionalOutput.pending`);
2. adds the input offsets of the batches applied since the last commit
   (`send_offsets_to_transaction`, with the consumer's group metadata, so a zombie
   whose partitions moved on is fenced by the group coordinator);
3. commits. Then the records are marked published in the database.

Readers use `read_committed`: they see a transaction's records only once its offsets are
committed too, and never the records of an aborted one.

**Why the state lives in the database.** A crash anywhere leaves a consistent picture:
- after the database commit, before the Kafka commit: the open transaction is aborted (by
  the restarted instance, which fences its predecessor under the same `transactional.id`,
  or by the broker's transaction timeout). The offsets were not committed, so the batch is
  read again; its events are known as processed, so the state does not change; the records
  are still pending, so the next transaction publishes them.
- after the Kafka commit, before the records are marked: they are published again, with the
  same content. Records are upserts that carry a revision, so a reader keeps one.
Rebuilding the state from the output topic would need transaction isolation to be exact
(an aborted record must not be read back as state); with the state in the database nothing
depends on it, and several instances share one state.

`transactional.id` is "<group>.<instance id>" (settings.KAFKA["INSTANCE_ID"], default the
hostname): one per instance, stable across its restarts.
"""

import logging
import socket
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from django.conf import settings
from django.db import DatabaseError

from kafka_bridge.client import producer_config, topic_name
from kafka_bridge.registry import ConsumerSpec, OutputRecord, TransactionalOutput

from .offsets import OffsetCommitter, Partition
from .runner import ConsumerRunner

logger = logging.getLogger(__name__)

# Seconds any one transactional call may take before it counts as failed.
TRANSACTION_TIMEOUT_SECONDS = 30.0


class TransactionalProducerFailed(Exception):
    """The transactional producer cannot go on (typically: another instance took over its
    transactional.id and fenced it); the consumer must stop."""


def transactional_id(group: str) -> str:
    return f"{group}.{settings.KAFKA['INSTANCE_ID'] or socket.gethostname()}"


class TransactionalCommitter(OffsetCommitter):
    """The commit step of a transactional consumer: output and offsets in one transaction."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        output: TransactionalOutput,
        output_topic: str,
        group: str,
        interval_seconds: float,
        label: str,
    ) -> None:
        super().__init__(consumer=consumer, interval_seconds=interval_seconds, label=label)
        self.output = output
        self.topic = topic_name(output_topic)
        self.transactional_id = transactional_id(group)
        self.producer = Producer(
            {**producer_config(f"consumer-{label}"), "transactional.id": self.transactional_id}
        )
        # Fences any earlier producer with this id and aborts its open transaction.
        self.producer.init_transactions(TRANSACTION_TIMEOUT_SECONDS)
        # A predecessor may have died with records committed to the state but unpublished.
        self._maybe_pending = True
        logger.info("consumer %s: transactional.id %s", label, self.transactional_id)

    def store(self, messages: Iterable[Message]) -> None:
        super().store(messages)
        self._maybe_pending = True

    def commit(self, only: set[Partition] | None = None) -> None:
        """One transaction with every pending record and every stored offset (`only` is
        not needed: committing more than asked is fine, it is all applied)."""
        self._last_commit = time.monotonic()
        if not self._maybe_pending:
            return
        try:
            records = list(self.output.pending())
        except DatabaseError as exc:  # the next commit tries again; nothing is lost
            logger.warning("consumer %s: pending output unreadable: %s", self.label, exc)
            return
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in self._pending.items()]
        if records or offsets:
            try:
                self._transaction(records, offsets)
            except KafkaException as exc:
                self._abort(exc)
                return
        for key in [(tp.topic, tp.partition) for tp in offsets]:
            self._pending.pop(key, None)
        self._maybe_pending = False
        if records:
            logger.info(
                "consumer %s: published %d record(s) to %s", self.label, len(records), self.topic
            )
            try:
                self.output.published(records)
            except DatabaseError as exc:  # published again next time: records are upserts
                logger.warning("consumer %s: could not mark output published: %s", self.label, exc)
                self._maybe_pending = True

    def _transaction(self, records: list[OutputRecord], offsets: list[TopicPartition]) -> None:
        producer = self.producer
        producer.begin_transaction()
        for record in records:
            producer.produce(self.topic, key=record.key, value=record.value)
        if offsets:
            producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), TRANSACTION_TIMEOUT_SECONDS
            )
        producer.commit_transaction(TRANSACTION_TIMEOUT_SECONDS)

    def _abort(self, exc: KafkaException) -> None:
        error: KafkaError = exc.args[0]
        if error.fatal():
            raise TransactionalProducerFailed(
                f"transactional producer {self.transactional_id} failed: {error.str()} (if "
                "another instance uses this id, give each its own KAFKA_INSTANCE_ID)"
            ) from exc
        # The state is committed in the database and the offsets stay stored: the next
        # commit publishes the same records and offsets again.
        logger.warning("consumer %s: transaction aborted: %s", self.label, error.str())
        try:
            self.producer.abort_transaction(TRANSACTION_TIMEOUT_SECONDS)
        except KafkaException as abort_exc:
            if abort_exc.args[0].fatal():
                raise TransactionalProducerFailed(str(abort_exc)) from abort_exc
            logger.warning(
                "consumer %s: abort failed too (%s); retrying later", self.label, abort_exc
            )


class TransactionalConsumerRunner(ConsumerRunner):
    """The batched runner (runner.py) committing through a TransactionalCommitter."""

    def __post_init__(self) -> None:
        super().__post_init__()
        spec: ConsumerSpec = self.spec
        assert spec.output is not None, f"{spec.name} is not a transactional consumer"
        self.offsets = TransactionalCommitter(
            consumer=self.consumer,
            output=spec.output,
            output_topic=spec.output_topic,
            group=self.group,
            interval_seconds=settings.KAFKA["COMMIT_INTERVAL_SECONDS"],
            label=spec.name,
        )
