"""The risk check against the database: histories read set-based, assessments recorded once
with their event, holds and blocks applied to the orders, and the staff review of a hold."""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kafka_bridge.models import OutboxEvent
from orders.events import ShippingAddress
from orders.models import Order, Payment
from orders.payments import payment_charge_for_order, payment_charges_retry, payment_gateway
from orders.services import (
    OrderChange,
    OrderItemInput,
    order_cancel,
    order_create,
    order_mark_reserved,
    orders_apply_changes,
)
from orders.status import InvalidOrderTransition, OrderStatus
from risk.models import RiskAssessment
from risk.review import Decision, Review
from risk.services import (
    BLOCKED_REASON,
    ReviewRefused,
    RiskCheck,
    risk_orders_assess,
    risk_review_approve,
    risk_review_reject,
)
from testing.factories import SHIPPING_ADDRESS, customer_create, product_with_stock

# Charges refuse to run inside a transaction: each test commits for real.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _risk_on(settings):  # type: ignore[no-untyped-def]
    """The check on, with the documented defaults (the test environment turns it off)."""
    settings.RISK = {**settings.RISK, "ENABLED": True}
    payment_gateway.cache_clear()
    yield
    payment_gateway.cache_clear()


def _reserved(customer=None, *, price: str = "10.00", quantity: int = 1, token: str = "", **kw):  # type: ignore[no-untyped-def]
    product = product_with_stock(price=price, on_hand=10_000)
    order, _ = order_create(
        customer=customer or customer_create(),
        items=[OrderItemInput(sku=product.sku, quantity=quantity)],
        payment_token=token,
        **kw,
    )
    order_mark_reserved(order_id=order.id)
    return Order.objects.get(id=order.id)


def _paid(customer, *, price: str = "10.00", country: str = "DE") -> Order:  # type: ignore[no-untyped-def]
    address = ShippingAddress(**{**SHIPPING_ADDRESS, "country": country})
    order = _reserved(customer, price=price, shipping_address=address)
    payment = payment_charge_for_order(order_id=order.id)
    assert payment is not None and payment.status == "captured"
    return order


def _placed(order: Order, ago: timedelta, *, charged_ago: timedelta | None = None) -> Order:
    """Move the order (and its charge) back in time."""
    now = timezone.now()
    Order.objects.filter(id=order.id).update(created_at=now - ago)
    Payment.objects.filter(order_id=order.id).update(created_at=now - (charged_ago or ago))
    return order


def _declined(customer, ago: timedelta, *, charged_ago: timedelta | None = None) -> Order:  # type: ignore[no-untyped-def]
    order = _reserved(customer, token="tok_decline")
    assert payment_charge_for_order(order_id=order.id).status == "failed"  # type: ignore[union-attr]
    return _placed(order, ago, charged_ago=charged_ago)


def _assess(*orders: Order) -> dict[uuid.UUID, RiskAssessment]:
    return risk_orders_assess(checks=[RiskCheck(o.id, uuid.uuid4()) for o in orders])


def _events(order: Order, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type=event_type))


def _status(order: Order) -> str:
    return Order.objects.get(id=order.id).status


def test_a_normal_order_is_approved_and_stays_reserved_for_its_charge():
    # Given a reserved order of a new customer, small
    order = _reserved()

    # When it is assessed
    assessment = _assess(order)[order.id]

    # Then it scores nothing, stays reserved, and its assessment and event are recorded
    assert (assessment.score, assessment.decision) == (0, Decision.APPROVE)
    assert _status(order) == OrderStatus.RESERVED
    stored = RiskAssessment.objects.get(order_id=order.id)
    assert [r["rule"] for r in stored.rules][:2] == ["customer_velocity", "token_velocity"]
    [event] = _events(order, "risk.assessed")
    data = event.envelope["data"]
    assert (data["score"], data["decision"], data["reasons"]) == (0, "approve", [])
    assert {r["rule"]: r["points"] for r in data["rules"]}["customer_velocity"] == 0
    assert (data["review_score"], data["block_score"]) == (50, 100)


