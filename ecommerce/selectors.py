from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException
from django.conf import settings
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from ecommerce.models import ApiToken, api_token_digest
from kafka_bridge.lag import PartitionLag, consumer_lag_list
from kafka_bridge.models import OutboxEvent
from kafka_bridge.registry import CONSUMERS
from orders.models import Order
from orders.status import OrderStatus


def api_token_get_active(*, key: str) -> ApiToken | None:
    """The unexpired, unrevoked token with this key, with its user (one query)."""
    return (
        ApiToken.objects.active()
        .select_related("user")
        .filter(digest=api_token_digest(key))
        .first()
    )


# --- the admin's pipeline dashboard -----------------------------------------------------
@dataclass(frozen=True)
class MinuteCounts:
    minute: datetime  # start of the minute, UTC
    orders: int
    events: int


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


def orders_count_by_status() -> list[tuple[str, str, int]]:
    """(status, label, orders) for every status, zeros included, in the saga's order."""
    counts = dict(Order.objects.order_by().values_list("status").annotate(n=Count("id")))
    return [(status.value, status.label, counts.get(status.value, 0)) for status in OrderStatus]


def pipeline_minutes(*, minutes: int = 60, now: datetime | None = None) -> list[MinuteCounts]:
    """Orders placed and events recorded (outbox rows) in each of the last `minutes`
    minutes, oldest first, the current minute last; minutes without any are zeros."""
    end = (now or timezone.now()).astimezone(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)

    def per_minute(queryset: QuerySet) -> dict[datetime, int]:  # type: ignore[type-arg]
        rows = (
            queryset.filter(created_at__gte=start)
            .annotate(minute=TruncMinute("created_at", tzinfo=UTC))
            .order_by()
            .values_list("minute")
            .annotate(n=Count("id"))
        )
        return dict(rows)

    orders = per_minute(Order.objects.all())
    events = per_minute(OutboxEvent.objects.all())
    return [
        MinuteCounts(minute=at, orders=orders.get(at, 0), events=events.get(at, 0))
        for at in (start + timedelta(minutes=i) for i in range(minutes))
    ]


def pipeline_lag(*, timeout: float = 2.0) -> PipelineLag:
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
