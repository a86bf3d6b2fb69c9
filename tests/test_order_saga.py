"""Every path of the order saga, end to end through the API and the real worker processes:
relay, the three consumers, a Celery worker (and beat, for expiry)."""

import json

import pytest

from kafka_bridge.client import topic_name
from kafka_bridge.contracts import all_topics
from kafka_bridge.registry import CONSUMERS
from notifications.models import Notification
from orders.models import Payment
from testing.factories import (
    api_client_for,
    customer_create,
    order_place_via_api,
    product_with_stock,
    staff_create,
)
from testing.kafka import message_reproduce, topic_read_all
from testing.polling import wait_until
from testing.saga import (
    gateway_calls,
    snapshot,
    stock_of,
    wait_for_notifications,
    wait_for_status,
)

pytestmark = pytest.mark.integration
K = Notification.Kind


def _post(user, path: str, body: dict | None = None):
    return api_client_for(user).post(path, body or {}, format="json")


def test_happy_path_to_delivered(pipeline):
    pipeline.start_saga()
    customer, staff = customer_create(), staff_create()
    product = product_with_stock(on_hand=5)

    order_id = order_place_via_api(customer, product.sku, 2, correlation_id="corr-happy-1")
    wait_for_status(order_id, "paid")
    shipped = _post(staff, f"/api/orders/{order_id}/ship/", {"carrier": "UPS"})
    assert shipped.status_code == 200, shipped.content
    assert shipped.json()["shipment"]["tracking_number"].startswith("TRK")
    wait_until(lambda: stock_of(product.sku) == (3, 0), timeout=30, message="stock shipped")
    delivered = _post(staff, f"/api/orders/{order_id}/deliver/")
    assert delivered.status_code == 200, delivered.content

    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED, K.SHIPPED, K.DELIVERED)
    assert gateway_calls(order_id) == {"charge": 1}
    detail = api_client_for(customer).get(f"/api/orders/{order_id}/").json()
    assert detail["status"] == "delivered"
    assert detail["payment"]["status"] == "captured"
    timeline = [entry["event_type"] for entry in detail["timeline"]]
    assert timeline == [
        "orders.created",
        "inventory.reserved",
        "orders.reserved",
        "payments.processed",
        "orders.paid",
        "orders.shipped",
        "orders.delivered",
    ]
    # The request's correlation id travels through every event the request caused.
    assert {e["correlation_id"] for e in detail["timeline"][:5]} == {"corr-happy-1"}
    shipped_mail = Notification.objects.get(order_id=order_id, kind=K.SHIPPED)
    assert shipped.json()["shipment"]["tracking_number"] in shipped_mail.body


def test_declined_payment_cancels_and_releases_stock(pipeline):
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=5)

    order_id = order_place_via_api(customer, product.sku, 2, payment_token="tok_decline")

    wait_for_status(order_id, "cancelled")
    wait_until(lambda: stock_of(product.sku) == (5, 0), timeout=30, message="stock released")
    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_FAILED, K.CANCELLED)
    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.failure_reason) == ("failed", "card_declined")
    assert "card_declined" in Notification.objects.get(order_id=order_id, kind=K.CANCELLED).body


def test_customer_cancels_before_payment(pipeline):
    # Given an order not yet processed at all (the workers are not running yet)
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 2)

    # When the customer cancels it, and only then the pipeline runs
    response = _post(customer, f"/api/orders/{order_id}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    pipeline.start_saga()

    # Then inventory reserves and releases (events of one order arrive in order), nothing
    # is charged, and the customer hears only about the cancellation
    wait_until(
        lambda: snapshot(order_id, product.sku)["reservations"] == [("released", 2)],
        timeout=30,
        message="reservation released",
    )
    wait_for_notifications(order_id, K.CANCELLED)
    assert stock_of(product.sku) == (5, 0)
    assert gateway_calls(order_id) == {}
    assert not Payment.objects.filter(order_id=order_id).exists()


def test_cancel_while_the_charge_is_in_flight_ends_cancelled_and_refunded(pipeline):
    # Given an order whose charge is waiting on a slow payment provider (no transaction is
    # open meanwhile, so nothing blocks the customer)
    pipeline.relay()
    pipeline.consumer("inventory")
    orders = pipeline.consumer("orders", PAYMENTS_FAKE_LATENCY_MS="4000")
    pipeline.consumer("notifications")
    pipeline.celery_worker()
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 2)
    wait_until(lambda: "charging 1 order(s)" in orders.log(), timeout=30, message="charging")

    # When the customer cancels it before the provider has answered
    response = _post(customer, f"/api/orders/{order_id}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert not Payment.objects.filter(order_id=order_id).exists()  # still in flight

    # Then the charge that lands afterwards is recorded and refunded once, the order stays
    # cancelled, the stock comes back, and the customer never hears "payment received"
    wait_until(
        lambda: Payment.objects.filter(order_id=order_id, status="refunded").exists(),
        timeout=60,
        message="the late charge refunded",
    )
    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.CANCELLED)
    wait_until(lambda: stock_of(product.sku) == (5, 0), timeout=30, message="stock released")
    assert gateway_calls(order_id) == {"charge": 1, "refund": 1}
    assert snapshot(order_id, product.sku)["status"] == "cancelled"
    assert snapshot(order_id, product.sku)["events"]["payments.refunded"] == 1


