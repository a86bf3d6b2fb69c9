"""Webhooks through the real pipeline: orders placed over the API, the saga driven by the
real relay and consumers on the real broker, Redis and PostgreSQL, the webhooks consumer
recording deliveries and the real `run_webhook_dispatcher` sending them to receivers on
127.0.0.1 that verify every signature with the `standardwebhooks` library."""

import uuid
from collections import Counter, defaultdict

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from kafka_bridge.models import OutboxEvent
from orders.services import order_cancel, order_deliver, order_ship
from testing.factories import (
    api_client_for,
    customer_create,
    order_place_via_api,
    product_with_stock,
    staff_create,
)
from testing.metrics import Scraper
from testing.polling import wait_until
from testing.saga import wait_for_status
from tools.localservices import free_port
from tools.supervisor import Supervisor
from tools.webhook_receiver import WebhookReceiver
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import SUBSCRIBABLE_EVENT_TYPES
from webhooks.status import DeliveryStatus, EndpointStatus

pytestmark = pytest.mark.integration

# Short retries for tests: five retries 0.2 s apart (±20%), then the delivery fails.
DISPATCHER_ENV = {
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    "WEBHOOKS_POLL_INTERVAL_SECONDS": "0.1",
    "WEBHOOKS_RETRY_SCHEDULE_SECONDS": "0.2,0.2,0.2,0.2,0.2",
}


def _start(pipeline: Supervisor, **env: str) -> None:
    """What these tests need: the relay, the saga's stock and order groups, the webhooks
    consumer and a dispatcher (no e-mails, no read side)."""
    pipeline.relay()
    pipeline.consumers(["inventory", "orders", "webhooks"])
    pipeline.webhook_dispatcher(**{**DISPATCHER_ENV, **env})


def _register(receiver: WebhookReceiver, event_types: list[str]) -> str:
    """Register the receiver's URL through the staff API; give it the secret answered."""
    staff = api_client_for(staff_create(f"staff-{uuid.uuid4().hex[:6]}"))
    response = staff.post(
        "/api/webhooks/", {"url": receiver.url, "event_types": event_types}, format="json"
    )
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()["id"]


def _order_events(order_id: str) -> list[tuple[str, str]]:
    """(webhook-id, event type) of every subscribable event of the order, in event order."""
    rows = OutboxEvent.objects.filter(
        aggregate_id=order_id, event_type__in=SUBSCRIBABLE_EVENT_TYPES
    ).order_by("id")
    return [(f"msg_{row.event_id.hex}", row.event_type) for row in rows]


def _accepted_by_order(receiver: WebhookReceiver) -> dict[str, list[tuple[str, str]]]:
    by_order: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in receiver.accepted():
        by_order[record.order_id].append((record.message_id, record.event_type))
    return by_order


@pytest.fixture
def receivers():  # type: ignore[no-untyped-def]
    started: list[WebhookReceiver] = []

    def start(**options: object) -> WebhookReceiver:
        started.append(WebhookReceiver(**options).start())  # type: ignore[arg-type]
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


