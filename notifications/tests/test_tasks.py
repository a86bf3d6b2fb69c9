"""Notification tasks: delivery with retries, and the sweep of notifications left pending.

Tasks run synchronously with `.apply()`; Celery then runs each retry inline at once (the
countdown is ignored), so a task that keeps failing runs 1 + MAX_RETRIES times and ends
with a successful result of "failed".
"""

import smtplib
import uuid
from datetime import timedelta

import pytest
from celery import states
from django.core import mail
from django.utils import timezone

from notifications.models import Notification
from notifications.services import notification_create_for_order_change
from notifications.tasks import MAX_RETRIES, notification_deliver, notifications_deliver_pending
from orders.events import OrderStatusChangedV1
from testing.factories import customer_create

pytestmark = pytest.mark.django_db


def _notification(customer=None, status: str = "paid") -> Notification:  # type: ignore[no-untyped-def]
    customer = customer or customer_create()
    notification = notification_create_for_order_change(
        change=OrderStatusChangedV1(
            order_id=uuid.uuid4(),
            customer_id=customer.pk,
            previous_status="reserved",
            status=status,
        ),
        event_id=uuid.uuid4(),
    )
    assert notification is not None
    return notification


@pytest.fixture
def smtp_failures(monkeypatch):  # type: ignore[no-untyped-def]
    """A mail server that refuses the first `failures["left"]` messages, then sends.
    `failures["calls"]` counts every attempt."""
    from notifications.channels import email

    real_send_mail = email.send_mail
    failures = {"left": 10**6, "calls": 0}

    def send_mail(*args: object, **kwargs: object) -> int:
        failures["calls"] += 1
        if failures["left"] > 0:
            failures["left"] -= 1
            raise smtplib.SMTPException("mail server down")
        return real_send_mail(*args, **kwargs)

    monkeypatch.setattr("notifications.channels.email.send_mail", send_mail)
    return failures


# --- notification_deliver ----------------------------------------------------------------


def test_deliver_sends_one_email_and_marks_sent():
    # Given a pending notification
    notification = _notification()

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then one e-mail went out and the notification is sent, with its time
    assert result.state == states.SUCCESS
    assert result.get() == "sent"
    [message] = mail.outbox
    assert message.to == [notification.customer.email]
    assert message.subject == notification.subject
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.sent_at is not None
    assert notification.error == ""


def test_deliver_twice_sends_one_email():
    # Given a notification already delivered
    notification = _notification()
    notification_deliver.apply(args=[notification.id])
    notification.refresh_from_db()
    sent_at = notification.sent_at

    # When the task runs again (redelivered by the broker)
    result = notification_deliver.apply(args=[notification.id])

    # Then no second e-mail goes out and nothing changes
    assert result.get() == "sent"
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert notification.sent_at == sent_at


def test_deliver_of_a_deleted_notification_reports_missing():
    result = notification_deliver.apply(args=[987654321])

    assert result.get() == "missing"
    assert mail.outbox == []


def test_customer_without_email_fails_at_once_without_retry(smtp_failures):
    # Given a customer without an e-mail address
    customer = customer_create()
    customer.email = ""
    customer.save()
    notification = _notification(customer)

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it fails for good on the first attempt: no mail server call, no retry
    assert result.state == states.SUCCESS
    assert result.get() == "failed"
    assert smtp_failures["calls"] == 0
    assert mail.outbox == []
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.error == "customer has no e-mail address"
    assert notification.sent_at is None


def test_transient_smtp_error_is_retried_then_sent(smtp_failures):
    # Given a mail server that refuses twice, then accepts
    smtp_failures["left"] = 2
    notification = _notification()

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it was retried until the third attempt sent exactly one e-mail
    assert result.get() == "sent"
    assert smtp_failures["calls"] == 3
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT


def test_smtp_error_is_retried_up_to_the_limit_then_marked_failed(smtp_failures):
    # Given a mail server that always refuses
    notification = _notification()

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it tried once plus MAX_RETRIES retries, and then gave up
    assert smtp_failures["calls"] == 1 + MAX_RETRIES
    assert result.state == states.SUCCESS
    assert result.get() == "failed"
    assert mail.outbox == []
    # And the notification is failed, keeping the error
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.error == "SMTPException: mail server down"
    assert notification.sent_at is None


def test_smtp_error_before_the_last_retry_asks_for_a_retry(smtp_failures, monkeypatch):
    # Given a mail server that refuses, and a task whose retry is observed
    notification = _notification()
    retries: list[dict[str, object]] = []

    def record_retry(*args: object, **kwargs: object) -> None:
        retries.append(kwargs)
        raise RuntimeError("retry requested")

    monkeypatch.setattr(notification_deliver, "retry", record_retry)

    # When the task runs its first attempt
    result = notification_deliver.apply(args=[notification.id])

    # Then it asks for a retry with the error and a backoff of 2 s (±50%)
    [requested] = retries
    assert isinstance(requested["exc"], smtplib.SMTPException)
    assert 1.0 <= requested["countdown"] <= 3.0  # type: ignore[operator]
    assert result.state == states.FAILURE
    # And the notification is not marked failed yet
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PENDING


def test_last_retry_marks_failed_without_asking_for_another(smtp_failures):
    # Given a mail server that refuses
    notification = _notification()

    # When the task runs as its last retry
    result = notification_deliver.apply(args=[notification.id], retries=MAX_RETRIES)

    # Then it gives up after that one attempt
    assert smtp_failures["calls"] == 1
    assert result.get() == "failed"
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED


# --- notifications_deliver_pending -------------------------------------------------------


@pytest.fixture
def queued(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The task-queue seam: record what would be sent to Celery instead of sending it."""
    calls: list[int] = []
    monkeypatch.setattr(
        "notifications.tasks.notifications_deliver.delay", lambda ids: calls.extend(ids)
    )
    return calls


def _make_old(notification: Notification, seconds: int) -> None:
    """Test setup: pretend the notification was created `seconds` ago."""
    Notification.objects.filter(id=notification.id).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_sweep_queues_only_old_pending_notifications(queued):
    # Given an old pending notification, a fresh pending one, and old sent and failed ones
    old_pending = _notification()
    _make_old(old_pending, 120)
    fresh_pending = _notification()
    old_sent = _notification()
    notification_deliver.apply(args=[old_sent.id])
    _make_old(old_sent, 120)
    old_failed = _notification()
    Notification.objects.filter(id=old_failed.id).update(status=Notification.Status.FAILED)
    _make_old(old_failed, 120)
    queued.clear()

    # When the sweep runs with a 60 s grace period
    count = notifications_deliver_pending(older_than_seconds=60)

    # Then only the old pending notification is queued
    assert count == 1
    assert queued == [old_pending.id]
    fresh_pending.refresh_from_db()
    assert fresh_pending.status == Notification.Status.PENDING


def test_sweep_with_nothing_pending_queues_nothing(queued):
    _notification()  # fresh: still within the grace period

    assert notifications_deliver_pending() == 0
    assert queued == []
