"""Reads of the outbox, the dead letters, the processed-event marks and consumer lag: for
the consumer runtime, the metrics collector, the admin's pipeline dashboard and the apps."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import KafkaException
from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from common.time_series import counts_per_minute
from kafka_bridge.contracts import Event
from kafka_bridge.lag import PartitionLag, consumer_lag_list
from kafka_bridge.models import DeadLetter, OutboxEvent, ProcessedEvent
from kafka_bridge.registry import CONSUMERS


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    oldest_age_seconds: float  # 0 when nothing is pending


def outbox_backlog() -> OutboxBacklog:
    """Unpublished rows and the age of the oldest: two index-only lookups on the
    pending-rows index."""
    pending = OutboxEvent.objects.filter(published_at__isnull=True)
    count = pending.count()
    oldest = pending.order_by("id").values_list("created_at", flat=True).first()
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxBacklog(pending=count, oldest_age_seconds=max(age, 0.0))


def dead_letters_by_topic() -> list[dict[str, object]]:
    """Per original topic: dead letters waiting for staff (new) and in all."""
    return list(
        DeadLetter.objects.values("original_topic")
        .annotate(
            new=Count("id", filter=Q(status=DeadLetter.Status.NEW)),
            total=Count("id"),
        )
        .order_by("-new", "original_topic")
    )


def dead_letters_recent(*, limit: int = 10) -> QuerySet[DeadLetter]:
    return DeadLetter.objects.order_by("-stored_at", "-id")[:limit]


def events_recorded_per_minute(*, since: datetime) -> dict[datetime, int]:
    """Events recorded (outbox rows) in each minute from `since` (UTC; empty minutes absent)."""
    return counts_per_minute(OutboxEvent.objects.all(), since=since)


@dataclass(frozen=True)
class GroupLag:
    group: str
    partitions: int
    lag: int
    never_committed: int  # partitions the group has not committed on yet


@dataclass(frozen=True)
class PipelineLag:
    groups: list[GroupLag]
    unavailable: str = ""  # why the broker gave no figures
    approximate: bool = False  # the broker's end offsets are known to be wrong


def consumer_lag_by_group(*, timeout: float = 2.0) -> PipelineLag:
    """Lag summed per consumer group, from the broker within `timeout` seconds; a broker
    that does not answer gives no figures and the reason, never an error."""
    try:
        rows, _missing = consumer_lag_list(CONSUMERS.values(), timeout=timeout)
    except KafkaException as exc:
        return PipelineLag(groups=[], unavailable=str(exc.args[0] if exc.args else exc))
    groups: dict[str, list[PartitionLag]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return PipelineLag(
        groups=[
            GroupLag(
                group=group,
                partitions=len(partitions),
                lag=sum(p.lag for p in partitions),
                never_committed=sum(p.committed is None for p in partitions),
            )
            for group, partitions in sorted(groups.items())
        ],
        approximate=settings.KAFKA["END_OFFSETS_APPROXIMATE"],
    )


def processed_events_known(*, group: str, events: Sequence[Event]) -> set[uuid.UUID]:
    """Ids of these events the database already records as processed by `group`."""
    return set(
        ProcessedEvent.objects.filter(
            consumer_group=group, event_id__in=[e.event_id for e in events]
        ).values_list("event_id", flat=True)
    )


def processed_events_missing(*, group: str, compared_to: str) -> bool:
    """Whether `compared_to` has processed an event that `group` has not."""
    processed = ProcessedEvent.objects.filter(consumer_group=group)
    return (
        ProcessedEvent.objects.filter(consumer_group=compared_to)
        .exclude(event_id__in=processed.values("event_id"))
        .exists()
    )


def processed_event_groups(*, prefix: str) -> list[str]:
    """The consumer groups, named with `prefix`, that have processed-event marks."""
    return list(
        ProcessedEvent.objects.filter(consumer_group__startswith=prefix)
        .values_list("consumer_group", flat=True)
        .distinct()
    )