def test_every_order_event_arrives_once_signed_and_in_order(
    pipeline: Supervisor, receivers, allow_private
):
    # Given an endpoint for every order event whose first 3 attempts fail, and one for
    # orders.paid only
    everything = receivers(fail_first=3)
    paid_only = receivers()
    everything_id = _register(everything, ["*"])
    _register(paid_only, ["orders.paid"])
    metrics_port = free_port()
    _start(pipeline, METRICS_PORT=str(metrics_port))
    customer = customer_create()
    product = product_with_stock(on_hand=50)

    # When orders go through the saga: one shipped and delivered, one cancelled after
    # payment, one declined
    delivered = order_place_via_api(customer, product.sku, 2)
    cancelled = order_place_via_api(customer, product.sku, 1)
    declined = order_place_via_api(customer, product.sku, 1, payment_token="tok_decline")
    wait_for_status(delivered, "paid")
    order_ship(order_id=uuid.UUID(delivered))
    order_deliver(order_id=uuid.UUID(delivered))
    wait_for_status(cancelled, "paid")
    order_cancel(order_id=uuid.UUID(cancelled), actor="customer")
    wait_for_status(declined, "cancelled")
    expected = {order: _order_events(order) for order in (delivered, cancelled, declined)}
    assert [t for _, t in expected[delivered]] == [
        "orders.created",
        "orders.reserved",
        "orders.paid",
        "orders.shipped",
        "orders.delivered",
    ]
    assert [t for _, t in expected[declined]][-2:] == ["orders.payment_failed", "orders.cancelled"]

    # Then every event of every order is accepted by the "*" endpoint, verified, exactly
    # once, in event order per order
    wait_until(
        lambda: _accepted_by_order(everything) == expected,
        timeout=60,
        message=f"deliveries {dict(_accepted_by_order(everything))} == {expected}",
    )
    accepted = [record.message_id for record in everything.accepted()]
    assert Counter(accepted).most_common(1)[0][1] == 1
    assert all(record.verified for record in everything.all())
    # And its 3 failing attempts were answered 500 and logged as such, then retried
    assert [r.status for r in everything.all()][:3] == [500, 500, 500]
    failed = WebhookAttempt.objects.filter(
        delivery__endpoint_id=everything_id, outcome=WebhookAttempt.Outcome.HTTP_ERROR
    )
    assert sorted(failed.values_list("status_code", flat=True)) == [500, 500, 500]
    assert all(attempt.error.startswith("HTTP 500") for attempt in failed)
    assert all(attempt.duration_ms >= 0 for attempt in failed)
    # And the orders.paid endpoint got the two payments and nothing else
    paid = {
        order: [event for event in events if event[1] == "orders.paid"]
        for order, events in expected.items()
    }
    wait_until(
        lambda: _accepted_by_order(paid_only) == {k: v for k, v in paid.items() if v},
        timeout=30,
        message="orders.paid deliveries",
    )
    assert len(paid_only.all()) == 2
    # And the metrics say so
    total = sum(len(events) for events in expected.values()) + 2
    scraper = Scraper(metrics_port)
    scraper.wait_for("webhook_deliveries_total", total, outcome="delivered")
    assert scraper.value("webhook_attempts_total", outcome="http_error") == 3
    assert scraper.value("webhook_deliveries_pending") == 0
    assert scraper.value("webhook_attempt_duration_seconds_count") == total + 3
    # And a redelivered event (the consumer's group replayed) added no second delivery
    assert WebhookDelivery.objects.filter(endpoint_id=everything_id).count() == total - 2


def test_a_slow_endpoint_does_not_hold_up_a_fast_one(
    pipeline: Supervisor, receivers, allow_private
):
    # Given an endpoint that answers after 5 s, past the 3 s timeout, and a fast one; the
    # dispatcher sends 4 at a time, at most 2 to one endpoint
    slow = receivers(delay=5.0)
    fast = receivers()
    slow_id = _register(slow, ["*"])
    fast_id = _register(fast, ["*"])
    _start(
        pipeline,
        WEBHOOKS_TIMEOUT_SECONDS="3",
        WEBHOOKS_MAX_CONCURRENCY="4",
        WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT="2",
        WEBHOOKS_RETRY_SCHEDULE_SECONDS="0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
    )
    customer = customer_create()
    product = product_with_stock(on_hand=50)

    # When three orders are paid
    orders = [order_place_via_api(customer, product.sku, 1) for _ in range(3)]
    for order in orders:
        wait_for_status(order, "paid")

    # Then the fast endpoint gets every event (created, reserved, paid of each), in order,
    # while every attempt at the slow one times out
    expected = {order: _order_events(order) for order in orders}
    wait_until(lambda: _accepted_by_order(fast) == expected, timeout=60, message="fast")
    fast_deliveries = WebhookDelivery.objects.filter(endpoint_id=fast_id)
    # (the receiver answers before the dispatcher records the attempt)
    wait_until(
        lambda: not fast_deliveries.exclude(status="delivered").exists(),
        message="every fast delivery recorded as delivered",
    )
    assert {d.attempts for d in fast_deliveries} == {1}
    slow_attempts = WebhookAttempt.objects.filter(delivery__endpoint_id=slow_id)
    wait_until(slow_attempts.exists, message="an attempt at the slow endpoint recorded")
    assert set(slow_attempts.values_list("outcome", flat=True)) == {"timeout"}
    assert not WebhookDelivery.objects.filter(endpoint_id=slow_id, status="delivered").exists()
    # And no fast delivery waited for a slow attempt: each took less time from being
    # recorded to being delivered than any one slow attempt took to time out
    slowest_fast = max(d.delivered_at - d.created_at for d in fast_deliveries)
    quickest_slow = min(a.duration_ms for a in slow_attempts) / 1000
    assert slowest_fast.total_seconds() < quickest_slow, (slowest_fast, quickest_slow)
    # And the slow endpoint never had more than 2 requests in flight
    assert _most_at_once(slow.all(), 5.0) <= 2


