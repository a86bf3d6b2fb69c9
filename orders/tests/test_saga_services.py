"""The order saga's services: payment failure, cancel, ship, deliver, expiry, timeline, and
the inventory side of shipping and cancelling."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import Reservation, StockLevel
from inventory.services import (
    StockRequest,
    stock_commit_for_order,
    stock_release_for_order,
    stock_reserve_for_order,
)
from kafka_bridge.consumer.apply import events_apply
from kafka_bridge.models import OutboxEvent
from kafka_bridge.registry import CONSUMERS
from orders.models import Order, Payment, Shipment
from orders.payments import (
    PaymentCause,
    payment_charge_for_order,
    payment_charges_request,
    payment_gateway,
    payments_record_charges,
)
from orders.selectors import order_timeline
from orders.services import (
    OrderItemInput,
    order_cancel,
    order_create,
    order_deliver,
    order_expire_stale,
    order_mark_paid,
    order_mark_payment_failed,
    order_mark_reserved,
    order_ship,
)
from orders.status import InvalidOrderTransition, OrderStatus
from orders.tasks import orders_expire_stale
from testing.factories import customer_create, product_with_stock
from testing.saga import events_recorded_after

pytestmark = pytest.mark.django_db

# How each status is reached through the services, starting from a new (pending) order.
PATHS: dict[str, tuple[str, ...]] = {
    OrderStatus.PENDING: (),
    OrderStatus.RESERVED: ("reserved",),
    OrderStatus.PAID: ("reserved", "paid"),
    OrderStatus.SHIPPED: ("reserved", "paid", "shipped"),
    OrderStatus.DELIVERED: ("reserved", "paid", "shipped", "delivered"),
    OrderStatus.CANCELLED: ("cancelled",),
}


def _order_in(status: str, *, quantity: int = 1, on_hand: int = 10) -> Order:
    """An order in `status`, walked there through the services (stock reserved for real)."""
    product = product_with_stock(on_hand=on_hand)
    order, _ = order_create(
        customer=customer_create(), items=[OrderItemInput(sku=product.sku, quantity=quantity)]
    )
    steps = {
        "reserved": lambda: (
            stock_reserve_for_order(
                order_id=order.id, items=[StockRequest(sku=product.sku, quantity=quantity)]
            ),
            order_mark_reserved(order_id=order.id),
        ),
        "paid": lambda: order_mark_paid(order_id=order.id),
        "shipped": lambda: order_ship(order_id=order.id),
        "delivered": lambda: order_deliver(order_id=order.id),
        "cancelled": lambda: order_cancel(order_id=order.id, actor="customer"),
    }
    for step in PATHS[status]:
        steps[step]()
    order.refresh_from_db()
    assert order.status == status
    return order


def _event_types(order: Order) -> list[str]:
    return [event.event_type for event in order_timeline(order_id=order.id)]


def _events(order: Order, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type=event_type))


def _age(order: Order, seconds: int) -> None:
    """Test setup: pretend the order has been in its status for `seconds`."""
    Order.objects.filter(id=order.id).update(
        status_changed_at=timezone.now() - timedelta(seconds=seconds)
    )


# --- order_mark_payment_failed -----------------------------------------------------------


def test_payment_failure_marks_payment_failed_then_cancels():
    # Given a reserved order
    order = _order_in(OrderStatus.RESERVED)
    cause = uuid.uuid4()

    # When its payment fails
    result = order_mark_payment_failed(
        order_id=order.id, reason="card_declined", causation_id=cause
    )

    # Then it ends cancelled, saying why
    assert result is not None
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.status_reason == "payment failed: card_declined"
    # And both steps were recorded, in order, caused by the payment event
    assert _event_types(order)[-2:] == ["orders.payment_failed", "orders.cancelled"]
    [failed] = _events(order, "orders.payment_failed")
    [cancelled] = _events(order, "orders.cancelled")
    assert failed.envelope["data"]["reason"] == "card_declined"
    assert failed.envelope["data"]["previous_status"] == "reserved"
    assert cancelled.envelope["data"]["previous_status"] == "payment_failed"
    assert cancelled.envelope["data"]["reason"] == "payment failed: card_declined"
    assert failed.envelope["causation_id"] == cancelled.envelope["causation_id"] == str(cause)


def test_payment_failure_redelivered_changes_nothing():
    # Given an order already cancelled after a failed payment
    order = _order_in(OrderStatus.RESERVED)
    order_mark_payment_failed(order_id=order.id, reason="card_declined")
    events_before = OutboxEvent.objects.count()

    # When the same payment failure arrives again
    order_mark_payment_failed(order_id=order.id, reason="card_declined")

    # Then no event is added and the order stays cancelled
    assert OutboxEvent.objects.count() == events_before
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_payment_failure_of_a_paid_order_is_ignored():
    # Given a paid order (e.g. a stale failure arrives after success)
    order = _order_in(OrderStatus.PAID)

    # When a payment failure arrives
    order_mark_payment_failed(order_id=order.id, reason="late")

    # Then the order stays paid and nothing is recorded
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert _events(order, "orders.payment_failed") == []
    assert _events(order, "orders.cancelled") == []


def test_payment_failure_of_an_unknown_order_returns_none():
    assert order_mark_payment_failed(order_id=uuid.uuid4(), reason="x") is None
    assert not OutboxEvent.objects.exists()


# --- order_cancel ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.PAID])
def test_cancel_before_shipping_cancels_and_records_the_actor(status):
    # Given an order not yet shipped
    order = _order_in(status)

    # When staff cancel it
    result = order_cancel(order_id=order.id, actor="staff")

    # Then it is cancelled with a default reason naming the actor
    assert result.status == OrderStatus.CANCELLED
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert order.status_reason == "cancelled by staff"
    # And one orders.cancelled event names the actor and the previous status
    [event] = _events(order, "orders.cancelled")
    data = event.envelope["data"]
    assert data["actor"] == "staff"
    assert data["previous_status"] == status
    assert data["status"] == "cancelled"
    assert event.key == str(order.customer_id)


def test_cancel_keeps_an_explicit_reason():
    order = _order_in(OrderStatus.PENDING)

    order_cancel(order_id=order.id, actor="customer", reason="changed my mind")

    order.refresh_from_db()
    assert order.status_reason == "changed my mind"
    [event] = _events(order, "orders.cancelled")
    assert event.envelope["data"]["reason"] == "changed my mind"
    assert event.envelope["data"]["actor"] == "customer"


@pytest.mark.parametrize(
    "status", [OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.CANCELLED]
)
def test_cancel_after_shipping_or_twice_is_refused(status):
    # Given an order shipped, delivered or already cancelled
    order = _order_in(status)
    events_before = OutboxEvent.objects.count()

    # When someone tries to cancel it
    with pytest.raises(InvalidOrderTransition) as raised:
        order_cancel(order_id=order.id, actor="customer")

    # Then it is refused naming the current status, and nothing changes
    assert raised.value.current == status
    order.refresh_from_db()
    assert order.status == status
    assert OutboxEvent.objects.count() == events_before


def test_cancel_of_an_unknown_order_raises_does_not_exist():
    with pytest.raises(Order.DoesNotExist):
        order_cancel(order_id=uuid.uuid4(), actor="staff")


# --- order_ship --------------------------------------------------------------------------


def test_ship_a_paid_order_creates_a_shipment_and_records_the_tracking_number(settings):
    # Given a paid order
    order = _order_in(OrderStatus.PAID)

    # When staff ship it without naming a carrier
    result = order_ship(order_id=order.id)

    # Then it is shipped with a shipment by the default carrier and a TRK tracking number
    assert result.status == OrderStatus.SHIPPED
    shipment = Shipment.objects.get(order=order)
    assert shipment.carrier == settings.ORDERS["DEFAULT_CARRIER"]
    assert shipment.tracking_number.startswith("TRK")
    assert len(shipment.tracking_number) == 15
    assert shipment.delivered_at is None
    # And orders.shipped carries the tracking number and carrier
    [event] = _events(order, "orders.shipped")
    data = event.envelope["data"]
    assert data["tracking_number"] == shipment.tracking_number
    assert data["carrier"] == shipment.carrier
    assert data["actor"] == "staff"
    assert data["previous_status"] == "paid"


def test_ship_uses_the_given_carrier_and_unique_tracking_numbers():
    first, second = _order_in(OrderStatus.PAID), _order_in(OrderStatus.PAID)

    order_ship(order_id=first.id, carrier="UPS")
    order_ship(order_id=second.id, carrier="UPS")

    assert Shipment.objects.get(order=first).carrier == "UPS"
    numbers = set(Shipment.objects.values_list("tracking_number", flat=True))
    assert len(numbers) == 2


@pytest.mark.parametrize(
    "status",
    [OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.SHIPPED, OrderStatus.CANCELLED],
)
def test_ship_requires_a_paid_order(status):
    # Given an order that is not paid
    order = _order_in(status)
    shipments_before = Shipment.objects.count()

    # When staff try to ship it
    with pytest.raises(InvalidOrderTransition) as raised:
        order_ship(order_id=order.id)

    # Then it is refused and no (second) shipment or shipped event is created
    assert raised.value.current == status
    assert Shipment.objects.count() == shipments_before
    order.refresh_from_db()
    assert order.status == status
    assert len(_events(order, "orders.shipped")) == (1 if status == OrderStatus.SHIPPED else 0)


def test_ship_of_an_unknown_order_raises_does_not_exist():
    with pytest.raises(Order.DoesNotExist):
        order_ship(order_id=uuid.uuid4())


# --- order_deliver -----------------------------------------------------------------------


def test_deliver_a_shipped_order_stamps_the_shipment():
    # Given a shipped order
    order = _order_in(OrderStatus.SHIPPED)
    before = timezone.now()

    # When the carrier confirms delivery
    result = order_deliver(order_id=order.id)

    # Then the order is delivered and the shipment has its delivery time
    assert result.status == OrderStatus.DELIVERED
    shipment = Shipment.objects.get(order=order)
    assert shipment.delivered_at is not None
    assert shipment.delivered_at >= before
    [event] = _events(order, "orders.delivered")
    assert event.envelope["data"]["tracking_number"] == shipment.tracking_number
    assert event.envelope["data"]["previous_status"] == "shipped"


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.DELIVERED])
def test_deliver_requires_a_shipped_order(status):
    order = _order_in(status)

    with pytest.raises(InvalidOrderTransition) as raised:
        order_deliver(order_id=order.id)

    assert raised.value.current == status
    order.refresh_from_db()
    assert order.status == status


def test_deliver_of_an_unknown_order_raises_does_not_exist():
    with pytest.raises(Order.DoesNotExist):
        order_deliver(order_id=uuid.uuid4())


# --- order_expire_stale ------------------------------------------------------------------


@pytest.fixture
def short_timeouts(settings):  # type: ignore[no-untyped-def]
    settings.ORDERS = {
        **settings.ORDERS,
        "PENDING_TIMEOUT_SECONDS": 60,
        "RESERVED_TIMEOUT_SECONDS": 600,
    }


def test_expiry_expires_only_orders_stuck_beyond_their_timeout(short_timeouts):
    # Given pending and reserved orders, some stuck past their timeouts
    stale_pending = _order_in(OrderStatus.PENDING)
    _age(stale_pending, 120)
    fresh_pending = _order_in(OrderStatus.PENDING)
    _age(fresh_pending, 30)
    stale_reserved = _order_in(OrderStatus.RESERVED)
    _age(stale_reserved, 700)
    reserved_past_pending_timeout = _order_in(OrderStatus.RESERVED)
    _age(reserved_past_pending_timeout, 120)  # older than 60 s, younger than 600 s
    old_paid = _order_in(OrderStatus.PAID)
    _age(old_paid, 100_000)

    # When the sweep runs
    expired = order_expire_stale()

    # Then exactly the stale pending and reserved orders expired
    assert set(expired) == {stale_pending.id, stale_reserved.id}
    statuses = dict(Order.objects.values_list("id", "status"))
    assert statuses[stale_pending.id] == OrderStatus.EXPIRED
    assert statuses[stale_reserved.id] == OrderStatus.EXPIRED
    assert statuses[fresh_pending.id] == OrderStatus.PENDING
    assert statuses[reserved_past_pending_timeout.id] == OrderStatus.RESERVED
    assert statuses[old_paid.id] == OrderStatus.PAID
    # And each expiry was recorded with the status it was stuck in
    [pending_event] = _events(stale_pending, "orders.expired")
    [reserved_event] = _events(stale_reserved, "orders.expired")
    assert pending_event.envelope["data"]["reason"] == "no progress while pending"
    assert pending_event.envelope["data"]["actor"] == "system"
    assert reserved_event.envelope["data"]["previous_status"] == "reserved"
    assert OutboxEvent.objects.filter(event_type="orders.expired").count() == 2


def test_expiry_twice_expires_nothing_more(short_timeouts):
    # Given a stale order already expired by one sweep
    order = _order_in(OrderStatus.PENDING)
    _age(order, 120)
    assert order_expire_stale() == [order.id]

    # When the sweep runs again
    again = order_expire_stale()

    # Then nothing more happens
    assert again == []
    assert len(_events(order, "orders.expired")) == 1


def test_expiry_uses_the_given_clock(short_timeouts):
    # Given a fresh pending order
    order = _order_in(OrderStatus.PENDING)

    # When the sweep runs as if two minutes had passed
    expired = order_expire_stale(now=timezone.now() + timedelta(seconds=120))

    # Then the order is expired
    assert expired == [order.id]


def test_expiry_task_returns_how_many_orders_expired(short_timeouts):
    # Given two stale orders and one fresh one
    for seconds in (120, 700, 0):
        _age(_order_in(OrderStatus.PENDING), seconds)

    # When the beat task runs (called directly, as the worker would)
    count = orders_expire_stale()

    # Then it reports two expirations, and a second run none
    assert count == 2
    assert orders_expire_stale() == 0
    assert Order.objects.filter(status=OrderStatus.EXPIRED).count() == 2


def _orders_consumer_catches_up(*, after_event_id: int) -> None:
    """Hand every event recorded after `after_event_id` (and any they cause) to the orders
    consumer's registered handlers, oldest first, as the consumer would once it catches up."""
    handlers = CONSUMERS["orders"].handlers
    for event in events_recorded_after(after_event_id):
        if event.event_type in handlers:
            events_apply(group="orders-catching-up", events=[event], handlers=handlers)


