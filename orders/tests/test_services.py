"""Order services and the status machine."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from kafka_bridge.models import OutboxEvent
from orders.models import Order
from orders.services import (
    IdempotencyKeyReused,
    OrderItemInput,
    order_create,
    order_mark_rejected,
    order_mark_reserved,
)
from orders.status import (
    CANCELLABLE,
    TERMINAL,
    TRANSITIONS,
    InvalidOrderTransition,
    OrderStatus,
    status_transition_check,
)
from testing.factories import customer_create, product_with_stock


def _pending_order() -> Order:
    product = product_with_stock()
    order, _ = order_create(
        customer=customer_create(), items=[OrderItemInput(sku=product.sku, quantity=1)]
    )
    return order


# --- status machine ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", [OrderStatus.RESERVED, OrderStatus.REJECTED], ids=["reserved", "rejected"]
)
def test_pending_may_become_reserved_or_rejected(target):
    status_transition_check(current=OrderStatus.PENDING, target=target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (OrderStatus.REJECTED, OrderStatus.RESERVED),
        (OrderStatus.RESERVED, OrderStatus.REJECTED),
        (OrderStatus.RESERVED, OrderStatus.PENDING),
        (OrderStatus.REJECTED, OrderStatus.PENDING),
        (OrderStatus.PENDING, OrderStatus.PENDING),
    ],
    ids=lambda s: str(s),
)
def test_invalid_transitions_are_refused(current, target):
    with pytest.raises(InvalidOrderTransition) as raised:
        status_transition_check(current=current, target=target)

    assert raised.value.current == current
    assert raised.value.target == target


def test_every_status_has_a_transition_entry():
    assert set(TRANSITIONS) == set(OrderStatus.values)
    assert {
        OrderStatus.DELIVERED,
        OrderStatus.REJECTED,
        OrderStatus.CANCELLED,
        OrderStatus.EXPIRED,
    } == TERMINAL


def test_cancellation_is_allowed_until_shipping_and_never_after():
    assert {
        OrderStatus.PENDING,
        OrderStatus.RESERVED,
        OrderStatus.HELD,  # by the customer, or by staff rejecting it after a risk review
        OrderStatus.PAID,
        OrderStatus.PAYMENT_FAILED,
    } == CANCELLABLE
    for status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        with pytest.raises(InvalidOrderTransition):
            status_transition_check(current=status, target=OrderStatus.CANCELLED)


# --- order_mark_reserved / order_mark_rejected -------------------------------------------


@pytest.mark.django_db
def test_mark_reserved_moves_pending_to_reserved():
    order = _pending_order()

    result = order_mark_reserved(order_id=order.id)

    assert result is not None
    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED


@pytest.mark.django_db
def test_mark_reserved_twice_is_harmless():
    order = _pending_order()
    order_mark_reserved(order_id=order.id)
    order.refresh_from_db()
    updated_at = order.updated_at

    order_mark_reserved(order_id=order.id)

    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    assert order.updated_at == updated_at


@pytest.mark.django_db
def test_mark_reserved_on_a_rejected_order_is_ignored():
    # Given an order already rejected
    order = _pending_order()
    order_mark_rejected(order_id=order.id, reason="out_of_stock: SKU-1")

    # When a late "reserved" arrives
    order_mark_reserved(order_id=order.id)  # does not raise

    # Then the order stays rejected with its reason
    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert order.status_reason == "out_of_stock: SKU-1"


@pytest.mark.django_db
def test_mark_rejected_on_a_reserved_order_is_ignored():
    order = _pending_order()
    order_mark_reserved(order_id=order.id)

    order_mark_rejected(order_id=order.id, reason="late")

    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    assert order.status_reason == ""


@pytest.mark.django_db
def test_mark_reserved_of_an_unknown_order_returns_none():
    assert order_mark_reserved(order_id=uuid.uuid4()) is None


# --- order_create ------------------------------------------------------------------------


@pytest.mark.django_db
def test_order_create_refuses_unknown_and_inactive_skus_and_creates_nothing():
    inactive = product_with_stock(active=False)

    with pytest.raises(ValidationError) as raised:
        order_create(
            customer=customer_create(),
            items=[
                OrderItemInput(sku="NOPE", quantity=1),
                OrderItemInput(sku=inactive.sku, quantity=1),
            ],
        )

    messages = " ".join(raised.value.message_dict["items"])
    assert "NOPE" in messages
    assert inactive.sku in messages
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_order_create_with_reused_key_and_other_items_raises():
    customer = customer_create()
    product = product_with_stock()
    order_create(customer=customer, items=[OrderItemInput(product.sku, 1)], idempotency_key="k")

    with pytest.raises(IdempotencyKeyReused):
        order_create(customer=customer, items=[OrderItemInput(product.sku, 2)], idempotency_key="k")

    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_the_same_key_make_one_order():
    # Given one customer retrying the same request from several threads at once
    customer = customer_create()
    product = product_with_stock(price="2.50")
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[tuple[uuid.UUID, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            barrier.wait(timeout=30)
            order, created = order_create(
                customer=customer,
                items=[OrderItemInput(sku=product.sku, quantity=2)],
                idempotency_key="retry-me",
            )
            with lock:
                results.append((order.id, created))
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    # When they all create
    threads = [threading.Thread(target=create) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then one order and one event exist, and every caller got that order
    assert not errors, errors
    assert len({order_id for order_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Order.objects.count() == 1
    assert Order.objects.get().total == Decimal("5.00")
    assert OutboxEvent.objects.filter(event_type="orders.created").count() == 1
