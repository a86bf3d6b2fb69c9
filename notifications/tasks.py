"""Celery entry points: thin, idempotent, safe to retry."""

import random
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from notifications.delivery import (
    NotificationNotDeliverable,
    notification_mark_failed,
    notification_send,
)
from notifications.models import Notification

MAX_RETRIES = 5


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def notification_deliver(self, notification_id: int) -> str:  # type: ignore[no-untyped-def]
    try:
        notification = notification_send(notification_id=notification_id)
    except NotificationNotDeliverable as exc:
        notification_mark_failed(notification_id=notification_id, error=str(exc))
        return "failed"
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            notification_mark_failed(
                notification_id=notification_id, error=f"{type(exc).__name__}: {exc}"
            )
            return "failed"
        # Exponential backoff with jitter: 2, 4, 8, 16, 32 s (±50%).
        countdown = 2 ** (self.request.retries + 1)
        raise self.retry(exc=exc, countdown=countdown * (0.5 + random.random())) from exc
    return "missing" if notification is None else notification.status


@shared_task(acks_late=True)
def notifications_deliver(notification_ids: list[int]) -> int:
    """Deliver a batch (queued as one message by a consumer batch). A notification that
    fails transiently gets a task of its own, with `notification_deliver`'s retries."""
    sent = 0
    for notification_id in notification_ids:
        try:
            notification = notification_send(notification_id=notification_id)
        except NotificationNotDeliverable as exc:
            notification_mark_failed(notification_id=notification_id, error=str(exc))
        except Exception:
            notification_deliver.apply_async(args=[notification_id], countdown=1 + random.random())
        else:
            sent += notification is not None
    return sent


@shared_task
def notifications_deliver_pending(older_than_seconds: int = 60) -> int:
    """Safety net: queue notifications left pending (e.g. the broker was down at commit)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Notification.objects.filter(
            status=Notification.Status.PENDING, created_at__lt=cutoff
        ).values_list("id", flat=True)[:1000]
    )
    if ids:
        notifications_deliver.delay(ids)
    return len(ids)