@pytest.mark.django_db(transaction=True)  # the charge runs outside any transaction
def test_a_captured_charge_pays_its_order_in_the_same_transaction():
    # Given a reserved order
    payment_gateway.cache_clear()
    order = _order_in(OrderStatus.RESERVED)
    before_charge = OutboxEvent.objects.order_by("id").last()
    assert before_charge is not None

    # When its charge is captured and recorded
    payment = payment_charge_for_order(order_id=order.id)

    # Then the order is paid with no consumer in between, and both events say so, in order
    order.refresh_from_db()
    assert payment is not None and payment.status == Payment.Status.CAPTURED
    assert order.status == OrderStatus.PAID
    recorded = [event.event_type for event in events_recorded_after(before_charge.id)]
    assert recorded == ["payments.processed", "orders.paid"]


@pytest.mark.django_db(transaction=True)  # the charge runs outside any transaction
def test_cancel_after_a_captured_charge_is_refunded_when_the_consumer_catches_up():
    # Given a reserved order charged successfully (so paid)
    payment_gateway.cache_clear()
    order = _order_in(OrderStatus.RESERVED)
    before_charge = OutboxEvent.objects.order_by("id").last()
    assert before_charge is not None
    payment = payment_charge_for_order(order_id=order.id)
    assert payment is not None

    # When the customer cancels it and the orders consumer catches up
    order_cancel(order_id=order.id, actor="customer")
    _orders_consumer_catches_up(after_event_id=before_charge.id)

    # Then the charge is refunded once
    order.refresh_from_db()
    payment.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert payment.status == Payment.Status.REFUNDED
    assert len(_events(order, "payments.refunded")) == 1


