"""The risk check end to end: the API, the relay, the real consumer processes (the orders
consumer runs the check before each charge), Celery charging approved orders, the real
broker, Redis and PostgreSQL. A burst from one customer is held, staff approve (paid) or
reject (cancelled, stock back); orders of one payment token beyond its limit are blocked
with their reasons, whichever of two orders consumers assessed them; normal orders go
through as before."""

from collections import Counter
from pathlib import Path

import pytest

from kafka_bridge.models import DeadLetter, OutboxEvent
from notifications.models import Notification
from orders.models import Order, Payment
from risk.models import RiskAssessment
from testing.factories import (
    api_client_for,
    customer_create,
    order_place_via_api,
    product_with_stock,
    staff_create,
)
from testing.polling import wait_until
from testing.saga import gateway_calls, stock_of, wait_for_notifications, wait_for_status

pytestmark = pytest.mark.integration
K = Notification.Kind

# The charge sweep runs every second and takes orders approved a second ago (Celery beat).
SWEEP = {"PAYMENTS_CHARGE_SWEEP_SECONDS": "1", "PAYMENTS_CHARGE_RETRY_AFTER_SECONDS": "1"}


def _start(pipeline, tmp_path: Path, *, orders_consumers: int = 1, **risk: str) -> None:  # type: ignore[no-untyped-def]
    pipeline.relay()
    pipeline.consumer("inventory")
    for _ in range(orders_consumers):
        pipeline.consumer("orders", RISK_ENABLED="true", **risk)
    pipeline.consumer("notifications")
    pipeline.consumer("dead_letters")
    pipeline.celery_worker(**SWEEP)
    pipeline.celery_beat(schedule_file=tmp_path / "beat-schedule", **SWEEP)


def _event_types(order_id: str) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_id=order_id)
        .order_by("id")
        .values_list("event_type", flat=True)
    )


