"""Stock services: all-or-nothing reservations, idempotent release, restock, and the
database constraints that keep available stock from ever going negative."""

import threading
import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F

from inventory.models import Reservation, StockLevel
from inventory.services import (
    StockRequest,
    stock_release_for_order,
    stock_reserve_for_order,
    stock_reserve_for_order_and_report,
    stock_restock,
)
from kafka_bridge.models import OutboxEvent
from testing.factories import product_with_stock


def _stock(product) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    level = StockLevel.objects.get(product=product)
    return level.on_hand, level.reserved


# --- stock_reserve_for_order -------------------------------------------------------------


@pytest.mark.django_db
def test_reserve_reserves_every_line():
    # Given two products with stock
    mug, tea = product_with_stock(on_hand=5), product_with_stock(on_hand=3)
    order_id = uuid.uuid4()

    # When an order for 2 mugs and 3 teas is reserved
    outcome = stock_reserve_for_order(
        order_id=order_id,
        items=[StockRequest(sku=mug.sku, quantity=2), StockRequest(sku=tea.sku, quantity=3)],
    )

    # Then both lines are reserved, with one active reservation each
    assert outcome.reserved
    assert outcome.short_skus == ()
    assert _stock(mug) == (5, 2)
    assert _stock(tea) == (3, 3)
    reservations = {r.product_id: r for r in Reservation.objects.filter(order_id=order_id)}
    assert {pid: r.quantity for pid, r in reservations.items()} == {mug.pk: 2, tea.pk: 3}
    assert {r.status for r in reservations.values()} == {Reservation.Status.ACTIVE}


@pytest.mark.django_db
def test_reserve_is_all_or_nothing_when_one_line_is_short():
    # Given one product with plenty of stock and one with too little
    plenty, scarce = product_with_stock(on_hand=50), product_with_stock(on_hand=1)
    order_id = uuid.uuid4()

    # When an order needs more of the scarce one than there is
    outcome = stock_reserve_for_order(
        order_id=order_id,
        items=[StockRequest(sku=plenty.sku, quantity=5), StockRequest(sku=scarce.sku, quantity=2)],
    )

    # Then nothing is reserved at all and the outcome names only the short SKU
    assert not outcome.reserved
    assert outcome.reason == "out_of_stock"
    assert outcome.short_skus == (scarce.sku,)
    assert _stock(plenty) == (50, 0)
    assert _stock(scarce) == (1, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()


@pytest.mark.django_db
def test_reserve_counts_stock_already_reserved_by_other_orders():
    product = product_with_stock(on_hand=5)
    first = stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=4)]
    )

    second = stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=2)]
    )

    assert first.reserved
    assert not second.reserved
    assert second.short_skus == (product.sku,)
    assert _stock(product) == (5, 4)


@pytest.mark.django_db
def test_reserve_exactly_the_available_stock_succeeds():
    product = product_with_stock(on_hand=3)

    outcome = stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=3)]
    )

    assert outcome.reserved
    assert _stock(product) == (3, 3)


