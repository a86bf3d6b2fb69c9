"""The webhook state machines: every status of an endpoint and of a delivery, and every
allowed move, in one place. Services move rows only through these tables.

Endpoint:  active ──(every attempt failing for long enough)──▶ disabled
                  ◀──────────────(staff re-enable)───────────────┘

Delivery:  pending ──▶ delivered          (a 2xx answer)
              │  ▲ ╲──▶ failed            (the retry schedule ran out)
              │  └────── delivered, failed (staff redeliver)
"""

from django.db import models


class EndpointStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled (failing)"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


ENDPOINT_TRANSITIONS: dict[str, frozenset[str]] = {
    EndpointStatus.ACTIVE: frozenset({EndpointStatus.DISABLED}),
    EndpointStatus.DISABLED: frozenset({EndpointStatus.ACTIVE}),
}

DELIVERY_TRANSITIONS: dict[str, frozenset[str]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}),
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
}


def endpoint_statuses_from(target: str) -> list[str]:
    """The endpoint statuses that may move to `target`."""
    return [status for status, targets in ENDPOINT_TRANSITIONS.items() if target in targets]


def delivery_statuses_from(target: str) -> list[str]:
    """The delivery statuses that may move to `target`."""
    return [status for status, targets in DELIVERY_TRANSITIONS.items() if target in targets]
