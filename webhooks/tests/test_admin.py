"""The webhooks admin: staff register an endpoint (the secret shown once, never again),
see deliveries and their attempts, and re-enable endpoints."""

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.payloads import OrderEventMessage
from webhooks.sending import AttemptOutcome
from webhooks.services import webhook_attempts_record, webhook_deliveries_record
from webhooks.status import EndpointStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_superuser("boss", password="x-test-password-1")
    client = Client()
    client.force_login(user)
    return client


def test_register_in_the_admin_shows_the_secret_once(staff_client: Client, refuse_private):
    add = reverse("admin:webhooks_webhookendpoint_add")

    refused = staff_client.post(add, {"url": "http://hooks.example.com/", "event_types": ["*"]})
    assert "must use https://" in refused.content.decode()

    response = staff_client.post(
        add,
        {"url": "https://hooks.example.com/x", "event_types": ["orders.paid"]},
        follow=True,
    )
    endpoint = WebhookEndpoint.objects.get()
    page = response.content.decode()
    assert endpoint.secret in page and "it is not shown again" in page
    assert endpoint.event_types == ["orders.paid"]

    change = staff_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    listing = staff_client.get(reverse("admin:webhooks_webhookendpoint_changelist"))
    assert change.status_code == listing.status_code == 200
    assert endpoint.secret not in change.content.decode() + listing.content.decode()


def test_deliveries_show_their_attempts_and_endpoints_are_re_enabled(staff_client: Client):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/", event_types=["*"])
    order_id = uuid.uuid4()
    message = OrderEventMessage(
        event_id=uuid.uuid4(),
        event_type="orders.paid",
        order_id=order_id,
        occurred_at=datetime.now(UTC),
        data={"order_id": str(order_id), "status": "paid"},
    )
    webhook_deliveries_record(messages=[message])
    delivery = WebhookDelivery.objects.get()
    now = datetime.now(UTC)
    webhook_attempts_record(
        outcomes=[
            AttemptOutcome(
                delivery_id=delivery.id,
                endpoint_id=endpoint.id,
                attempt=1,
                started_at=now,
                finished_at=now,
                outcome="http_error",
                status_code=502,
                duration_ms=41.0,
                error="HTTP 502: bad gateway",
            )
        ]
    )
    WebhookEndpoint.objects.filter(id=endpoint.id).update(status=EndpointStatus.DISABLED)

    page = staff_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    attempts = staff_client.get(reverse("admin:webhooks_webhookattempt_changelist"))
    assert "HTTP 502: bad gateway" in page.content.decode()
    assert "502" in attempts.content.decode() and attempts.status_code == 200

    staff_client.post(
        reverse("admin:webhooks_webhookendpoint_changelist"),
        {"action": "enable", ACTION_CHECKBOX_NAME: [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    assert endpoint.status == EndpointStatus.ACTIVE and endpoint.consecutive_failures == 0