@pytest.mark.django_db(transaction=True)  # the charge runs outside any transaction
@pytest.mark.parametrize("ended_by", ["cancel", "expiry"])
def test_a_charge_that_lands_after_its_order_ended_is_recorded_and_refunded(
    ended_by, short_timeouts
):
    # Given a reserved order whose charge the provider has taken but we have not recorded
    payment_gateway.cache_clear()
    order = _order_in(OrderStatus.RESERVED)
    before_charge = OutboxEvent.objects.order_by("id").last()
    assert before_charge is not None
    charges = payment_charges_request(order_ids=[order.id])

    # When the order is cancelled or expires meanwhile, then the charge is recorded and
    # the orders consumer catches up
    if ended_by == "cancel":
        order_cancel(order_id=order.id, actor="customer")
    else:
        _age(order, 700)
        assert order_expire_stale() == [order.id]
    payments = payments_record_charges(charges=charges, causes=[PaymentCause(order.id)])
    _orders_consumer_catches_up(after_event_id=before_charge.id)

    # Then the order stays ended, the charge was recorded with a refund due, and the
    # money went back once
    order.refresh_from_db()
    payment = payments[order.id]
    payment.refresh_from_db()
    ended = OrderStatus.CANCELLED if ended_by == "cancel" else OrderStatus.EXPIRED
    assert order.status == ended
    [due] = _events(order, "payments.refund_due")
    assert due.envelope["data"]["order_status"] == ended
    assert payment.status == Payment.Status.REFUNDED
    assert len(_events(order, "payments.refunded")) == 1
    assert _events(order, "orders.paid") == []