def test_a_burst_from_one_customer_is_held_from_the_order_over_the_limit(settings):
    # Given a customer placing 7 orders in a row (the limit is 5 per hour)
    customer = customer_create()
    orders = [_reserved(customer) for _ in range(7)]

    # When they are assessed in one batch
    assessed = _assess(*orders)

    # Then the first 5 are approved and the 6th and 7th held, saying why
    assert [assessed[o.id].decision for o in orders] == [Decision.APPROVE] * 5 + [Decision.HOLD] * 2
    assert [_status(o) for o in orders][-3:] == ["reserved", "held", "held"]
    held = Order.objects.get(id=orders[5].id)
    assert held.status_reason == "held for risk review (score 60)"
    [event] = _events(held, "orders.held")
    assert event.envelope["data"]["previous_status"] == "reserved"
    assert assessed[held.id].reasons == ["6 orders by this customer in 60 min (more than 5)"]


def test_an_order_at_the_block_score_is_cancelled_with_its_reasons(settings):
    # Given a customer with 3 declined payments lately, then an order over the burst limit
    settings.RISK = {**settings.RISK, "CUSTOMER_MAX_ORDERS": 3}
    customer = customer_create()
    for _ in range(3):
        declined = _reserved(customer, token="tok_decline")
        assert payment_charge_for_order(order_id=declined.id).status == "failed"  # type: ignore[union-attr]
    order = _reserved(customer)

    # When it is assessed
    assessment = _assess(order)[order.id]

    # Then velocity (60) and the declines (40) reach the block score: cancelled, reasons kept
    assert (assessment.score, assessment.decision) == (100, Decision.BLOCK)
    assert assessment.reasons == [
        "4 orders by this customer in 60 min (more than 3)",
        "3 declined payments of the customer in 24 h (more than 2)",
    ]
    cancelled = Order.objects.get(id=order.id)
    assert (cancelled.status, cancelled.status_reason) == ("cancelled", BLOCKED_REASON)
    [event] = _events(order, "risk.assessed")
    assert event.envelope["data"]["reasons"] == assessment.reasons
    assert [e.event_type for e in OutboxEvent.objects.filter(aggregate_id=str(order.id))][-2:] == [
        "risk.assessed",
        "orders.cancelled",
    ]


def test_orders_of_one_token_count_across_customers(settings):
    # Given three customers paying with one token (the limit is 2 orders per token)
    settings.RISK = {**settings.RISK, "TOKEN_MAX_ORDERS": 2}
    orders = [_reserved(customer_create(), token="tok_shared") for _ in range(3)]
    other = _reserved(customer_create(), token="tok_other")

    # When they are assessed, as separate batches (as several processes would)
    assessed = {o.id: _assess(o)[o.id] for o in [*orders, other]}

    # Then the third order of the token is held; the other token is not concerned
    assert [assessed[o.id].score for o in orders] == [0, 0, 60]
    assert assessed[other.id].score == 0
    assert _status(orders[2]) == "held"


def test_amount_far_above_the_usual_and_a_new_country_add_up(settings):
    # Given a customer with three paid orders of 10.00 shipped to DE
    customer = customer_create()
    for _ in range(3):
        _paid(customer, country="DE")

    # When an order of 60.00 to FR is assessed
    order = _reserved(
        customer,
        price="60.00",
        shipping_address=ShippingAddress(**{**SHIPPING_ADDRESS, "country": "FR"}),
    )
    assessment = _assess(order)[order.id]

    # Then both rules score: 50 + 25, held
    points = {r["rule"]: r["points"] for r in assessment.rules if r["points"]}
    assert points == {"amount_spike": 50, "new_country": 25}
    assert assessment.decision == Decision.HOLD


