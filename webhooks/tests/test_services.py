"""Deliveries recorded from order events, claimed in order and within the per-endpoint cap,
and moved by each attempt's outcome (retries, giving up, the failure streak)."""

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from kafka_bridge.contracts import Envelope, Event
from orders.events import OrderStatusChangedV1
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import order_event_message
from webhooks.sending import AttemptOutcome
from webhooks.services import (
    webhook_attempts_record,
    webhook_deliveries_claim,
    webhook_deliveries_record,
    webhook_endpoint_create,
)
from webhooks.status import DeliveryStatus, EndpointStatus

pytestmark = pytest.mark.django_db


def _event(order_id: uuid.UUID, status: str) -> Event:
    payload = OrderStatusChangedV1(
        order_id=order_id, customer_id=1, previous_status="pending", status=status
    )
    envelope = Envelope(
        event_id=uuid.uuid4(),
        event_type=f"orders.{status}",
        schema_version=1,
        occurred_at=datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        correlation_id="c",
        aggregate_id=str(order_id),
        data=payload.model_dump(mode="json"),
    )
    return Event(envelope=envelope, payload=payload)


def _endpoint(event_types: list[str]) -> WebhookEndpoint:
    return webhook_endpoint_create(url="https://hooks.example.com/x", event_types=event_types)


def _outcome(delivery: WebhookDelivery, ok: bool, attempt: int = 1) -> AttemptOutcome:
    now = datetime.now(UTC)
    return AttemptOutcome(
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        attempt=attempt,
        started_at=now,
        finished_at=now,
        outcome="success" if ok else "http_error",
        status_code=204 if ok else 503,
        duration_ms=3.0,
        error="" if ok else "HTTP 503: busy",
    )


def test_each_event_is_recorded_once_per_subscribed_active_endpoint():
    # Given three endpoints: all events, orders.paid only, and a disabled one
    everything, paid_only, disabled = _endpoint(["*"]), _endpoint(["orders.paid"]), _endpoint(["*"])
    WebhookEndpoint.objects.filter(id=disabled.id).update(status=EndpointStatus.DISABLED)
    order = uuid.uuid4()
    events = [_event(order, "reserved"), _event(order, "paid")]

    # When the batch is recorded, twice (a redelivery)
    for _ in range(2):
        webhook_deliveries_record(messages=[order_event_message(e) for e in events])

    # Then the first endpoint has both, the second the payment, the disabled one nothing
    rows = WebhookDelivery.objects.order_by("id")
    assert sorted((str(r.endpoint_id), r.event_type) for r in rows) == sorted(
        [
            (str(everything.id), "orders.reserved"),
            (str(everything.id), "orders.paid"),
            (str(paid_only.id), "orders.paid"),
        ]
    )
    # in event order per endpoint (ids order an order's deliveries)
    assert [r.event_type for r in rows.filter(endpoint=everything)] == [
        "orders.reserved",
        "orders.paid",
    ]
    rows = list(rows.filter(event_type="orders.paid"))
    body = rows[0].body
    assert body.startswith('{"type":"orders.paid","timestamp":"2026-12-05T10:00:00Z","data":{')
    assert f'"order_id":"{order}"' in body and f'"event_id":"{events[1].event_id}"' in body
    assert rows[0].message_id == rows[1].message_id == f"msg_{events[1].event_id.hex}"


def test_a_later_event_of_an_order_waits_for_the_earlier_one(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "MAX_IN_FLIGHT_PER_ENDPOINT": 10}
    _endpoint(["*"])
    first, second = uuid.uuid4(), uuid.uuid4()
    events = [_event(first, "reserved"), _event(second, "reserved"), _event(first, "paid")]
    webhook_deliveries_record(messages=[order_event_message(e) for e in events])

    claims = webhook_deliveries_claim(limit=10, in_flight={}, lease_seconds=30)

    # Only the first event of each order; the claimed ones are leased
    assert [c.message_id for c in claims] == [
        f"msg_{events[0].event_id.hex}",
        f"msg_{events[1].event_id.hex}",
    ]
    assert webhook_deliveries_claim(limit=10, in_flight={}, lease_seconds=30) == []
    # Once the first is delivered, the order's next is due
    delivery = WebhookDelivery.objects.get(event_id=events[0].event_id)
    webhook_attempts_record(outcomes=[_outcome(delivery, ok=True)])
    (claim,) = webhook_deliveries_claim(limit=10, in_flight={}, lease_seconds=30)
    assert claim.message_id == f"msg_{events[2].event_id.hex}"


