"""Web Push through pywebpush against a real HTTP server on the loopback standing in for a
push service: the request is VAPID-signed and its body encrypted for the subscription
(aes128gcm); gone subscriptions (404, 410) are removed; 5xx is retried."""

import base64
import json
import uuid

import http_ece
import pytest
from prometheus_client import REGISTRY

from notifications.channels.webpush import vapid_application_server_key
from notifications.models import Notification, PushSubscription
from notifications.services import OrderChangeNotice, notification_preferences_update
from notifications.services import notifications_create_for_order_changes as create
from notifications.tasks import notification_deliver
from orders.events import OrderStatusChangedV1
from testing.factories import (
    BrowserPushKeys,
    customer_create,
    push_subscription_at,
    vapid_private_key,
)

pytestmark = pytest.mark.django_db

WEBPUSH = "notifications.channels.webpush.WebPushChannel"
SUBJECT = "mailto:ops@example.com"


def _b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.fixture
def push_service(http_stub, channels):  # type: ignore[no-untyped-def]
    """Start a push service answering with `statuses`, then `default` (201); the push
    channel sends through pywebpush with a fresh VAPID key."""
    servers = []

    def start(*statuses: int, default: int = 201):  # type: ignore[no-untyped-def]
        server = http_stub(statuses, default=default, body=b"").__enter__()
        servers.append(server)
        channels(
            push={"BACKEND": WEBPUSH, "MAX_RETRIES": 2},
            WEBPUSH={"VAPID_PRIVATE_KEY": vapid_private_key(), "VAPID_SUBJECT": SUBJECT},
        )
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def _push_notification(*endpoints: str) -> tuple[Notification, list[BrowserPushKeys]]:
    """A customer on push only, subscribed at `endpoints`, and their pending push."""
    customer = customer_create()
    keys = [push_subscription_at(customer, endpoint)[1] for endpoint in endpoints]
    notification_preferences_update(
        customer=customer, email_enabled=False, sms_enabled=False, push_enabled=True
    )
    change = OrderStatusChangedV1(
        order_id=uuid.uuid4(), customer_id=customer.pk, previous_status="reserved", status="paid"
    )
    ((notification,),) = create(notices=[OrderChangeNotice(change, uuid.uuid4())])
    assert notification.channel == Notification.Channel.PUSH
    return notification, keys


def test_a_push_is_vapid_signed_and_encrypted_for_the_subscription(push_service):
    # Given a push service and a customer subscribed there
    server = push_service()
    notification, (keys,) = _push_notification(f"{server.url}/push/abc")

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then one POST reached the subscription's endpoint
    assert result.get() == "sent"
    [request] = server.received()
    assert request.path == "/push/abc"
    # signed with VAPID: a JWT for the push service's origin, and our public key
    scheme, _, credentials = request.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in credentials.split(","))
    assert fields["k"] == vapid_application_server_key()
    claims = _b64url_json(fields["t"].split(".")[1])
    assert (claims["aud"], claims["sub"]) == (server.url, SUBJECT)
    # its body encrypted for the browser (RFC 8291), which alone can read the payload
    assert request.headers["content-encoding"] == "aes128gcm"
    assert int(request.headers["ttl"]) == 24 * 3600
    assert b"Payment received" not in request.body
    plain = http_ece.decrypt(
        request.body, private_key=keys.private_key, auth_secret=keys.auth_secret
    )
    assert json.loads(plain) == {
        "title": notification.subject,
        "body": notification.body,
        "kind": "payment_received",
        "order_id": str(notification.order_id),
    }
    notification.refresh_from_db()
    assert (notification.status, notification.recipient) == ("sent", "1 push subscription(s)")


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_removed_and_the_push_fails(push_service, status):
    # Given a push service that says the subscription is gone
    server = push_service(default=status)
    notification, _ = _push_notification(f"{server.url}/push/gone")
    gone_before = REGISTRY.get_sample_value(
        "notification_sends_total", {"channel": "push", "outcome": "gone"}
    )

    # When the delivery task runs
    result = notification_deliver.apply(args=[notification.id])

    # Then it was tried once, the subscription is removed, and the push failed for good
    assert result.get() == "failed"
    assert len(server.received()) == 1
    assert not PushSubscription.objects.exists()
    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.error == f"push service answered {status}: subscription removed"
    gone = REGISTRY.get_sample_value(
        "notification_sends_total", {"channel": "push", "outcome": "gone"}
    )
    assert gone - gone_before == 1


def test_a_push_goes_to_every_subscription_and_only_gone_ones_are_removed(push_service):
    # Given two subscriptions, the first of which the push service has dropped
    server = push_service(410)
    notification, _ = _push_notification(f"{server.url}/push/old", f"{server.url}/push/new")

    result = notification_deliver.apply(args=[notification.id])

    # Then the push was sent to the other, and only the gone one is removed
    assert result.get() == "sent"
    assert [r.path for r in server.received()] == ["/push/old", "/push/new"]
    assert [s.endpoint for s in PushSubscription.objects.all()] == [f"{server.url}/push/new"]


def test_a_push_service_error_is_retried_then_sent(push_service):
    server = push_service(503)
    notification, _ = _push_notification(f"{server.url}/push/abc")

    result = notification_deliver.apply(args=[notification.id])

    assert result.get() == "sent"
    assert len(server.received()) == 2
    assert PushSubscription.objects.count() == 1