def test_a_large_first_order_is_held_and_a_large_later_one_is_not():
    newcomer = _reserved(price="250.00", quantity=2)
    customer = customer_create()
    _paid(customer, price="400.00")
    regular = _reserved(customer, price="500.00")

    assessed = _assess(newcomer, regular)

    assert assessed[newcomer.id].decision == Decision.HOLD
    assert assessed[newcomer.id].reasons == ["first order, total 500.00 (at least 500)"]
    assert assessed[regular.id].decision == Decision.APPROVE


def test_a_redelivered_check_finds_the_assessment_and_records_nothing_more():
    # Given a held order (its assessment made and acted upon)
    customer = customer_create()
    orders = [_reserved(customer) for _ in range(6)]
    first = _assess(*orders)
    events = OutboxEvent.objects.count()

    # When the same orders are checked again (a redelivered inventory.reserved)
    again = _assess(*orders)

    # Then nothing is counted or recorded twice: same decisions, no new event
    assert {i: a.decision for i, a in again.items()} == {i: a.decision for i, a in first.items()}
    assert OutboxEvent.objects.count() == events
    assert RiskAssessment.objects.filter(order_id__in=[o.id for o in orders]).count() == 6


def test_a_redelivered_reservation_never_takes_a_held_order_back_to_reserved():
    # Given a held order
    customer = customer_create()
    orders = [_reserved(customer) for _ in range(6)]
    _assess(*orders)
    held = orders[5]
    assert _status(held) == "held"

    # When its inventory.reserved is handled again (the orders consumer's change)
    orders_apply_changes(
        changes=[OrderChange(held.id, OrderStatus.RESERVED, expected=OrderStatus.PENDING)]
    )

    # Then it stays held
    assert _status(held) == "held"


def test_orders_no_longer_reserved_are_not_assessed():
    order = _reserved()
    order_cancel(order_id=order.id, actor="customer")

    assert _assess(order) == {}
    assert not RiskAssessment.objects.exists()


def test_with_the_check_off_nothing_is_assessed(settings):
    settings.RISK = {**settings.RISK, "ENABLED": False}
    order = _reserved(price="9000.00")

    assert _assess(order) == {}
    assert not _events(order, "risk.assessed")
    assert _status(order) == "reserved"


def test_a_batch_costs_the_same_queries_whatever_its_size():
    def queries(count: int) -> int:
        orders = [
            _reserved(customer_create(), token=f"tok_{uuid.uuid4().hex}") for _ in range(count)
        ]
        with CaptureQueriesContext(connection) as captured:
            _assess(*orders)
        return len(captured)

    assert queries(2) == queries(20)


# --- staff review --------------------------------------------------------------------------
def _held_order() -> Order:
    customer = customer_create()
    orders = [_reserved(customer) for _ in range(6)]
    _assess(*orders)
    held = Order.objects.get(id=orders[5].id)
    assert held.status == "held"
    return held


def test_approving_a_held_order_reserves_it_again_queues_its_charge_and_notes_the_review():
    held = _held_order()

    with mock.patch("orders.tasks.orders_charge_awaiting.delay") as delay:
        order = risk_review_approve(order_id=held.id, reviewer="alice")

    assert order.status == "reserved"
    delay.assert_called_once_with([str(held.id)])
    review = RiskAssessment.objects.get(order_id=held.id)
    assert (review.review, review.reviewed_by) == (Review.APPROVED, "alice")
    [event] = _events(held, "orders.reserved")[-1:]
    assert (event.envelope["data"]["previous_status"], event.envelope["data"]["actor"]) == (
        "held",
        "staff",
    )
    # and the queued task charges it
    assert payment_charges_retry(order_ids=[held.id]) == 1
    assert Order.objects.get(id=held.id).payment.status == "captured"


def test_rejecting_a_held_order_cancels_it_and_notes_the_review():
    held = _held_order()

    order = risk_review_reject(order_id=held.id, reviewer="bob")

    assert (order.status, order.status_reason) == (
        "cancelled",
        "rejected in the payment risk review",
    )
    assert RiskAssessment.objects.get(order_id=held.id).review == Review.REJECTED
    [event] = _events(held, "orders.cancelled")
    assert event.envelope["data"]["actor"] == "staff"


