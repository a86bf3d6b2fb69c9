"""Reads of the webhooks app."""

import uuid
from datetime import datetime

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.status import DeliveryStatus, EndpointStatus


def webhook_endpoint_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.order_by("-created_at", "id")


def webhook_endpoint_get(*, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(id=endpoint_id).first()


def webhook_endpoints_active() -> list[tuple[uuid.UUID, list[str]]]:
    """(id, event types) of every endpoint that gets new deliveries."""
    return list(
        WebhookEndpoint.objects.filter(status=EndpointStatus.ACTIVE).values_list(
            "id", "event_types"
        )
    )


def webhook_deliveries_due(*, now: datetime, per_endpoint: int) -> QuerySet[WebhookDelivery]:
    """Deliveries that may be sent now, oldest first, at most `per_endpoint` per endpoint:
    pending, due, not taken by a dispatcher, to an active endpoint, and with no earlier
    delivery of the same order to the same endpoint still pending (events of one order
    reach an endpoint in their order). Values: (id, endpoint id)."""
    earlier_pending = WebhookDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"),
        order_id=OuterRef("order_id"),
        status=DeliveryStatus.PENDING,
        id__lt=OuterRef("id"),
    )
    due = (
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=EndpointStatus.ACTIVE,
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(~Exists(earlier_pending))
    )
    return (
        due.annotate(
            rank=Window(RowNumber(), partition_by=[F("endpoint_id")], order_by=F("id").asc())
        )
        .filter(rank__lte=per_endpoint)
        .order_by("id")
    )


def webhook_deliveries_pending_count() -> int:
    return WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()


def webhook_attempts_of(*, delivery_id: int) -> QuerySet[WebhookAttempt]:
    return WebhookAttempt.objects.filter(delivery_id=delivery_id).order_by("number", "id")