def _most_at_once(records, duration: float) -> int:  # type: ignore[no-untyped-def]
    """The most requests that were being answered at one moment."""
    edges = sorted([(r.at, 1) for r in records] + [(r.at + duration, -1) for r in records])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def test_a_failing_endpoint_is_disabled_re_enabled_and_redelivered_from_the_admin(
    pipeline: Supervisor, receivers, allow_private
):
    # Given an endpoint that fails every request, disabled after 3 failed attempts in a row
    failing = receivers(fail_first=10**6)
    endpoint_id = _register(failing, ["*"])
    pipeline.relay()
    pipeline.consumers(["inventory", "orders", "webhooks"])
    customer = customer_create()
    product = product_with_stock(on_hand=50)

    # When an order is paid, its three events recorded for the endpoint, and then the
    # dispatcher starts (a disabled endpoint gets no new deliveries: recorded first, the
    # three are all there whenever the endpoint is disabled)
    first = order_place_via_api(customer, product.sku, 1)
    wait_for_status(first, "paid")
    wait_until(
        lambda: WebhookDelivery.objects.filter(endpoint_id=endpoint_id).count() == 3,
        message="created, reserved and paid recorded",
    )
    pipeline.webhook_dispatcher(
        **{
            **DISPATCHER_ENV,
            "WEBHOOKS_DISABLE_AFTER_FAILURES": "3",
            "WEBHOOKS_DISABLE_AFTER_SECONDS": "0",
        }
    )

    # Then the endpoint is disabled after its third failure; nothing was accepted, the
    # order's later events waited behind its first, and stay pending
    endpoint = wait_until(
        lambda: WebhookEndpoint.objects.filter(id=endpoint_id, status="disabled").first(),
        timeout=30,
        message="endpoint disabled",
    )
    assert "3 or more in a row" in endpoint.disabled_reason
    assert WebhookAttempt.objects.filter(delivery__endpoint_id=endpoint_id).count() == 3
    assert {r.status for r in failing.all()} == {500} and len(failing.all()) == 3
    assert set(
        WebhookDelivery.objects.filter(endpoint_id=endpoint_id).values_list("status", flat=True)
    ) == {DeliveryStatus.PENDING}

    # When the receiver is fixed and staff re-enable the endpoint through the API
    failing.fail_first = 0
    staff = api_client_for(staff_create("enabler"))
    answer = staff.post(f"/api/webhooks/{endpoint_id}/enable/")
    assert answer.status_code == 200 and answer.json()["status"] == EndpointStatus.ACTIVE

    # Then what waited is delivered, in order, and so is a new order's
    second = order_place_via_api(customer, product.sku, 1)
    wait_for_status(second, "paid")
    expected = {first: _order_events(first), second: _order_events(second)}
    wait_until(lambda: _accepted_by_order(failing) == expected, timeout=30, message="delivered")

    # When staff redeliver the first order's payment from the admin
    paid = WebhookDelivery.objects.get(
        endpoint_id=endpoint_id, order_id=first, event_type="orders.paid"
    )
    admin = get_user_model().objects.create_superuser("root", password="x-test-password-1")
    client = Client()
    client.force_login(admin)
    response = client.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "redeliver", ACTION_CHECKBOX_NAME: [paid.pk]},
        follow=True,
    )
    assert "Queued 1 delivery(ies) again" in response.content.decode()

    # Then the receiver gets it again, with the same webhook-id, signed afresh
    wait_until(
        lambda: [r.message_id for r in failing.accepted()].count(paid.message_id) == 2,
        timeout=30,
        message="redelivered",
    )
    # (the receiver answers before the dispatcher records the answer: wait for the record)
    wait_until(
        lambda: WebhookDelivery.objects.filter(
            pk=paid.pk, status=DeliveryStatus.DELIVERED, attempts=2
        ).exists(),
        timeout=30,
        message="redelivery recorded",
    )
    paid.refresh_from_db()
    assert list(paid.attempt_log.values_list("outcome", flat=True)) == ["success", "success"]