def test_an_order_that_is_not_held_cannot_be_reviewed():
    held = _held_order()
    risk_review_reject(order_id=held.id, reviewer="bob")

    with pytest.raises(InvalidOrderTransition) as refused:
        risk_review_approve(order_id=held.id, reviewer="alice")
    assert refused.value.current == "cancelled"
    with pytest.raises(Order.DoesNotExist):
        risk_review_reject(order_id=uuid.uuid4(), reviewer="bob")


def test_an_assessment_is_reviewed_once():
    held = _held_order()
    RiskAssessment.objects.filter(order_id=held.id).update(review=Review.APPROVED)

    with pytest.raises(ReviewRefused):
        risk_review_reject(order_id=held.id, reviewer="bob")
    assert _status(held) == "held"  # nothing moved: the review rolled the move back


def test_history_counts_from_each_orders_own_time_and_reads_its_latest_paid_orders(settings):
    # Given limits low enough for every count to show in the reasons, 3 paid orders read ...
    settings.RISK = {
        **settings.RISK,
        "CUSTOMER_MAX_ORDERS": 1,
        "TOKEN_MAX_ORDERS": 1,
        "FAILED_PAYMENTS_MAX": 0,
        "HISTORY_ORDERS": 3,
    }
    minute, day = timedelta(minutes=1), timedelta(days=1)
    customer, others = customer_create(), [customer_create() for _ in range(3)]
    # ... a customer with more paid orders than that: the oldest, large and to FR, is beyond
    # the latest 3 before either order assessed; one to ES comes between the two
    _placed(_paid(customer, price="1000.00", country="FR"), 3 * day)
    for n in range(3):
        _placed(_paid(customer, country="DE"), 2 * day - n * minute)
    # ... orders in and out of the hour before the first order, of the customer and of its
    # token (anyone's) ...
    _placed(_reserved(customer), 90 * minute)
    _placed(_reserved(customer), 40 * minute)
    _placed(_reserved(others[0], token="tok_decline"), 30 * minute)
    _placed(_reserved(others[0], token="tok_decline"), 120 * minute)
    # ... declined charges in and out of the day before now, the customer's and the token's
    _declined(customer, 120 * minute)
    _declined(customer, 3 * day, charged_ago=2 * day)
    _declined(others[1], 180 * minute)
    _declined(others[2], 4 * day, charged_ago=3 * day)
    fr = ShippingAddress(**{**SHIPPING_ADDRESS, "country": "FR"})
    first = _placed(
        _reserved(customer, price="51.00", token="tok_decline", shipping_address=fr),
        10 * minute,
    )
    _placed(_paid(customer, country="ES"), 5 * minute)
    second = _placed(_reserved(customer, shipping_address=fr), minute)

    # When both are assessed in one batch
    assessed = _assess(first, second)

    # Then each order's counts and paid history are its own
    def reasons(order: Order) -> dict[str, str]:
        return {r["rule"]: r["reason"] for r in assessed[order.id].rules if r["points"]}

    assert reasons(first) == {
        "customer_velocity": "2 orders by this customer in 60 min (more than 1)",
        "token_velocity": "2 orders with this payment token in 60 min (more than 1)",
        "failed_payments": "2 declined payments of this payment token in 24 h (more than 0)",
        "amount_spike": "total 51.00 is 5.1x the median (10.00) of 3 earlier paid orders "
        "(more than 5.0x)",
        "new_country": "ships to FR; earlier paid orders went to DE",
    }
    assert reasons(second) == {
        "customer_velocity": "4 orders by this customer in 60 min (more than 1)",
        "failed_payments": "1 declined payments of the customer in 24 h (more than 0)",
        "new_country": "ships to FR; earlier paid orders went to DE, ES",
    }
