"""Notifications: created once per customer-visible order transition, delivered by Celery.

Subjects and bodies are Django templates per kind (templates/notifications/email/), so
wording changes never touch code. They are plain text: each template turns autoescaping off.
"""

import logging
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from kafka_bridge.contracts import OrderStatusChangedV1
from kafka_bridge.redis_client import OutageBackoff
from notifications.models import Notification

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


class NotificationNotDeliverable(Exception):
    """Delivery can never succeed (e.g. no address): no retry."""


def _render(kind: str, context: dict[str, object]) -> tuple[str, str]:
    subject = render_to_string(f"notifications/email/{kind}.subject.txt", context)
    body = render_to_string(f"notifications/email/{kind}.body.txt", context)
    return " ".join(subject.split())[:200], body.strip()


@transaction.atomic
def notification_create_for_order_change(
    *, change: OrderStatusChangedV1, event_id: uuid.UUID
) -> Notification | None:
    """The notification for one order transition, created once per event; its delivery is
    queued after commit. A transition customers do not see returns None."""
    kind = KIND_BY_ORDER_STATUS.get(change.status)
    if kind is None:
        return None
    existing = Notification.objects.filter(event_id=event_id, kind=kind).first()
    if existing is not None:
        return existing
    customer = get_user_model().objects.get(pk=change.customer_id)
    subject, body = _render(
        kind,
        {
            "customer": customer,
            "order_id": change.order_id,
            "short_id": str(change.order_id)[:8],
            "reason": change.reason,
            "tracking_number": change.tracking_number,
            "carrier": change.carrier,
        },
    )
    notification = Notification.objects.create(
        customer=customer,
        order_id=change.order_id,
        kind=kind,
        subject=subject,
        body=body,
        event_id=event_id,
    )
    notification_enqueue(notification_id=notification.id)
    return notification


# After a failed publish, skip publishing for a while: during a broker outage each attempt
# would block the notifications consumer for its timeouts. Pending ones go out via the sweep.
_enqueue_backoff = OutageBackoff()


def notification_enqueue(*, notification_id: int) -> None:
    """Queue delivery once the current transaction commits. If the Celery broker is down
    the notification stays pending and the periodic sweep queues it later."""

    def enqueue() -> None:
        from notifications.tasks import notification_deliver

        if not _enqueue_backoff.ready():
            return
        try:
            notification_deliver.delay(notification_id)
        except Exception as exc:  # broker unavailable: the sweep will pick it up
            if _enqueue_backoff.failed():
                logger.warning("notifications not queued (the sweep will): %s", exc)
            return
        _enqueue_backoff.succeeded()

    transaction.on_commit(enqueue)


def notification_send(*, notification_id: int) -> Notification | None:
    """Send one pending notification by e-mail and mark it sent. Raises on failure, so the
    task can retry; a notification already sent is left alone."""
    # Counted in its own transaction: a failed attempt below rolls back, the count stays.
    Notification.objects.filter(id=notification_id).exclude(status=Notification.Status.SENT).update(
        attempts=F("attempts") + 1
    )
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update()
            .select_related("customer")
            .filter(id=notification_id)
            .first()
        )
        if notification is None or notification.status == Notification.Status.SENT:
            return notification
        address = notification.customer.email
        if not address:
            raise NotificationNotDeliverable("customer has no e-mail address")
        send_mail(
            notification.subject,
            notification.body,
            settings.DEFAULT_FROM_EMAIL,
            [address],
            fail_silently=False,
        )
        notification.status = Notification.Status.SENT
        notification.sent_at = timezone.now()
        notification.error = ""
        notification.save(update_fields=["status", "sent_at", "error"])
        return notification


def notification_mark_failed(*, notification_id: int, error: str) -> None:
    Notification.objects.filter(id=notification_id).exclude(status=Notification.Status.SENT).update(
        status=Notification.Status.FAILED, error=error[:2000]
    )


@transaction.atomic
def notification_resend(*, notification_ids: list[int]) -> int:
    """Staff: queue failed (or pending) notifications again; sent ones are left alone."""
    ids = list(
        Notification.objects.filter(id__in=notification_ids)
        .exclude(status=Notification.Status.SENT)
        .values_list("id", flat=True)
    )
    Notification.objects.filter(id__in=ids).update(status=Notification.Status.PENDING, error="")
    for notification_id in ids:
        notification_enqueue(notification_id=notification_id)
    return len(ids)
