"""The HTTP SMS backend against a real HTTP server on the loopback, through the delivery
task: the request it makes, retries on 5xx, no retry on a refusal.

Tasks run in this process with `.apply()`: Celery runs each retry inline at once (the
countdown is ignored), so a notification that keeps failing runs 1 + MAX_RETRIES times."""

import base64
import uuid

import pytest
from prometheus_client import REGISTRY

from notifications.models import Notification
from notifications.services import OrderChangeNotice, notification_preferences_update
from notifications.services import notifications_create_for_order_changes as create
from notifications.tasks import notification_deliver
from orders.events import OrderStatusChangedV1
from testing.factories import customer_create
from tools.localservices import free_port

pytestmark = pytest.mark.django_db

PHONE = "+4915112345678"
HTTP_SMS = "notifications.channels.sms.HttpSmsChannel"


def _sms_notification() -> Notification:
    customer = customer_create()
    notification_preferences_update(
        customer=customer,
        email_enabled=False,
        sms_enabled=True,
        push_enabled=False,
        phone_number=PHONE,
    )
    change = OrderStatusChangedV1(
        order_id=uuid.uuid4(), customer_id=customer.pk, previous_status="reserved", status="paid"
    )
    ((notification,),) = create(notices=[OrderChangeNotice(change, uuid.uuid4())])
    assert notification.channel == Notification.Channel.SMS
    return notification


def _sends(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "notification_sends_total", {"channel": "sms", "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
def provider(http_stub, channels):  # type: ignore[no-untyped-def]
    """Start an SMS provider answering with `statuses`, then 200; point the SMS channel at
    it with a bearer token."""
    servers = []

    def start(*statuses: int, default: int = 200, **sms: object):  # type: ignore[no-untyped-def]
        server = http_stub(statuses, default=default, body=b'{"id": "msg-42"}').__enter__()
        servers.append(server)
        channels(
            sms={"BACKEND": HTTP_SMS, "MAX_RETRIES": 3},
            SMS={
                "PROVIDER_URL": f"{server.url}/v1/messages",
                "PROVIDER_TOKEN": "sms-secret-token",
                "FROM": "Shop",
                **sms,
            },
        )
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def test_an_sms_is_one_json_post_with_the_bearer_token(provider):
    # Given a provider that takes messages, and a customer's pending SMS
    server = provider()
    notification = _sms_notification()

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it POSTed one JSON message with our token and an idempotency key
    assert result.get() == "sent"
    [request] = server.received()
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == "Bearer sms-secret-token"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == f"notification-{notification.id}"
    assert request.json() == {
        "from": "Shop",
        "to": PHONE,
        "text": notification.body,
        "reference": f"notification-{notification.id}",
    }
    notification.refresh_from_db()
    assert (notification.status, notification.recipient) == ("sent", PHONE)


def test_basic_auth_when_no_token_is_set(provider):
    server = provider(PROVIDER_TOKEN="", PROVIDER_USERNAME="shop", PROVIDER_PASSWORD="pw")

    notification_deliver.apply(args=[_sms_notification().id])

    [request] = server.received()
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"shop:pw").decode()


def test_a_provider_error_is_retried_then_sent(provider):
    # Given a provider that fails with 500 once, then takes the message
    server = provider(500)
    notification = _sms_notification()
    errors, sent = _sends("error"), _sends("sent")

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then the same message was posted twice and the second attempt sent it
    assert result.get() == "sent"
    first, second = server.received()
    assert first.json() == second.json()
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.error) == ("sent", 2, "")
    # And each call is counted by its outcome
    assert (_sends("error") - errors, _sends("sent") - sent) == (1, 1)


def test_a_provider_that_keeps_failing_is_given_up_after_the_channels_retries(provider):
    server = provider(default=503)
    notification = _sms_notification()

    result = notification_deliver.apply(args=[notification.id])

    assert result.get() == "failed"
    assert len(server.received()) == 1 + 3  # MAX_RETRIES of the SMS channel
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.error.startswith("ChannelUnavailable: SMS provider answered 503")


def test_a_refused_message_fails_at_once(provider):
    # Given a provider that refuses the message (an invalid number, say)
    server = provider(default=422)
    notification = _sms_notification()

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it was tried once and failed, with the provider's answer kept
    assert result.get() == "failed"
    assert len(server.received()) == 1
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.error.startswith("SMS provider answered 422")


def test_an_unreachable_provider_is_retried(channels):
    # Given a provider URL nobody listens on
    channels(
        sms={"BACKEND": HTTP_SMS, "MAX_RETRIES": 1},
        SMS={"PROVIDER_URL": f"http://127.0.0.1:{free_port()}/", "TIMEOUT_SECONDS": 2.0},
    )
    notification = _sms_notification()

    result = notification_deliver.apply(args=[notification.id])

    assert result.get() == "failed"
    notification.refresh_from_db()
    assert notification.attempts == 2
    assert "SMS provider unreachable" in notification.error


def test_a_provider_down_costs_a_batch_one_attempt_and_hands_the_rest_to_retries(
    provider, monkeypatch
):
    # Given a provider that is down, three pending SMS in one batch, and the retry tasks
    # they are handed to recorded instead of queued
    from notifications.tasks import notifications_deliver

    server = provider(default=503)
    ids = [_sms_notification().id for _ in range(3)]
    handed: list[tuple[int, int]] = []
    monkeypatch.setattr(
        notification_deliver,
        "apply_async",
        lambda args, countdown, retries=0: handed.append((args[0], retries)),
    )

    # When the batch task runs
    notifications_deliver.apply(args=[ids])

    # Then only the first was tried; it goes on as a first retry, the others untried
    assert len(server.received()) == 1
    assert handed == [(ids[0], 1), (ids[1], 0), (ids[2], 0)]
    assert set(Notification.objects.values_list("status", flat=True)) == {"pending"}