def test_a_burst_is_held_until_staff_approve_or_reject_and_normal_orders_go_through(
    pipeline, tmp_path
):
    # Given the pipeline with the risk check on: more than 3 orders per customer an hour
    # scores 60, held from 50
    _start(pipeline, tmp_path, RISK_CUSTOMER_MAX_ORDERS="3")
    product = product_with_stock(on_hand=50)
    burster, regular, staff = customer_create(), customer_create(), staff_create()

    # When a regular customer orders once, and another places five orders in a row
    normal = order_place_via_api(regular, product.sku, 1)
    burst = [order_place_via_api(burster, product.sku, 2) for _ in range(5)]

    # Then the normal order is paid as before, its assessment (approve) in its timeline
    wait_for_status(normal, "paid")
    assert _event_types(normal) == [
        "orders.created",
        "inventory.reserved",
        "orders.reserved",
        "risk.assessed",
        "payments.processed",
        "orders.paid",
    ]
    wait_for_notifications(normal, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    # and so are the burst's first three; the fourth and fifth are held: no charge, stock kept
    for order_id in burst[:3]:
        wait_for_status(order_id, "paid")
    approved, rejected = burst[3], burst[4]
    for order_id in (approved, rejected):
        wait_for_status(order_id, "held")
        assert gateway_calls(order_id) == {}
        assert _event_types(order_id)[-2:] == ["risk.assessed", "orders.held"]
    assert stock_of(product.sku) == (50, 1 + 5 * 2)
    held = Order.objects.get(id=approved)
    assert held.status_reason == "held for risk review (score 60)"
    assessment = RiskAssessment.objects.get(order_id=approved)
    assert assessment.reasons == ["4 orders by this customer in 60 min (more than 3)"]
    # The customer sees the order held and its timeline, never the rules
    detail = api_client_for(burster).get(f"/api/orders/{approved}/").json()
    assert detail["status"] == "held" and "risk" not in detail
    assert [e["event_type"] for e in detail["timeline"]][-2:] == ["risk.assessed", "orders.held"]

    # When staff approve one and reject the other (the staff API)
    staff_api = api_client_for(staff)
    answer = staff_api.post(f"/api/orders/{approved}/approve/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["risk"]["review"] == "approved"
    assert answer.json()["risk"]["reviewed_by"] == staff.get_username()
    answer = staff_api.post(f"/api/orders/{rejected}/reject/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "cancelled"
    assert staff_api.post(f"/api/orders/{rejected}/approve/").status_code == 409
    assert api_client_for(burster).post(f"/api/orders/{approved}/approve/").status_code == 403

    # Then the approved order is charged and paid, the rejected one's stock comes back
    wait_for_status(approved, "paid", timeout=60)
    assert gateway_calls(approved) == {"charge": 1}
    wait_until(
        lambda: stock_of(product.sku) == (50, 1 + 4 * 2), timeout=30, message="stock released"
    )
    assert gateway_calls(rejected) == {}
    assert not Payment.objects.filter(order_id=rejected).exists()
    # and the customer heard "confirmed" once for each, then "paid" or "cancelled"
    wait_for_notifications(approved, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    wait_for_notifications(rejected, K.ORDER_CONFIRMED, K.CANCELLED)
    assert (
        "rejected in the payment risk review"
        in Notification.objects.get(order_id=rejected, kind=K.CANCELLED).body
    )
    assert _event_types(approved)[-4:] == [
        "orders.held",
        "orders.reserved",
        "payments.processed",
        "orders.paid",
    ]
    assert not DeadLetter.objects.exists()
    assert "dead-lettered" not in pipeline.logs()


def test_orders_of_one_token_beyond_its_limit_are_blocked_whichever_process_assesses_them(
    pipeline, tmp_path
):
    # Given two orders consumers sharing the partitions, and a check where more than 3 orders
    # per payment token score 60 and a first order from 10.00 scores 40 (blocked from 100)
    risk = {
        "RISK_TOKEN_MAX_ORDERS": "3",
        "RISK_FIRST_ORDER_AMOUNT": "10",
        "RISK_FIRST_ORDER_POINTS": "40",
    }
    _start(pipeline, tmp_path, orders_consumers=2, **risk)
    orders_processes = [c for c in pipeline.children if c.name == "consumer-orders"]
    assert len(orders_processes) == 2
    # (both in the group before the orders, so that both take part)
    wait_until(
        lambda: all("assigned" in c.log() for c in orders_processes),
        timeout=60,
        message="both orders consumers assigned partitions",
    )
    product = product_with_stock(on_hand=100, price="12.00")

    # When six new customers, spread over the partitions, pay with the same token
    orders = [
        order_place_via_api(customer_create(), product.sku, 1, payment_token="tok_stolen")
        for _ in range(6)
    ]

    # Then the first three (by the time they were placed) are paid, each with the first-order
    # points, and the other three are blocked: cancelled, nothing charged, stock released
    for order_id in orders[:3]:
        wait_for_status(order_id, "paid", timeout=60)
    for order_id in orders[3:]:
        wait_for_status(order_id, "cancelled", timeout=60)
        order = Order.objects.get(id=order_id)
        assert order.status_reason == "did not pass the payment risk check"
        assert gateway_calls(order_id) == {}
        assert _event_types(order_id)[-2:] == ["risk.assessed", "orders.cancelled"]
    wait_until(lambda: stock_of(product.sku) == (100, 3), timeout=30, message="stock released")
    scores = {
        str(a.order_id): (a.score, a.decision)
        for a in RiskAssessment.objects.filter(order_id__in=orders)
    }
    assert [scores[o] for o in orders] == [(40, "approve")] * 3 + [(100, "block")] * 3
    # with their reasons, in the assessment and in the event
    [event] = OutboxEvent.objects.filter(aggregate_id=orders[5], event_type="risk.assessed")
    data = event.envelope["data"]
    assert data["decision"] == "block"
    assert data["reasons"] == [
        "6 orders with this payment token in 60 min (more than 3)",
        "first order, total 12.00 (at least 10)",
    ]
    assert {r["rule"]: r["points"] for r in data["rules"] if r["points"]} == {
        "token_velocity": 60,
        "first_order_high_amount": 40,
    }
    for order_id in orders[3:]:
        wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.CANCELLED)
    # Each order was assessed once, by one of the two processes
    assert Counter(
        OutboxEvent.objects.filter(aggregate_id__in=orders, event_type="risk.assessed").values_list(
            "aggregate_id", flat=True
        )
    ) == Counter(orders)
    assert not DeadLetter.objects.exists()