# --- order_timeline ----------------------------------------------------------------------


def test_timeline_lists_every_event_of_the_order_oldest_first():
    # Given an order walked to delivery, and another order
    order = _order_in(OrderStatus.DELIVERED)
    other = _order_in(OrderStatus.PENDING)

    # When its timeline is read
    timeline = list(order_timeline(order_id=order.id))

    # Then it holds its own events, oldest first
    assert [event.event_type for event in timeline] == [
        "orders.created",
        "orders.reserved",
        "orders.paid",
        "orders.shipped",
        "orders.delivered",
    ]
    assert [event.id for event in timeline] == sorted(event.id for event in timeline)
    assert all(event.aggregate_id == str(order.id) for event in timeline)
    assert _event_types(other) == ["orders.created"]


# --- inventory: commit on shipping, release on cancellation ------------------------------


def _stock(order: Order) -> StockLevel:
    line = order.lines.get()
    return StockLevel.objects.get(product__sku=line.sku)


def test_commit_takes_reserved_units_out_of_on_hand_once():
    # Given an order with 3 units reserved out of 10
    order = _order_in(OrderStatus.PAID, quantity=3, on_hand=10)
    stock = _stock(order)
    assert (stock.on_hand, stock.reserved) == (10, 3)

    # When the reservation is committed (the order shipped), twice
    first = stock_commit_for_order(order_id=order.id)
    second = stock_commit_for_order(order_id=order.id)

    # Then on-hand and reserved both dropped by 3, only once
    assert (first, second) == (1, 0)
    stock.refresh_from_db()
    assert (stock.on_hand, stock.reserved, stock.available) == (7, 0, 7)
    assert Reservation.objects.get(order_id=order.id).status == Reservation.Status.COMMITTED


def test_release_after_commit_gives_nothing_back():
    # Given a committed reservation
    order = _order_in(OrderStatus.PAID, quantity=3, on_hand=10)
    stock_commit_for_order(order_id=order.id)

    # When a (late) release arrives
    released = stock_release_for_order(order_id=order.id)

    # Then nothing changes
    assert released == 0
    stock = _stock(order)
    assert (stock.on_hand, stock.reserved) == (7, 0)
    assert Reservation.objects.get(order_id=order.id).status == Reservation.Status.COMMITTED


def test_release_gives_reserved_units_back_once_and_commit_after_it_does_nothing():
    # Given an order with 3 units reserved out of 10
    order = _order_in(OrderStatus.RESERVED, quantity=3, on_hand=10)

    # When the reservation is released twice, then a commit arrives
    counts = (
        stock_release_for_order(order_id=order.id),
        stock_release_for_order(order_id=order.id),
        stock_commit_for_order(order_id=order.id),
    )

    # Then the units went back to available once, and on-hand is untouched
    assert counts == (1, 0, 0)
    stock = _stock(order)
    assert (stock.on_hand, stock.reserved) == (10, 0)
    assert Reservation.objects.get(order_id=order.id).status == Reservation.Status.RELEASED
