"""Delivery: one pending notification sent by e-mail, at most once (what the Celery tasks in
`notifications.tasks` run, with their retries)."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from common.structured_logs import log_context
from notifications.models import Notification

logger = logging.getLogger(__name__)


class NotificationNotDeliverable(Exception):
    """Delivery can never succeed (e.g. no address): no retry."""


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
        with log_context(
            notification_id=notification.id,
            order_id=str(notification.order_id),
            event_id=str(notification.event_id),
            correlation_id=notification.correlation_id or None,
        ):
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
            logger.info("e-mail sent: %s", notification.kind)
        return notification


def notification_mark_failed(*, notification_id: int, error: str) -> None:
    Notification.objects.filter(id=notification_id).exclude(status=Notification.Status.SENT).update(
        status=Notification.Status.FAILED, error=error[:2000]
    )
