"""Notifications: created once per customer-visible order transition and queued for delivery
by Celery once the transaction commits (`notifications.tasks`; sending is
`notifications.delivery`).

Subjects and bodies are Django templates per kind (templates/notifications/email/), so
wording changes never touch code. They are plain text: each template turns autoescaping off.
"""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.template.loader import render_to_string

from common.redis_client import OutageBackoff
from notifications.models import Notification, OrderShippingAddress
from notifications.tasks import notifications_deliver
from orders.events import OrderCreatedV2, OrderStatusChangedV1, ShippingAddress

logger = logging.getLogger(__name__)

KIND_BY_ORDER_STATUS: dict[str, str] = {
    "reserved": Notification.Kind.ORDER_CONFIRMED,
    "rejected": Notification.Kind.OUT_OF_STOCK,
    "paid": Notification.Kind.PAYMENT_RECEIVED,
    "payment_failed": Notification.Kind.PAYMENT_FAILED,
    "shipped": Notification.Kind.SHIPPED,
    "delivered": Notification.Kind.DELIVERED,
    "cancelled": Notification.Kind.CANCELLED,
    "expired": Notification.Kind.EXPIRED,
}
# A held order back in `reserved` (staff approved it after a risk review): the customer
# heard "order confirmed" when it was first reserved, and hears nothing about the review.
_NOT_NOTIFIED_MOVES = frozenset({("held", "reserved")})


def _notification_kind(change: OrderStatusChangedV1) -> str | None:
    if (change.previous_status, change.status) in _NOT_NOTIFIED_MOVES:
        return None
    return KIND_BY_ORDER_STATUS.get(change.status)


def _render(kind: str, context: dict[str, object]) -> tuple[str, str]:
    subject = render_to_string(f"notifications/email/{kind}.subject.txt", context)
    body = render_to_string(f"notifications/email/{kind}.body.txt", context)
    return " ".join(subject.split())[:200], body.strip()


def order_shipping_addresses_record(*, orders: Sequence[OrderCreatedV2]) -> None:
    """Keep the shipping address of each new order that has one, for its e-mails; one
    INSERT, and an order already known keeps its row (redelivery changes nothing)."""
    OrderShippingAddress.objects.bulk_create(
        [
            OrderShippingAddress(
                order_id=order.order_id, address=order.shipping_address.model_dump()
            )
            for order in orders
            if order.shipping_address is not None
        ],
        ignore_conflicts=True,
    )


def _shipping_lines(
    addresses: dict[uuid.UUID, OrderShippingAddress], order_id: uuid.UUID
) -> list[str]:
    known = addresses.get(order_id)
    return ShippingAddress.model_validate(known.address).postal_lines() if known else []


@dataclass(frozen=True)
class OrderChangeNotice:
    """An order transition to tell the customer about, and the event that reported it."""

    change: OrderStatusChangedV1
    event_id: uuid.UUID
    correlation_id: str = ""


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def notifications_create_for_order_changes(
    *, notices: Sequence[OrderChangeNotice]
) -> list[Notification | None]:
    """The notification of each transition, created once per event, in a constant number
    of queries; their delivery is queued in one task after commit. A transition customers
    do not see gives None. Raises the customer model's DoesNotExist for an unknown one."""
    kinds = [_notification_kind(notice.change) for notice in notices]
    wanted = [(notice, kind) for notice, kind in zip(notices, kinds, strict=True) if kind]
    found: dict[tuple[uuid.UUID, str], Notification] = {
        (n.event_id, n.kind): n
        for n in Notification.objects.filter(event_id__in=[n.event_id for n, _ in wanted])
    }
    user_model = get_user_model()
    customers = user_model.objects.in_bulk({notice.change.customer_id for notice, _ in wanted})
    addresses = OrderShippingAddress.objects.in_bulk(
        {notice.change.order_id for notice, _ in wanted}
    )
    created: list[Notification] = []
    for notice, kind in wanted:
        if (notice.event_id, kind) in found:
            continue
        change = notice.change
        customer = customers.get(change.customer_id)
        if customer is None:
            raise user_model.DoesNotExist(f"customer {change.customer_id} does not exist")
        subject, body = _render(
            kind,
            {
                "customer": customer,
                "order_id": change.order_id,
                "short_id": str(change.order_id)[:8],
                "reason": change.reason,
                "tracking_number": change.tracking_number,
                "carrier": change.carrier,
                "shipping_lines": _shipping_lines(addresses, change.order_id),
            },
        )
        notification = Notification(
            customer=customer,
            order_id=change.order_id,
            kind=kind,
            subject=subject,
            body=body,
            event_id=notice.event_id,
            correlation_id=notice.correlation_id,
        )
        found[(notice.event_id, kind)] = notification
        created.append(notification)
    Notification.objects.bulk_create(created)
    notifications_enqueue(notification_ids=[n.id for n in created])
    return [
        found[(notice.event_id, kind)] if kind else None
        for notice, kind in zip(notices, kinds, strict=True)
    ]


def notification_create_for_order_change(
    *, change: OrderStatusChangedV1, event_id: uuid.UUID
) -> Notification | None:
    """One transition's notification: see `notifications_create_for_order_changes`."""
    (notification,) = notifications_create_for_order_changes(
        notices=[OrderChangeNotice(change, event_id)]
    )
    return notification


# After a failed publish, skip publishing for a while: during a broker outage each attempt
# would block the notifications consumer for its timeouts. Pending ones go out via the sweep.
_enqueue_backoff = OutageBackoff()


def notifications_enqueue(*, notification_ids: Sequence[int]) -> None:
    """Queue delivery, as one task, once the current transaction commits. If the Celery
    broker is down the notifications stay pending and the periodic sweep queues them."""
    ids = list(notification_ids)
    if not ids:
        return

    def enqueue() -> None:
        if not _enqueue_backoff.ready():
            return
        try:
            notifications_deliver.delay(ids)
        except Exception as exc:  # broker unavailable: the sweep will pick them up
            if _enqueue_backoff.failed():
                logger.warning("notifications not queued (the sweep will): %s", exc)
            return
        _enqueue_backoff.succeeded()

    transaction.on_commit(enqueue)


@transaction.atomic
def notification_resend(*, notification_ids: list[int]) -> int:
    """Staff: queue failed (or pending) notifications again; sent ones are left alone."""
    ids = list(
        Notification.objects.filter(id__in=notification_ids)
        .exclude(status=Notification.Status.SENT)
        .values_list("id", flat=True)
    )
    Notification.objects.filter(id__in=ids).update(status=Notification.Status.PENDING, error="")
    notifications_enqueue(notification_ids=ids)
    return len(ids)