def test_customer_cancels_after_payment_and_is_refunded(pipeline):
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 2)
    wait_for_status(order_id, "paid")

    response = _post(customer, f"/api/orders/{order_id}/cancel/")

    assert response.status_code == 200, response.content
    wait_until(
        lambda: Payment.objects.get(order_id=order_id).status == "refunded",
        timeout=30,
        message="refund",
    )
    wait_until(lambda: stock_of(product.sku) == (5, 0), timeout=30, message="stock released")
    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED, K.CANCELLED)
    assert gateway_calls(order_id) == {"charge": 1, "refund": 1}


def test_cancel_after_shipping_is_refused(pipeline):
    pipeline.start_saga()
    customer, stranger, staff = customer_create(), customer_create(), staff_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 1)
    wait_for_status(order_id, "paid")
    assert _post(customer, f"/api/orders/{order_id}/ship/").status_code == 403  # staff only
    assert _post(staff, f"/api/orders/{order_id}/ship/").status_code == 200

    response = _post(customer, f"/api/orders/{order_id}/cancel/")

    assert response.status_code == 409
    assert response.json()["status"] == "shipped"
    assert _post(stranger, f"/api/orders/{order_id}/cancel/").status_code == 404
    assert _post(staff, f"/api/orders/{order_id}/ship/").status_code == 409


def test_expiry_by_the_beat_task_releases_stock(pipeline, tmp_path):
    # Given a pending order that nothing processes (no inventory consumer yet)
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    order_id = order_place_via_api(customer, product.sku, 2)
    expiry = {"ORDERS_PENDING_TIMEOUT_SECONDS": "1", "ORDERS_EXPIRY_SWEEP_SECONDS": "0.5"}

    # When Celery beat schedules the expiry sweep and a worker runs it
    pipeline.relay()
    pipeline.celery_worker(**expiry)
    pipeline.celery_beat(schedule_file=tmp_path / "beat-schedule", **expiry)
    wait_for_status(order_id, "expired")

    # Then, once inventory catches up, it reserves and releases, and the customer is told
    pipeline.consumer("inventory")
    pipeline.consumer("notifications")
    wait_until(lambda: stock_of(product.sku) == (5, 0), timeout=30, message="released")
    wait_until(
        lambda: snapshot(order_id, product.sku)["reservations"] == [("released", 2)], timeout=30
    )
    wait_for_notifications(order_id, K.EXPIRED)


def test_redelivery_of_every_saga_event_changes_nothing(pipeline):
    # Given one order paid then cancelled (refunded) and one declined (compensated)
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=10)
    refunded = order_place_via_api(customer, product.sku, 2)
    wait_for_status(refunded, "paid")
    assert _post(customer, f"/api/orders/{refunded}/cancel/").status_code == 200
    declined = order_place_via_api(customer, product.sku, 3, payment_token="tok_decline")
    wait_for_status(declined, "cancelled")
    wait_for_notifications(refunded, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED, K.CANCELLED)
    wait_for_notifications(declined, K.ORDER_CONFIRMED, K.PAYMENT_FAILED, K.CANCELLED)
    wait_until(lambda: stock_of(product.sku) == (10, 0), timeout=30)
    before = {order: snapshot(order, product.sku) for order in (refunded, declined)}

    # When every message of every topic is delivered again
    messages = []
    for logical in all_topics():
        count = pipeline_message_count(logical)
        messages += topic_read_all(topic_name(logical), expected=count)
    for message in messages:
        message_reproduce(message)

    # Then every consumer skips them all and nothing changes
    handled = {t for spec in CONSUMERS.values() for t in spec.handlers}
    event_ids = {
        envelope["event_id"]
        for envelope in (json.loads(m.value()) for m in messages)
        if envelope["event_type"] in handled
    }
    wait_until(
        lambda: all(f"duplicate event {e}" in pipeline.logs() for e in event_ids),
        timeout=60,
        message="every redelivered event seen as a duplicate",
    )
    after = {order: snapshot(order, product.sku) for order in (refunded, declined)}
    assert after == before
    assert gateway_calls(refunded) == {"charge": 1, "refund": 1}
    assert gateway_calls(declined) == {"charge": 1}


def pipeline_message_count(logical_topic: str) -> int:
    from kafka_bridge.models import OutboxEvent

    return OutboxEvent.objects.filter(topic=logical_topic).count()
