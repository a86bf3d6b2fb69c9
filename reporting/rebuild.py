"""Rebuild the read models by replaying the order events: `manage.py rebuild_read_models`.

A rebuild's states:

    running ──▶ swapped
       └──────▶ failed

1. **Start**: a new generation (one above any seen) is registered as running. Rows and
   ProcessedEvent marks that a rebuild which died left behind (any generation but the live
   one) are deleted first.
2. **Replay**: the topics the read_models consumer reads are read from the earliest offset
   under a fresh consumer group (partitions assigned directly: no group join), and every
   order event is applied to the new generation (`read_models_apply`). It reads at least to
   the end offsets seen at the start, and to the offsets the live consumer has committed.
3. **Swap**: under an exclusive lock on `ReadModelState` (the live consumer takes a shared
   one for each batch, so it pauses meanwhile), the replay goes on until the new generation
   holds every event the live one holds: the live generation's ProcessedEvent marks are a
   subset of the new one's. Then the new generation becomes live, in the same transaction.
   The live consumer carries on into it from its own offsets: an event the replay already
   applied is a duplicate for the new generation, one it did not reach is applied once.
4. **Clean up**: the old generation's rows and marks are deleted.

A replay can only rebuild what the topics still hold: it refuses to start when a partition
no longer begins at offset 0 (retention deleted events), since the live tables have them.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kafka_bridge.client import common_config, consumer_config, group_name, topic_name
from kafka_bridge.contracts import Event, EventDecodeError
from kafka_bridge.registry import consumer_spec_get
from kafka_bridge.selectors import processed_event_groups, processed_events_missing
from kafka_bridge.services import processed_events_forget
from kafka_bridge.wire import message_decode
from reporting.models import (
    CustomerOrderSummary,
    OrderFacts,
    ProductDailySales,
    ReadModelRebuild,
    ReadModelState,
)
from reporting.services.read_models import (
    READ_MODELS_CONSUMER,
    read_models_apply,
    read_models_dedupe_group,
    read_models_dedupe_prefix,
    read_models_generation_live,
)

logger = logging.getLogger(__name__)

Status = ReadModelRebuild.Status
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.RUNNING: frozenset({Status.SWAPPED, Status.FAILED}),
    Status.SWAPPED: frozenset(),
    Status.FAILED: frozenset(),
}
GENERATION_MODELS = (OrderFacts, ProductDailySales, CustomerOrderSummary)
BATCH_SIZE = 500
# How long one request to the broker (metadata, offsets) may take.
KAFKA_TIMEOUT_SECONDS = 30.0
# A replay that reads nothing for this long while short of its targets gives up.
STALL_SECONDS = 60.0
# (messages read, messages the replay aims for); called after every batch.
Progress = Callable[[int, int], None]


class RebuildRefused(Exception):
    """The rebuild cannot start (another one is running, the topics lost events)."""


class RebuildFailed(Exception):
    """The rebuild stopped; its generation was deleted and the live one is untouched."""


Partition = tuple[str, int]


@dataclass
class _Replay:
    """Reading the topics from the beginning and applying them to one generation."""

    generation: int
    consumer: Consumer
    handled: frozenset[str]
    positions: dict[Partition, int]  # next offset to read per partition
    targets: dict[Partition, int]
    messages_read: int = 0
    events_applied: int = 0
    undecodable: int = 0
    progress: Progress | None = None
    _last_read: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.targets.values())

    def reached_targets(self) -> bool:
        return all(self.positions[p] >= target for p, target in self.targets.items())

    def read_batch(self, *, timeout: float = 0.5) -> int:
        """Read what is there (one batch) and apply its order events in one transaction."""
        messages = [m for m in self.consumer.consume(BATCH_SIZE, timeout=timeout) if self._ok(m)]
        if not messages:
            if time.monotonic() - self._last_read > STALL_SECONDS:
                raise RebuildFailed(
                    f"nothing to read for {STALL_SECONDS:.0f}s, short of the offsets to reach "
                    f"({self._short_of()})"
                )
            return 0
        self._last_read = time.monotonic()
        events: list[Event] = []
        for message in messages:
            self.positions[(message.topic(), message.partition())] = message.offset() + 1
            try:
                event = message_decode(message.value(), topic=message.topic())
            except EventDecodeError:
                self.undecodable += 1  # the live consumer dead-lettered it too
                continue
            if event.event_type in self.handled:
                events.append(event)
        self.events_applied += read_models_apply(events=events, generation=self.generation)
        self.messages_read += len(messages)
        if self.progress:
            self.progress(self.messages_read, self.total)
        return len(messages)

    def _ok(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise KafkaException(error)
        logger.warning("rebuild: %s", error)
        return False

    def _short_of(self) -> str:
        return ", ".join(
            f"{topic}[{partition}] at {self.positions[(topic, partition)]} of {target}"
            for (topic, partition), target in sorted(self.targets.items())
            if self.positions[(topic, partition)] < target
        )


def read_models_rebuild(
    *, force: bool = False, progress: Progress | None = None
) -> ReadModelRebuild:
    """Replay the order events into a new generation and swap it in (see the module doc).
    Raises RebuildRefused before anything is done, RebuildFailed after cleaning up."""
    rebuild, live = _rebuild_start(force=force)
    spec = consumer_spec_get(READ_MODELS_CONSUMER)
    consumer = Consumer(
        consumer_config(group_id=rebuild.consumer_group, role="rebuild-read-models")
    )
    try:
        partitions = _partitions(consumer, [topic_name(t) for t in spec.topics])
        replay = _Replay(
            generation=rebuild.generation,
            consumer=consumer,
            handled=frozenset(spec.handlers),
            positions=dict.fromkeys(partitions, 0),
            targets=_targets(consumer, partitions),
            progress=progress,
        )
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
        while not replay.reached_targets():
            replay.read_batch()
        _swap(replay, live=live)
    except BaseException as exc:
        _rebuild_failed(rebuild, exc)
        raise
    finally:
        consumer.close()
    _generation_delete(live)
    rebuild.messages_read, rebuild.events_applied = replay.messages_read, replay.events_applied
    _rebuild_finish(rebuild, Status.SWAPPED, detail=f"{replay.undecodable} undecodable skipped")
    return rebuild


@transaction.atomic
def _rebuild_start(*, force: bool) -> tuple[ReadModelRebuild, int]:
    running = list(ReadModelRebuild.objects.select_for_update().filter(status=Status.RUNNING))
    if running and not force:
        other = running[0]
        raise RebuildRefused(
            f"the rebuild of generation {other.generation}, started "
            f"{other.started_at:%Y-%m-%d %H:%M:%S}, is still running; if its process is gone, "
            "pass --force"
        )
    for other in running:
        _rebuild_finish(other, Status.FAILED, detail="abandoned: another rebuild was forced")
    live = read_models_generation_live()
    highest = max([live, *ReadModelRebuild.objects.values_list("generation", flat=True)])
    for generation in _generations_other_than(live):
        _generation_delete(generation)
    generation = highest + 1
    rebuild = ReadModelRebuild.objects.create(
        generation=generation,
        consumer_group=group_name(
            f"{READ_MODELS_CONSUMER}-rebuild-g{generation}-{uuid.uuid4().hex[:6]}"
        ),
    )
    return rebuild, live


def _partitions(consumer: Consumer, topics: list[str]) -> list[Partition]:
    metadata = consumer.list_topics(timeout=KAFKA_TIMEOUT_SECONDS)
    partitions = []
    for topic in topics:
        if topic not in metadata.topics:
            raise RebuildRefused(f"topic {topic} does not exist (run manage.py kafka_topics)")
        partitions += [(topic, p) for p in sorted(metadata.topics[topic].partitions)]
    return partitions


def _targets(consumer: Consumer, partitions: list[Partition]) -> dict[Partition, int]:
    """Per partition, the offset the replay reads up to before it tries to swap: the end
    offset seen now, or the live consumer's committed offset if further (some brokers
    report end offsets short; our test broker does)."""
    # Only reads the group's committed offsets: a consumer that never subscribes does not
    # join the group.
    live = Consumer(
        {
            **common_config(),
            "group.id": group_name(READ_MODELS_CONSUMER),
            "enable.auto.commit": False,
        }
    )
    try:
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in live.committed(
                [TopicPartition(t, p) for t, p in partitions], timeout=KAFKA_TIMEOUT_SECONDS
            )
        }
    finally:
        live.close()
    targets = {}
    for topic, partition in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=KAFKA_TIMEOUT_SECONDS
        )
        if low > 0:
            raise RebuildRefused(
                f"{topic}[{partition}] begins at offset {low}: retention deleted its oldest "
                "events, so a replay would lose what the live tables hold. Keep the event "
                "topics forever (retention.ms=-1) to rebuild from them"
            )
        targets[(topic, partition)] = max(high, committed.get((topic, partition), 0), 0)
    return targets


def _swap(replay: _Replay, *, live: int) -> None:
    """Catch up with the live generation while it is paused, then make the new one live."""
    deadline = time.monotonic() + settings.REPORTING["REBUILD_SWAP_TIMEOUT_SECONDS"]
    with transaction.atomic():
        state = ReadModelState.objects.select_for_update().get(pk=1)
        if state.live_generation != live:
            raise RebuildFailed(
                f"generation {state.live_generation} was swapped in by another rebuild meanwhile"
            )
        while _live_events_missing(live=live, new=replay.generation):
            if time.monotonic() > deadline:
                raise RebuildFailed(
                    "the replay did not reach every event of the live generation within "
                    f"{settings.REPORTING['REBUILD_SWAP_TIMEOUT_SECONDS']:g}s"
                )
            replay.read_batch(timeout=0.2)
        state.live_generation = replay.generation
        state.save(update_fields=["live_generation"])


def _live_events_missing(*, live: int, new: int) -> bool:
    """Whether the live generation holds an event the new one does not."""
    return processed_events_missing(
        group=read_models_dedupe_group(new), compared_to=read_models_dedupe_group(live)
    )


def _generations_other_than(live: int) -> set[int]:
    found: set[int] = set()
    for model in GENERATION_MODELS:
        found |= set(
            model.objects.exclude(generation=live).values_list("generation", flat=True).distinct()
        )
    prefix = read_models_dedupe_prefix()
    for group in processed_event_groups(prefix=prefix):
        suffix = group.removeprefix(prefix)
        if suffix.isdigit() and int(suffix) != live:
            found.add(int(suffix))
    return found


def _generation_delete(generation: int) -> None:
    with transaction.atomic():
        for model in GENERATION_MODELS:
            model.objects.filter(generation=generation).delete()
        processed_events_forget(group=read_models_dedupe_group(generation))


def _rebuild_failed(rebuild: ReadModelRebuild, exc: BaseException) -> None:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        _generation_delete(rebuild.generation)
        _rebuild_finish(rebuild, Status.FAILED, detail=detail)
    except Exception:  # the original error matters more; --force cleans up next time
        logger.exception("rebuild of generation %s: cleanup failed", rebuild.generation)


def _rebuild_finish(rebuild: ReadModelRebuild, status: str, *, detail: str) -> None:
    if status not in TRANSITIONS[rebuild.status]:
        raise ValueError(f"a rebuild cannot go from {rebuild.status} to {status}")
    rebuild.status = status
    rebuild.finished_at = timezone.now()
    rebuild.detail = detail[:2000]
    rebuild.save()
