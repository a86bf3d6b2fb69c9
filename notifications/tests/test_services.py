"""Notification services: one notification per order transition, rendered from templates;
sending, marking failed and resending."""

import smtplib
import uuid

import pytest
from django.core import mail

from notifications.delivery import (
    NotificationNotDeliverable,
    notification_mark_failed,
    notification_send,
)
from notifications.models import Notification
from notifications.services import (
    KIND_BY_ORDER_STATUS,
    notification_create_for_order_change,
    notification_resend,
)
from orders.events import OrderStatusChangedV1
from testing.factories import customer_create

pytestmark = pytest.mark.django_db


def _change(customer, status: str, **fields: object) -> OrderStatusChangedV1:  # type: ignore[no-untyped-def]
    return OrderStatusChangedV1(
        order_id=fields.pop("order_id", uuid.uuid4()),
        customer_id=customer.pk,
        previous_status=fields.pop("previous_status", "paid"),
        status=status,
        **fields,
    )


def _notification(status: str = "reserved", customer=None, **fields: object) -> Notification:  # type: ignore[no-untyped-def]
    notification = notification_create_for_order_change(
        change=_change(customer or customer_create(), status, **fields), event_id=uuid.uuid4()
    )
    assert notification is not None
    return notification


@pytest.fixture
def queued(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The task-queue seam: record what would be sent to Celery instead of sending it."""
    calls: list[int] = []
    monkeypatch.setattr(
        "notifications.tasks.notifications_deliver.delay", lambda ids: calls.extend(ids)
    )
    return calls


# --- notification_create_for_order_change ------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), sorted(KIND_BY_ORDER_STATUS.items()))
def test_each_customer_visible_transition_makes_one_rendered_notification(status, kind):
    # Given a customer and a transition of one of their orders
    customer = customer_create()
    order_id = uuid.uuid4()
    event_id = uuid.uuid4()

    # When the notification for it is created
    notification = notification_create_for_order_change(
        change=_change(customer, status, order_id=order_id), event_id=event_id
    )

    # Then one pending e-mail of the matching kind is rendered for that customer
    assert notification is not None
    assert Notification.objects.count() == 1
    notification.refresh_from_db()
    assert notification.kind == kind
    assert notification.customer == customer
    assert notification.order_id == order_id
    assert notification.event_id == event_id
    assert notification.channel == Notification.Channel.EMAIL
    assert notification.status == Notification.Status.PENDING
    assert str(order_id)[:8] in notification.subject
    assert "\n" not in notification.subject
    assert "{" not in notification.subject + notification.body
    assert notification.body.startswith(f"Hello {customer.username},")
    assert str(order_id) in notification.body


def test_shipped_notification_names_the_carrier_and_tracking_number():
    notification = _notification("shipped", tracking_number="TRKABC123DEF456", carrier="UPS")

    assert notification.kind == Notification.Kind.SHIPPED
    assert "TRKABC123DEF456" in notification.body
    assert "UPS" in notification.body


def test_cancelled_notification_gives_the_reason():
    notification = _notification("cancelled", reason="cancelled by customer")

    assert notification.kind == Notification.Kind.CANCELLED
    assert "(cancelled by customer)" in notification.body


def test_plain_text_body_keeps_special_characters_of_the_reason():
    # Given a rejection whose reason names a SKU with an ampersand and an apostrophe
    reason = "out_of_stock: R&D-1, O'NEIL-2"

    # When the notification is rendered
    notification = _notification("rejected", reason=reason)

    # Then the plain-text body shows the reason as it is, not HTML-escaped
    assert reason in notification.body


def test_same_event_returns_the_same_notification():
    # Given a notification made for an event
    customer = customer_create()
    change = _change(customer, "paid")
    event_id = uuid.uuid4()
    first = notification_create_for_order_change(change=change, event_id=event_id)

    # When the same event is delivered again
    second = notification_create_for_order_change(change=change, event_id=event_id)

    # Then the first notification is returned and no second one exists
    assert first is not None and second is not None
    assert second.id == first.id
    assert Notification.objects.count() == 1


@pytest.mark.parametrize("status", ["pending", "unknown_status"])
def test_transition_without_a_notification_kind_makes_none(status):
    result = notification_create_for_order_change(
        change=_change(customer_create(), status), event_id=uuid.uuid4()
    )

    assert result is None
    assert not Notification.objects.exists()


def test_delivery_is_queued_only_after_commit(queued, django_capture_on_commit_callbacks):
    # Given the task queue is recorded
    # When a notification is created inside a transaction that commits
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notification = _notification("paid")

        # Then nothing is queued before the commit
        assert queued == []
    for callback in callbacks:
        callback()

    # And exactly its delivery is queued after it
    assert queued == [notification.id]


def test_broker_down_at_commit_leaves_the_notification_pending(
    monkeypatch, django_capture_on_commit_callbacks
):
    # Given a task queue that cannot be reached
    def broker_down(ids: list[int]) -> None:
        raise ConnectionError("broker unavailable")

    monkeypatch.setattr("notifications.tasks.notifications_deliver.delay", broker_down)

    # When a notification is created and its transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        notification = _notification("paid")

    # Then no error escapes and the notification waits, pending, for the sweep
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PENDING


# --- notification_send -------------------------------------------------------------------


def test_send_emails_the_customer_and_marks_sent(settings):
    # Given a pending notification
    notification = _notification("paid")

    # When it is sent
    result = notification_send(notification_id=notification.id)

    # Then one e-mail with its subject and body went to the customer
    assert result is not None
    [message] = mail.outbox
    assert message.to == [notification.customer.email]
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert (message.subject, message.body) == (notification.subject, notification.body)
    # And it is marked sent, once attempted
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.sent_at is not None
    assert notification.attempts == 1


def test_send_of_a_sent_notification_sends_nothing():
    notification = _notification("paid")
    notification_send(notification_id=notification.id)

    again = notification_send(notification_id=notification.id)

    assert again is not None and again.status == Notification.Status.SENT
    assert len(mail.outbox) == 1


def test_send_of_an_unknown_notification_returns_none():
    assert notification_send(notification_id=987654321) is None
    assert mail.outbox == []


def test_send_to_a_customer_without_address_raises_not_deliverable():
    customer = customer_create()
    customer.email = ""
    customer.save()
    notification = _notification("paid", customer=customer)

    with pytest.raises(NotificationNotDeliverable):
        notification_send(notification_id=notification.id)

    assert mail.outbox == []
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PENDING


def test_a_failed_send_is_still_counted_as_an_attempt(monkeypatch):
    # Given a mail server that refuses the message
    def refuse(*args: object, **kwargs: object) -> None:
        raise smtplib.SMTPException("mail server down")

    monkeypatch.setattr("notifications.channels.email.send_mail", refuse)
    notification = _notification("paid")

    # When sending is attempted
    with pytest.raises(smtplib.SMTPException):
        notification_send(notification_id=notification.id)

    # Then the attempt is counted
    notification.refresh_from_db()
    assert notification.attempts == 1


# --- notification_mark_failed ------------------------------------------------------------


def test_mark_failed_keeps_the_error_but_never_touches_a_sent_notification():
    # Given a pending and a sent notification
    pending = _notification("paid")
    sent = _notification("paid")
    notification_send(notification_id=sent.id)

    # When both are marked failed
    notification_mark_failed(notification_id=pending.id, error="SMTPException: down")
    notification_mark_failed(notification_id=sent.id, error="SMTPException: down")

    # Then only the pending one failed, with its error kept
    pending.refresh_from_db()
    sent.refresh_from_db()
    assert (pending.status, pending.error) == ("failed", "SMTPException: down")
    assert (sent.status, sent.error) == ("sent", "")


# --- notification_resend -----------------------------------------------------------------


def test_resend_requeues_failed_notifications_and_leaves_sent_ones(
    queued, django_capture_on_commit_callbacks
):
    # Given a failed and a sent notification
    failed = _notification("paid")
    notification_mark_failed(notification_id=failed.id, error="SMTPException: down")
    sent = _notification("paid")
    notification_send(notification_id=sent.id)
    queued.clear()

    # When staff resend both
    with django_capture_on_commit_callbacks(execute=True):
        count = notification_resend(notification_ids=[failed.id, sent.id])

    # Then only the failed one is pending again, error cleared, and queued after commit
    assert count == 1
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.error) == (Notification.Status.PENDING, "")
    assert sent.status == Notification.Status.SENT
    assert queued == [failed.id]


def test_resend_of_nothing_resendable_queues_nothing(queued, django_capture_on_commit_callbacks):
    sent = _notification("paid")
    notification_send(notification_id=sent.id)

    with django_capture_on_commit_callbacks(execute=True):
        count = notification_resend(notification_ids=[sent.id, 987654321])

    assert count == 0
    assert queued == []
