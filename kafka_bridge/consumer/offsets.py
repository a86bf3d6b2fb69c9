"""Step 5, commit: the next offset of each partition, stored only once its messages were
processed (or dead-lettered), committed at most about once a second while busy, and always
on revocation and shutdown. Nothing auto-commits."""

import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

logger = logging.getLogger(__name__)

Partition = tuple[str, int]


class OffsetCommitter:
    def __init__(self, *, consumer: Consumer, interval_seconds: float, label: str) -> None:
        self.consumer = consumer
        self.interval_seconds = interval_seconds
        self.label = label
        self._pending: dict[Partition, int] = {}
        self._last_commit = time.monotonic()

    def store(self, messages: Iterable[Message]) -> None:
        """Remember that these messages are done (callers pass them in offset order)."""
        for message in messages:
            self._pending[(message.topic(), message.partition())] = message.offset() + 1

    def commit_if_due(self) -> None:
        if time.monotonic() - self._last_commit >= self.interval_seconds:
            self.commit()

    def commit(self, only: set[Partition] | None = None) -> None:
        keys = [key for key in self._pending if only is None or key in only]
        if keys:
            offsets = [TopicPartition(t, p, self._pending[(t, p)]) for t, p in keys]
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # Not fatal: uncommitted events are redelivered and skipped as duplicates.
                logger.warning("consumer %s: offset commit failed: %s", self.label, exc)
            else:
                for key in keys:
                    self._pending.pop(key, None)
        self._last_commit = time.monotonic()

    def revoke(self, partitions: set[Partition]) -> None:
        """Commit what is done on partitions we are losing, then forget them: never commit
        later for a partition we no longer own."""
        self.commit(only=partitions)
        for key in partitions:
            self._pending.pop(key, None)
