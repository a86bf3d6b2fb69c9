"""The payment circuit breaker end to end, over the real processes, broker, Redis and
PostgreSQL: the fake provider goes down for every charge, the breaker opens after a run of
failures, orders wait in `reserved` (nothing cancelled, nothing dead-lettered), the provider
recovers, a half-open probe succeeds, the breaker closes and the waiting orders are paid,
each charged once."""

import pytest

from kafka_bridge.client import group_name
from kafka_bridge.models import DeadLetter
from notifications.models import Notification
from orders.models import FakeGatewayTransaction, Order, Payment
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.metrics import Scraper
from testing.polling import wait_until
from testing.saga import gateway_calls, wait_for_notifications, wait_for_status
from tools.localservices import free_port

pytestmark = pytest.mark.integration
K = Notification.Kind
BREAKER = {"breaker": "payment_gateway"}


def test_an_outage_opens_the_breaker_orders_wait_then_a_probe_closes_it_and_all_are_paid(
    pipeline, tmp_path
):
    # Given a provider that is down for every charge (its outage switch is a file), a breaker
    # that opens after 3 failures in a row and probes 2 s later, and a charge sweep every second
    switch = tmp_path / "gateway-down"
    switch.touch()
    payments = {
        "PAYMENTS_FAKE_OUTAGE_FILE": str(switch),
        "PAYMENTS_BREAKER_FAIL_MAX": "3",
        "PAYMENTS_BREAKER_RESET_TIMEOUT_SECONDS": "2",
        "PAYMENTS_CHARGE_SWEEP_SECONDS": "1",
        "PAYMENTS_CHARGE_RETRY_AFTER_SECONDS": "1",
    }
    port = free_port()
    scraper = Scraper(port)
    pipeline.relay()
    pipeline.consumer("inventory")
    orders_consumer = pipeline.consumer(
        "orders", METRICS_PORT=str(port), METRICS_ADDR="127.0.0.1", **payments
    )
    pipeline.consumer("notifications")
    pipeline.consumer("dead_letters")
    pipeline.celery_worker(**payments)
    pipeline.celery_beat(schedule_file=tmp_path / "beat-schedule", **payments)
    scraper.wait_up()
    assert scraper.value("circuit_breaker_state", **BREAKER) == 0  # closed
    assert scraper.value("circuit_breaker_transitions_total", state="open", **BREAKER) == 0

    # When six customers order
    product = product_with_stock(on_hand=100)
    orders = [order_place_via_api(customer_create(), product.sku, 1) for _ in range(6)]

    # Then the breaker opens, every order waits reserved, with no payment, nothing was
    # cancelled or dead-lettered, and the orders consumer moved on (its events processed)
    scraper.wait_for("circuit_breaker_state", 2, timeout=60, **BREAKER)
    assert scraper.value("circuit_breaker_transitions_total", state="open", **BREAKER) == 1
    wait_until(
        lambda: Order.objects.filter(id__in=orders, status="reserved").count() == 6,
        timeout=30,
        message="every order reserved",
    )
    scraper.wait_for(
        "kafka_consumer_events_processed_total", 6, group=group_name("orders"), timeout=60
    )
    wait_until(
        lambda: "half-open" in pipeline.logs(), timeout=30, message="a probe while still down"
    )
    assert set(Order.objects.filter(id__in=orders).values_list("status", flat=True)) == {"reserved"}
    assert not Payment.objects.exists()
    assert not DeadLetter.objects.exists()
    assert "dead-lettered" not in pipeline.logs()
    assert "circuit payment_gateway opened" in orders_consumer.log()

    # When the provider recovers
    switch.unlink()

    # Then a probe succeeds, the breaker closes, and the waiting orders are paid, once each
    for order_id in orders:
        wait_for_status(order_id, "paid", timeout=60)
    scraper.wait_for("circuit_breaker_state", 0, timeout=30, **BREAKER)
    assert "circuit payment_gateway closed: the probe succeeded" in pipeline.logs()
    assert Payment.objects.filter(order_id__in=orders, status="captured").count() == 6
    assert all(gateway_calls(order_id) == {"charge": 1} for order_id in orders)
    assert FakeGatewayTransaction.objects.filter(kind="charge", succeeded=True).count() == 6
    for order_id in orders:
        wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    assert not DeadLetter.objects.exists()
    assert "dead-lettered" not in pipeline.logs()