@pytest.mark.django_db
def test_reserve_twice_for_the_same_order_reserves_once():
    # Given an order whose stock is already reserved
    product = product_with_stock(on_hand=10)
    order_id = uuid.uuid4()
    items = [StockRequest(sku=product.sku, quantity=3)]
    stock_reserve_for_order(order_id=order_id, items=items)

    # When the same order is reserved again (a redelivered event)
    outcome = stock_reserve_for_order(order_id=order_id, items=items)

    # Then it reports success without reserving a second time
    assert outcome.reserved
    assert _stock(product) == (10, 3)
    assert Reservation.objects.filter(order_id=order_id).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "active", [pytest.param(None, id="unknown"), pytest.param(False, id="inactive")]
)
def test_reserve_refuses_unknown_or_inactive_sku(active):
    # Given an order naming a SKU that is unknown or inactive, beside a good one
    good = product_with_stock(on_hand=10)
    bad_sku = "NO-SUCH-SKU" if active is None else product_with_stock(active=False).sku
    order_id = uuid.uuid4()

    # When its stock is reserved
    outcome = stock_reserve_for_order(
        order_id=order_id,
        items=[StockRequest(sku=good.sku, quantity=1), StockRequest(sku=bad_sku, quantity=1)],
    )

    # Then nothing is reserved and the reason says why
    assert not outcome.reserved
    assert outcome.reason == "unknown_or_inactive"
    assert outcome.short_skus == (bad_sku,)
    assert _stock(good) == (10, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()


@pytest.mark.django_db
def test_reserve_and_report_records_reserved_or_failed_event():
    product = product_with_stock(on_hand=2)
    ok_order, short_order = uuid.uuid4(), uuid.uuid4()
    causation = uuid.uuid4()

    stock_reserve_for_order_and_report(
        order_id=ok_order,
        customer_id=7,
        items=[StockRequest(sku=product.sku, quantity=2)],
        causation_id=causation,
    )
    stock_reserve_for_order_and_report(
        order_id=short_order,
        customer_id=7,
        items=[StockRequest(sku=product.sku, quantity=1)],
        causation_id=causation,
    )

    reserved = OutboxEvent.objects.get(aggregate_id=str(ok_order))
    failed = OutboxEvent.objects.get(aggregate_id=str(short_order))
    assert reserved.event_type == "inventory.reserved"
    assert reserved.key == "7"
    assert reserved.envelope["causation_id"] == str(causation)
    assert failed.event_type == "inventory.failed"
    assert failed.envelope["data"]["reason"] == "out_of_stock"
    assert failed.envelope["data"]["short_skus"] == [product.sku]


# --- stock_release_for_order -------------------------------------------------------------


@pytest.mark.django_db
def test_release_gives_stock_back_once():
    # Given an order holding reservations on two products
    mug, tea = product_with_stock(on_hand=5), product_with_stock(on_hand=5)
    order_id = uuid.uuid4()
    stock_reserve_for_order(
        order_id=order_id,
        items=[StockRequest(sku=mug.sku, quantity=2), StockRequest(sku=tea.sku, quantity=1)],
    )

    # When the order's stock is released, twice
    first = stock_release_for_order(order_id=order_id)
    second = stock_release_for_order(order_id=order_id)

    # Then both reservations are released the first time and nothing happens the second
    assert first == 2
    assert second == 0
    assert _stock(mug) == (5, 0)
    assert _stock(tea) == (5, 0)
    assert set(Reservation.objects.filter(order_id=order_id).values_list("status", flat=True)) == {
        Reservation.Status.RELEASED
    }


@pytest.mark.django_db
def test_release_leaves_other_orders_reservations_alone():
    product = product_with_stock(on_hand=10)
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    for order_id, quantity in ((mine, 2), (theirs, 3)):
        stock_reserve_for_order(
            order_id=order_id, items=[StockRequest(sku=product.sku, quantity=quantity)]
        )

    stock_release_for_order(order_id=mine)

    assert _stock(product) == (10, 3)
    assert Reservation.objects.get(order_id=theirs).status == Reservation.Status.ACTIVE


@pytest.mark.django_db
def test_release_of_an_order_without_reservations_is_zero():
    assert stock_release_for_order(order_id=uuid.uuid4()) == 0


# --- stock_restock -----------------------------------------------------------------------


@pytest.mark.django_db
def test_restock_adds_to_on_hand_and_keeps_reservations():
    product = product_with_stock(on_hand=2)
    stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=2)]
    )

    level = stock_restock(product=product, quantity=5)

    assert (level.on_hand, level.reserved) == (7, 2)
    assert level.available == 5
    assert _stock(product) == (7, 2)


@pytest.mark.django_db
@pytest.mark.parametrize("quantity", [0, -1])
def test_restock_refuses_non_positive_quantity(quantity):
    product = product_with_stock(on_hand=2)

    with pytest.raises(ValueError):
        stock_restock(product=product, quantity=quantity)

    assert _stock(product) == (2, 0)


# --- database constraints ----------------------------------------------------------------


@pytest.mark.django_db
def test_database_refuses_more_reserved_than_on_hand():
    # Given a product with 3 units on hand
    product = product_with_stock(on_hand=3)

    # When an UPDATE tries to reserve more than there is
    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.filter(product=product).update(reserved=F("on_hand") + 1)

    # Then the row is unchanged
    assert _stock(product) == (3, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change", [{"on_hand": -1}, {"reserved": -1}], ids=["negative-on-hand", "negative-reserved"]
)
def test_database_refuses_negative_stock_columns(change):
    product = product_with_stock(on_hand=3)

    with pytest.raises(IntegrityError), transaction.atomic():
        StockLevel.objects.filter(product=product).update(**change)

    assert _stock(product) == (3, 0)


# --- concurrency (real PostgreSQL row locks) ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_oversell():
    # Given a product with 10 units and 20 orders of one unit each, all at once
    product = product_with_stock(on_hand=10)
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    outcomes: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reserve() -> None:
        try:
            barrier.wait(timeout=30)
            outcome = stock_reserve_for_order(
                order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=1)]
            )
            with lock:
                outcomes.append(outcome.reserved)
        except BaseException as exc:  # reported below, in the test's thread
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    # When every order reserves concurrently
    threads = [threading.Thread(target=reserve) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then exactly 10 succeed, 10 are refused, and stock never went negative
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(outcomes) == [False] * 10 + [True] * 10
    assert _stock(product) == (10, 10)
    assert Reservation.objects.filter(product=product).count() == 10
    assert StockLevel.objects.get(product=product).available == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_over_two_products_in_opposite_order_do_not_deadlock():
    # Given two products and orders naming them in opposite orders, all at once
    a, b = product_with_stock(on_hand=100), product_with_stock(on_hand=100)
    threads_count = 10
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reserve(index: int) -> None:
        items = [StockRequest(sku=a.sku, quantity=1), StockRequest(sku=b.sku, quantity=1)]
        try:
            barrier.wait(timeout=30)
            outcome = stock_reserve_for_order(
                order_id=uuid.uuid4(), items=items if index % 2 else items[::-1]
            )
            assert outcome.reserved
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    # When they all reserve
    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then every one succeeds (no deadlock error) and each product has 10 reserved
    assert not errors, errors
    assert _stock(a) == (100, 10)
    assert _stock(b) == (100, 10)
