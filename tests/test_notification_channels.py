"""Notifications on every channel through the real pipeline: the relay, the saga's
consumers and a Celery worker (real broker, Redis and PostgreSQL). One order of a customer
on e-mail, SMS and push is one delivery per channel and transition; a failing SMS provider
leaves e-mail and push delivered and the order paid."""

import pytest

from notifications.models import Notification, RecordedMessage
from notifications.services import notification_preferences_update
from testing.factories import (
    customer_create,
    order_place_via_api,
    product_with_stock,
    push_subscription_register_for,
)
from testing.http_stub import HttpStub
from testing.metrics import Scraper
from testing.polling import wait_until
from testing.saga import wait_for_status
from tools.localservices import free_port
from tools.supervisor import SAGA_CONSUMERS

pytestmark = pytest.mark.integration

K = Notification.Kind
RECORDING = "notifications.channels.recording.RecordingChannel"
PHONE = "+4915112345678"


def _customer_on_every_channel():  # type: ignore[no-untyped-def]
    customer = customer_create()
    subscription, _ = push_subscription_register_for(customer)
    notification_preferences_update(
        customer=customer,
        email_enabled=True,
        sms_enabled=True,
        push_enabled=True,
        phone_number=PHONE,
    )
    return customer, subscription


def _settled(order_id: str, count: int) -> list[Notification]:
    """The order's notifications once there are `count` and none is pending any more."""
    rows = list(Notification.objects.filter(order_id=order_id))
    done = len(rows) == count and all(n.status != Notification.Status.PENDING for n in rows)
    return rows if done else []


def test_an_order_is_one_delivery_per_channel_and_transition(pipeline):
    # Given the saga's workers and a Celery worker whose every channel records (e-mail
    # too), serving its metrics
    port = free_port()
    pipeline.relay()
    pipeline.consumers(SAGA_CONSUMERS)
    pipeline.celery_worker(
        NOTIFICATIONS_EMAIL_BACKEND=RECORDING, METRICS_PORT=str(port), METRICS_ADDR="127.0.0.1"
    )
    customer, subscription = _customer_on_every_channel()
    product = product_with_stock(on_hand=5)

    # When the customer places an order and it is paid
    order_id = order_place_via_api(customer, product.sku)
    wait_for_status(order_id, "paid", timeout=60)

    # Then each of its two transitions was sent once on each channel
    notifications = wait_until(
        lambda: _settled(order_id, 6), timeout=60, message="six notifications settled"
    )
    assert {(n.kind, n.channel, n.status) for n in notifications} == {
        (kind, channel, "sent")
        for kind in (K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
        for channel in ("email", "sms", "push")
    }
    # And the recording backends hold exactly one message per notification, to the
    # customer's address, number and push endpoint
    recorded = RecordedMessage.objects.filter(notification__order_id=order_id)
    assert sorted(recorded.values_list("notification_id", flat=True)) == sorted(
        n.id for n in notifications
    )
    assert {(m.channel, m.recipient) for m in recorded} == {
        ("email", customer.email),
        ("sms", PHONE),
        ("push", subscription.endpoint),
    }
    push = recorded.filter(channel="push").first()
    assert push is not None and push.payload["order_id"] == order_id
    # And the worker counted two sends per channel
    metrics = Scraper(port)
    for channel in ("email", "sms", "push"):
        metrics.wait_for("notification_sends_total", 2, channel=channel, outcome="sent")


def test_a_failing_sms_provider_leaves_email_and_push_delivered_and_the_order_paid(pipeline):
    with HttpStub(default=500) as provider:
        # Given a Celery worker whose SMS provider answers every message with 500 (two
        # quick retries), e-mail by Django's console backend and push recorded
        pipeline.relay()
        pipeline.consumers(SAGA_CONSUMERS)
        pipeline.celery_worker(
            NOTIFICATIONS_SMS_BACKEND="notifications.channels.sms.HttpSmsChannel",
            SMS_PROVIDER_URL=f"{provider.url}/messages",
            SMS_PROVIDER_TOKEN="sms-secret-token",
            NOTIFICATIONS_SMS_MAX_RETRIES="2",
            NOTIFICATIONS_SMS_BACKOFF_SECONDS="0.2",
        )
        customer, _ = _customer_on_every_channel()
        product = product_with_stock(on_hand=5)

        # When the customer places an order
        order_id = order_place_via_api(customer, product.sku)

        # Then the order is paid, whatever the SMS provider does
        wait_for_status(order_id, "paid", timeout=60)
        # And e-mail and push were delivered while each SMS was tried 1 + 2 times and
        # given up, keeping the provider's answer
        notifications = wait_until(
            lambda: _settled(order_id, 6), timeout=60, message="six notifications settled"
        )
        by_channel = {(n.kind, n.channel): n for n in notifications}
        for kind in (K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED):
            assert by_channel[kind, "email"].status == "sent"
            assert by_channel[kind, "push"].status == "sent"
            sms = by_channel[kind, "sms"]
            assert (sms.status, sms.attempts) == ("failed", 3)
            assert "SMS provider answered 500" in sms.error
        assert len(provider.received()) == 2 * 3
