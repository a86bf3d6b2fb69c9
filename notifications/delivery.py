"""Delivery: one pending notification sent on its channel, at most once (what the Celery
tasks in `notifications.tasks` run, with each channel's retries).

The row is locked while it is sent, so two tasks that hold the same notification cannot both
send it. A backend that raises (a provider's 5xx, a timeout) rolls the attempt back: the
task retries it. A push subscription the push service calls gone is removed.
"""

import contextlib
import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from common.structured_logs import log_context
from kafka_bridge.sql import row_with_user, rows_update
from notifications.channels import (
    DeliveryOutcome,
    DeliveryResult,
    OutboundMessage,
    channel_backend,
)
from notifications.metrics import (
    ERROR,
    notification_failed_count,
    notification_send_observe,
)
from notifications.models import Notification, NotificationPreferences, PushSubscription

logger = logging.getLogger(__name__)


# How log lines name each channel: "e-mail sent", "SMS sent", "push sent".
_NAMES = {"email": "e-mail", "sms": "SMS", "push": "push"}
# What a send attempt writes back to its notification.
_SENT_FIELDS = ("status", "sent_at", "error", "recipient", "attempts")


class NotificationNotDeliverable(Exception):
    """Delivery can never succeed (e.g. no address): no retry."""


@dataclass(frozen=True)
class _Addressed:
    message: OutboundMessage
    subscription_id: object = None  # push: the subscription it goes to


def _push_payload(notification: Notification) -> dict[str, str]:
    return {
        "title": notification.subject,
        "body": notification.body,
        "kind": notification.kind,
        "order_id": str(notification.order_id),
    }


def _addressed(notification: Notification) -> list[_Addressed]:
    """The messages that deliver `notification`: one, or one per push subscription.
    Raises NotificationNotDeliverable if there is nobody to send it to."""

    def message(recipient: str, **data: object) -> OutboundMessage:
        return OutboundMessage(
            channel=notification.channel,
            kind=notification.kind,
            recipient=recipient,
            subject=notification.subject,
            body=notification.body,
            notification_id=notification.id,
            data=data,
        )

    channel = notification.channel
    if channel == Notification.Channel.EMAIL:
        if not notification.customer.email:
            raise NotificationNotDeliverable("customer has no e-mail address")
        return [_Addressed(message(notification.customer.email))]
    if channel == Notification.Channel.SMS:
        phone = (
            NotificationPreferences.objects.filter(customer_id=notification.customer_id)
            .values_list("phone_number", flat=True)
            .first()
        )
        if not phone:
            raise NotificationNotDeliverable("customer has no phone number")
        return [_Addressed(message(phone))]
    if channel == Notification.Channel.PUSH:
        payload = _push_payload(notification)
        subscriptions = PushSubscription.objects.filter(customer_id=notification.customer_id)
        addressed = [
            _Addressed(
                message(s.endpoint, p256dh=s.p256dh, auth=s.auth, payload=payload),
                subscription_id=s.id,
            )
            for s in subscriptions
        ]
        if not addressed:
            raise NotificationNotDeliverable("customer has no push subscription")
        return addressed
    raise NotificationNotDeliverable(f"unknown channel {channel!r}")


def _send(addressed: _Addressed) -> DeliveryResult:
    message = addressed.message
    backend = channel_backend(message.channel)
    started = time.perf_counter()
    try:
        result = backend.send(message)
    except Exception:
        notification_send_observe(
            channel=message.channel, outcome=ERROR, seconds=time.perf_counter() - started
        )
        raise
    notification_send_observe(
        channel=message.channel, outcome=result.outcome, seconds=time.perf_counter() - started
    )
    return result


def notification_send(*, notification_id: int) -> Notification | None:
    """Send one pending notification on its channel and mark it sent. Raises on a failure
    that may pass, so the task can retry; a notification already sent is left alone.

    A push notification goes to each of the customer's subscriptions; those the push
    service calls gone are removed. It is sent if any subscription took it, failed if
    every one was gone or refused it. A message the provider refuses for good (SMS to an
    invalid number) is failed at once.

    One transaction: the row locked and read with its customer, the send, one UPDATE of
    the outcome and the attempt count. An attempt that raises rolls back; it is counted
    after, on its own."""
    try:
        with transaction.atomic():
            return _notification_send_locked(notification_id)
    except Exception:
        # A database that is down cannot count the attempt: the send's error is the news.
        with contextlib.suppress(DatabaseError):
            Notification.objects.filter(id=notification_id).exclude(
                status=Notification.Status.SENT
            ).update(attempts=F("attempts") + 1)
        raise


def _notification_send_locked(notification_id: int) -> Notification | None:
    notification = _notification_locked_with_customer(notification_id)
    if notification is None or notification.status == Notification.Status.SENT:
        return notification
    with log_context(
        notification_id=notification.id,
        channel=notification.channel,
        order_id=str(notification.order_id),
        event_id=str(notification.event_id),
        correlation_id=notification.correlation_id or None,
    ):
        sent: list[_Addressed] = []
        refused: list[str] = []
        gone = []
        for addressed in _addressed(notification):
            result = _send(addressed)
            if result.outcome == DeliveryOutcome.SENT:
                sent.append(addressed)
            elif result.outcome == DeliveryOutcome.GONE:
                gone.append(addressed.subscription_id)
                refused.append(f"{result.detail}: subscription removed")
            else:
                refused.append(result.detail)
        if gone:
            PushSubscription.objects.filter(id__in=gone).delete()
            logger.info("push subscriptions gone, removed: %d", len(gone))
        notification.attempts += 1
        if sent:
            notification.status = Notification.Status.SENT
            notification.sent_at = timezone.now()
            notification.error = ""
            notification.recipient = _recipient(notification, sent)
            logger.info("%s sent: %s", _NAMES[notification.channel], notification.kind)
        else:
            notification.status = Notification.Status.FAILED
            notification.error = "; ".join(refused)[:2000]
            notification_failed_count(channel=notification.channel)
            logger.warning("%s not delivered: %s", _NAMES[notification.channel], notification.error)
        # The row is locked: the attempts it holds are the ones read. One statement
        # written once per process: compiling the queryset's UPDATE cost a send more CPU
        # than running it.
        rows_update(Notification, [notification], _SENT_FIELDS)
    return notification


def _notification_locked_with_customer(notification_id: int) -> Notification | None:
    """The notification, its row locked until the transaction ends, with its customer:
    one statement written once per process (a task sends every notification through
    here; the queryset's compilation cost more CPU than the read)."""
    statement = row_with_user(Notification, user_field="customer", by="id", lock=True)
    found = statement.fetch(notification_id)
    if found is None:
        return None
    notification, customer = found
    notification.customer = customer
    return notification


def _recipient(notification: Notification, sent: list[_Addressed]) -> str:
    if notification.channel == Notification.Channel.PUSH:
        return f"{len(sent)} push subscription(s)"
    return sent[0].message.recipient[:200]


def notification_mark_failed(*, notification_id: int, error: str) -> None:
    """Give up on a notification (not one already sent), keeping the error."""
    with transaction.atomic():
        channel = (
            Notification.objects.select_for_update()
            .filter(id=notification_id)
            .exclude(status__in=[Notification.Status.SENT, Notification.Status.FAILED])
            .values_list("channel", flat=True)
            .first()
        )
        if channel is None:
            return
        Notification.objects.filter(id=notification_id).update(
            status=Notification.Status.FAILED, error=error[:2000]
        )
    notification_failed_count(channel=channel)
