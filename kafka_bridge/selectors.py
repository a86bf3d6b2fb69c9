"""Reads of the outbox and the dead letters, shared by the metrics collector and the
admin's pipeline dashboard."""

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from kafka_bridge.models import DeadLetter, OutboxEvent


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