def test_claims_respect_the_per_endpoint_cap(settings):
    settings.WEBHOOKS = {**settings.WEBHOOKS, "MAX_IN_FLIGHT_PER_ENDPOINT": 2}
    busy, idle = _endpoint(["*"]), _endpoint(["*"])
    events = [_event(uuid.uuid4(), "reserved") for _ in range(5)]
    webhook_deliveries_record(messages=[order_event_message(e) for e in events])

    claims = webhook_deliveries_claim(limit=10, in_flight={busy.id: 1}, lease_seconds=30)

    per_endpoint = [c.endpoint_id for c in claims]
    assert per_endpoint.count(busy.id) == 1 and per_endpoint.count(idle.id) == 2


def test_failures_retry_on_the_schedule_then_fail_and_disable_the_endpoint(settings):
    settings.WEBHOOKS = {
        **settings.WEBHOOKS,
        "RETRY_SCHEDULE_SECONDS": [5.0, 300.0],
        "RETRY_JITTER": 0.2,
        "DISABLE_AFTER_FAILURES": 3,
        "DISABLE_AFTER_SECONDS": 3600.0,
    }
    endpoint = _endpoint(["*"])
    webhook_deliveries_record(messages=[order_event_message(_event(uuid.uuid4(), "paid"))])
    delivery = WebhookDelivery.objects.get()

    # The first failure: due again in 5 s ±20%
    recorded = webhook_attempts_record(outcomes=[_outcome(delivery, ok=False, attempt=1)])
    delivery.refresh_from_db()
    assert recorded.retrying == 1 and delivery.status == DeliveryStatus.PENDING
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 3.5 < wait <= 6.0
    # The second: 300 s ±20%
    webhook_attempts_record(outcomes=[_outcome(delivery, ok=False, attempt=2)])
    delivery.refresh_from_db()
    assert 230 < (delivery.next_attempt_at - timezone.now()).total_seconds() <= 360
    # The third: the schedule has run out, the delivery fails
    recorded = webhook_attempts_record(outcomes=[_outcome(delivery, ok=False, attempt=3)])
    delivery.refresh_from_db()
    assert recorded.failed == 1 and delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == 503 and delivery.attempts == 3
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 3
    # Three in a row, but for less than an hour: still active
    endpoint.refresh_from_db()
    assert endpoint.status == EndpointStatus.ACTIVE and endpoint.consecutive_failures == 3
    # Once the streak is older than an hour, the next failure disables it
    WebhookEndpoint.objects.filter(id=endpoint.id).update(
        failing_since=timezone.now() - timedelta(hours=2)
    )
    webhook_deliveries_record(messages=[order_event_message(_event(uuid.uuid4(), "paid"))])
    later = WebhookDelivery.objects.exclude(id=delivery.id).get()
    recorded = webhook_attempts_record(outcomes=[_outcome(later, ok=False)])
    assert recorded.disabled_endpoints == [endpoint.id]
    # A success ends a streak
    WebhookEndpoint.objects.filter(id=endpoint.id).update(status=EndpointStatus.ACTIVE)
    webhook_attempts_record(outcomes=[_outcome(later, ok=True, attempt=2)])
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0 and endpoint.failing_since is None


def test_the_secret_is_never_logged(caplog):
    with caplog.at_level(logging.DEBUG):
        endpoint = _endpoint(["*"])

    assert endpoint.secret.startswith("whsec_")
    assert endpoint.secret not in caplog.text
    assert endpoint.secret not in str(endpoint) + repr(endpoint)
