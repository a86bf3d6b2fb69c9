"""Counts over time for dashboards: rows per minute, grouped in the database."""

from datetime import UTC, datetime

from django.db.models import Count, Model, QuerySet
from django.db.models.functions import TruncMinute


def counts_per_minute(
    rows: QuerySet[Model], *, since: datetime, field: str = "created_at"
) -> dict[datetime, int]:
    """Rows whose `field` is at or after `since`, counted per minute (UTC); minutes
    without rows are absent."""
    per_minute = (
        rows.filter(**{f"{field}__gte": since})
        .annotate(minute=TruncMinute(field, tzinfo=UTC))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("id"))
    )
    return dict(per_minute)
