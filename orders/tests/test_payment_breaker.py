"""Charges behind the payment circuit breaker, in this process against the real Redis and
PostgreSQL: an outage opens it and the orders wait, reserved, with nothing recorded and
nothing raised; the charge sweep probes once the timeout passed, closes it and charges them;
reserved orders do not expire meanwhile. (tests/test_payment_breaker.py runs the same story
through the worker processes.)"""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from common.circuit_breaker import BreakerState
from common.redis_client import redis_client
from kafka_bridge.models import OutboxEvent
from orders.breaker import payment_breaker
from orders.models import FakeGatewayTransaction, Order, Payment
from orders.payments import (
    GatewayUnavailable,
    PaymentCause,
    payment_charges_request,
    payment_charges_retry,
    payment_gateway,
    payments_record_charges,
)
from orders.services import OrderItemInput, order_create, order_expire_stale, order_mark_reserved
from testing.factories import customer_create, product_with_stock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RESET_SECONDS = 0.3


@pytest.fixture
def outage(settings, kafka_namespace: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A breaker of its own (this test's namespace) that opens after 3 failures, and the fake
    provider's outage switch: the file returned; it is down while the file exists."""
    switch = tmp_path / "gateway-down"
    settings.PAYMENTS = {
        **settings.PAYMENTS,
        "OPTIONS": {**settings.PAYMENTS["OPTIONS"], "outage_file": str(switch)},
        "BREAKER": {
            "FAIL_MAX": 3,
            "RESET_TIMEOUT_SECONDS": RESET_SECONDS,
            "PROBE_TIMEOUT_SECONDS": 5,
        },
        "CHARGE_RETRY_AFTER_SECONDS": 0,
    }
    payment_gateway.cache_clear()
    payment_breaker.cache_clear()
    yield switch
    payment_breaker().reset()
    payment_gateway.cache_clear()
    payment_breaker.cache_clear()


def _reserved_orders(count: int) -> list[Order]:
    product = product_with_stock(on_hand=100)
    orders = []
    for _ in range(count):
        order, _ = order_create(
            customer=customer_create(), items=[OrderItemInput(sku=product.sku, quantity=1)]
        )
        order_mark_reserved(order_id=order.id)
        orders.append(order)
    return orders


def _charge(orders: list[Order]) -> dict:  # type: ignore[type-arg]
    ids = [order.id for order in orders]
    charges = payment_charges_request(order_ids=ids)
    payments_record_charges(charges=charges, causes=[PaymentCause(i) for i in ids])
    return charges


def test_an_outage_opens_the_breaker_and_the_orders_wait_reserved(outage: Path):
    # Given a provider that is down
    outage.touch()
    orders = _reserved_orders(5)

    # When a batch of five is charged: three failures open the breaker
    _charge(orders)

    # Then nothing raised (the event would be processed) and nothing was recorded: every
    # order waits, reserved, without a payment
    assert payment_breaker().snapshot().state == BreakerState.OPEN
    assert set(
        Order.objects.filter(id__in=[o.id for o in orders]).values_list("status", flat=True)
    ) == {"reserved"}
    assert not Payment.objects.exists()
    assert not OutboxEvent.objects.filter(event_type__startswith="payments.").exists()
    # and while it is open, nothing more is even attempted
    calls = FakeGatewayTransaction.objects.count()
    _charge(orders)
    assert FakeGatewayTransaction.objects.count() == calls == 0


def test_failures_below_the_limit_are_raised_for_the_event_to_be_retried(outage: Path):
    outage.touch()
    [order] = _reserved_orders(1)

    with pytest.raises(GatewayUnavailable):
        _charge([order])

    assert payment_breaker().snapshot().state == BreakerState.CLOSED
    assert payment_breaker().snapshot().failures == 1


def test_the_sweep_probes_once_the_provider_is_back_closes_the_breaker_and_charges_all(
    outage: Path,
):
    # Given five orders waiting behind an open breaker
    outage.touch()
    orders = _reserved_orders(5)
    _charge(orders)
    assert payment_breaker().snapshot().state == BreakerState.OPEN

    # When the provider recovers and the sweep runs before, then after, the timeout
    outage.unlink()
    assert payment_charges_retry() == 0  # still open: nothing attempted
    time.sleep(RESET_SECONDS + 0.1)
    recorded = payment_charges_retry()

    # Then the probe succeeded, the breaker closed, and every order was charged once
    assert recorded == 5
    assert payment_breaker().snapshot().state == BreakerState.CLOSED
    assert Payment.objects.filter(status="captured").count() == 5
    assert FakeGatewayTransaction.objects.filter(kind="charge").count() == 5
    assert OutboxEvent.objects.filter(event_type="payments.processed").count() == 5


def test_the_sweep_leaves_orders_waiting_while_the_provider_still_fails(outage: Path):
    outage.touch()
    orders = _reserved_orders(3)
    _charge(orders)
    time.sleep(RESET_SECONDS + 0.1)

    assert payment_charges_retry() == 0  # the probe failed: open again, nothing raised

    assert payment_breaker().snapshot().state == BreakerState.OPEN
    assert FakeGatewayTransaction.objects.count() == 0
    assert not Payment.objects.exists()


def test_reserved_orders_do_not_expire_while_the_provider_is_out(outage: Path, settings):
    # Given orders reserved for longer than the reserved timeout, waiting behind the breaker
    outage.touch()
    orders = _reserved_orders(3)
    _charge(orders)
    timeout = settings.ORDERS["RESERVED_TIMEOUT_SECONDS"]
    long_ago = timezone.now() - timedelta(seconds=timeout + 60)
    Order.objects.filter(id__in=[o.id for o in orders]).update(status_changed_at=long_ago)
    breaker = payment_breaker()

    # Then the expiry sweep leaves them alone while it is open
    assert order_expire_stale() == []
    # and for one reserved timeout after it closed (the charge sweep's turn)
    now_ms = int(time.time() * 1000)
    redis_client().hset(breaker.key, mapping={"state": "closed", "changed_at": now_ms})
    assert order_expire_stale() == []
    # but once it has been closed that long, an order still unpaid is stuck: it expires
    redis_client().hset(breaker.key, "changed_at", now_ms - (timeout + 1) * 1000)
    assert sorted(order_expire_stale()) == sorted(o.id for o in orders)
