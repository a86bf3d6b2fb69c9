"""Celery entry points: thin, idempotent, safe to retry.

Each channel's notifications travel in tasks of their own (`notifications_deliver`, one per
channel per consumer batch), so a slow or failing SMS provider never holds up e-mail or
push. A notification whose send fails for now gets a task of its own
(`notification_deliver`), retried with its channel's back-off until it is sent or its
channel's MAX_RETRIES are spent.
"""

import random
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from notifications.delivery import (
    NotificationNotDeliverable,
    notification_mark_failed,
    notification_send,
)
from notifications.models import Notification

# The default number of retries of every channel (NOTIFICATIONS_<CHANNEL>_MAX_RETRIES).
MAX_RETRIES = 5


def _policy(channel: str) -> dict[str, float]:
    """The channel's retry settings: MAX_RETRIES, BACKOFF_SECONDS, BACKOFF_MAX_SECONDS."""
    channels = settings.NOTIFICATIONS["CHANNELS"]
    return channels.get(channel, channels["email"])


def _backoff(channel: str, retries: int) -> float:
    """Seconds before retry number `retries + 1`: exponential, ±50% jitter, capped (e-mail
    by default: 2, 4, 8, 16, 32 s)."""
    policy = _policy(channel)
    delay = min(policy["BACKOFF_SECONDS"] * 2**retries, policy["BACKOFF_MAX_SECONDS"])
    return delay * (0.5 + random.random())


def _channel_of(notification_id: int) -> str:
    found = Notification.objects.filter(id=notification_id).values_list("channel", flat=True)
    return found.first() or Notification.Channel.EMAIL


@shared_task(bind=True, max_retries=None, acks_late=True)
def notification_deliver(self, notification_id: int) -> str:  # type: ignore[no-untyped-def]
    try:
        notification = notification_send(notification_id=notification_id)
    except NotificationNotDeliverable as exc:
        notification_mark_failed(notification_id=notification_id, error=str(exc))
        return "failed"
    except Exception as exc:
        channel = _channel_of(notification_id)
        max_retries = int(_policy(channel)["MAX_RETRIES"])
        if self.request.retries >= max_retries:
            notification_mark_failed(
                notification_id=notification_id, error=f"{type(exc).__name__}: {exc}"
            )
            return "failed"
        raise self.retry(
            exc=exc, countdown=_backoff(channel, self.request.retries), max_retries=max_retries
        ) from exc
    return "missing" if notification is None else notification.status


@shared_task(acks_late=True)
def notifications_deliver(notification_ids: list[int]) -> int:
    """Deliver a batch of one channel's notifications (queued as one message per channel by
    a consumer batch). After the first failure that may pass, the rest of the batch is not
    tried now: the failed notification continues as `notification_deliver`'s first retry,
    and each untried one gets a task of its own, so a provider that is down costs one
    timeout here, not one per notification."""
    sent = 0
    for position, notification_id in enumerate(notification_ids):
        try:
            notification = notification_send(notification_id=notification_id)
        except NotificationNotDeliverable as exc:
            notification_mark_failed(notification_id=notification_id, error=str(exc))
        except Exception as exc:
            channel = _channel_of(notification_id)
            if int(_policy(channel)["MAX_RETRIES"]) < 1:
                notification_mark_failed(
                    notification_id=notification_id, error=f"{type(exc).__name__}: {exc}"
                )
            else:
                notification_deliver.apply_async(
                    args=[notification_id], countdown=_backoff(channel, 0), retries=1
                )
            for untried in notification_ids[position + 1 :]:
                notification_deliver.apply_async(args=[untried], countdown=_backoff(channel, 0))
            break
        else:
            sent += notification is not None and notification.status == Notification.Status.SENT
    return sent


@shared_task
def notifications_deliver_pending(older_than_seconds: int = 60) -> int:
    """Safety net: queue notifications left pending (e.g. the broker was down at commit),
    one task per channel."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = list(
        Notification.objects.filter(
            status=Notification.Status.PENDING, created_at__lt=cutoff
        ).values_list("id", "channel")[:1000]
    )
    by_channel: dict[str, list[int]] = {}
    for notification_id, channel in rows:
        by_channel.setdefault(channel, []).append(notification_id)
    for ids in by_channel.values():
        notifications_deliver.delay(ids)
    return len(rows)
