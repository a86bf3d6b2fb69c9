"""The payment step of the saga: the fake gateway and the charge/refund services."""

import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from kafka_bridge.models import OutboxEvent
from orders.models import FakeGatewayTransaction, Order, Payment
from orders.payments import (
    FakePaymentGateway,
    GatewayUnavailable,
    PaymentCause,
    payment_charge_for_order,
    payment_charges_request,
    payment_gateway,
    payment_refund_for_order,
    payments_record_charges,
)
from orders.services import (
    OrderItemInput,
    order_cancel,
    order_create,
    order_mark_reserved,
)
from orders.status import OrderStatus
from testing.factories import customer_create, product_with_stock


@pytest.fixture(autouse=True)
def _fresh_gateway():  # type: ignore[no-untyped-def]
    """payment_gateway() is cached: every test builds it from its own settings."""
    payment_gateway.cache_clear()
    yield
    payment_gateway.cache_clear()


def _order(*, token: str = "", price: str = "12.50", quantity: int = 2) -> Order:
    product = product_with_stock(price=price)
    order, _ = order_create(
        customer=customer_create(),
        items=[OrderItemInput(sku=product.sku, quantity=quantity)],
        payment_token=token,
    )
    return order


def _reserved_order(**kwargs: object) -> Order:
    order = _order(**kwargs)  # type: ignore[arg-type]
    order_mark_reserved(order_id=order.id)
    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    return order


def _events(order: Order, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type=event_type))


def _charge(gateway: object, *, amount: str = "10.00", token: str = "tok_ok", key: str = ""):  # type: ignore[no-untyped-def]
    return gateway.charge(  # type: ignore[attr-defined]
        amount=Decimal(amount),
        currency="EUR",
        token=token,
        idempotency_key=key or f"key-{uuid.uuid4()}",
    )


# --- FakePaymentGateway ------------------------------------------------------------------


@pytest.mark.django_db
def test_fake_gateway_accepts_an_ordinary_charge_and_records_it():
    # Given the configured gateway
    gateway = payment_gateway()

    # When an ordinary token is charged
    result = _charge(gateway, amount="10.00", key="k-ok")

    # Then it succeeds, and the provider's ledger holds one charge with that reference
    assert result.succeeded
    assert result.decline_reason == ""
    row = FakeGatewayTransaction.objects.get(idempotency_key="k-ok")
    assert (row.kind, row.succeeded, row.amount) == ("charge", True, Decimal("10.00"))
    assert row.reference == result.reference
    assert result.reference.startswith("fake_charge_")


@pytest.mark.django_db
def test_fake_gateway_declines_the_decline_token():
    # Given the configured gateway
    gateway = payment_gateway()

    # When the decline token is charged
    result = _charge(gateway, token="tok_decline", key="k-decline")

    # Then the card is declined, and the decline is on the ledger
    assert not result.succeeded
    assert result.decline_reason == "card_declined"
    row = FakeGatewayTransaction.objects.get(idempotency_key="k-decline")
    assert (row.succeeded, row.decline_reason) == (False, "card_declined")


@pytest.mark.django_db
def test_fake_gateway_declines_amounts_above_the_configured_limit(settings):
    # Given a gateway configured to decline anything above 50
    settings.PAYMENTS = {**settings.PAYMENTS, "OPTIONS": {"decline_above": "50"}}
    payment_gateway.cache_clear()
    gateway = payment_gateway()

    # When 50.00 and 50.01 are charged
    at_limit = _charge(gateway, amount="50.00")
    above = _charge(gateway, amount="50.01")

    # Then the limit itself passes and the amount above it is declined
    assert at_limit.succeeded
    assert not above.succeeded
    assert above.decline_reason == "amount_above_limit"


@pytest.mark.django_db
def test_fake_gateway_without_a_limit_accepts_large_amounts(settings):
    # Given a gateway without decline_above
    settings.PAYMENTS = {**settings.PAYMENTS, "OPTIONS": {}}
    payment_gateway.cache_clear()

    # When a large amount is charged
    result = _charge(payment_gateway(), amount="99999999.99")

    # Then it succeeds
    assert result.succeeded


@pytest.mark.django_db
def test_fake_gateway_same_idempotency_key_returns_the_first_result():
    # Given a charge made with a key
    gateway = FakePaymentGateway()
    first = _charge(gateway, amount="10.00", key="order-x-charge")

    # When the same key is charged again (even with another amount)
    second = _charge(gateway, amount="20.00", key="order-x-charge")

    # Then the first answer comes back and the ledger still has one row
    assert second == first
    assert FakeGatewayTransaction.objects.filter(idempotency_key="order-x-charge").count() == 1
    assert FakeGatewayTransaction.objects.get().amount == Decimal("10.00")


@pytest.mark.django_db
def test_fake_gateway_unavailable_token_raises_and_records_nothing():
    # Given the configured gateway
    gateway = payment_gateway()

    # When the "provider down" token is charged
    with pytest.raises(GatewayUnavailable):
        _charge(gateway, token="tok_unavailable")

    # Then nothing is on the ledger
    assert not FakeGatewayTransaction.objects.exists()


# --- payment_charge_for_order ------------------------------------------------------------


@pytest.mark.django_db
def test_provider_calls_inside_a_database_transaction_are_refused():
    # Given a reserved order, and a transaction open (pytest-django's test transaction)
    order = _reserved_order()

    # When a charge is attempted inside it
    with pytest.raises(RuntimeError, match="must not run inside a database transaction"):
        payment_charge_for_order(order_id=order.id)

    # Then the provider was never called
    assert not FakeGatewayTransaction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_charge_of_a_reserved_order_captures_and_records_payments_processed():
    # Given a reserved order for 2 x 12.50
    order = _reserved_order(price="12.50", quantity=2)

    # When it is charged
    payment = payment_charge_for_order(order_id=order.id)

    # Then a captured payment of the order total exists
    assert payment is not None
    payment.refresh_from_db()
    assert payment.order_id == order.id
    assert payment.status == Payment.Status.CAPTURED
    assert payment.amount == Decimal("25.00")
    assert payment.currency == order.currency
    assert payment.provider == "fake"
    assert payment.failure_reason == ""
    # And the provider was called once, with the order's idempotency key
    charge = FakeGatewayTransaction.objects.get()
    assert charge.idempotency_key == f"order-{order.id}-charge"
    assert charge.reference == payment.provider_reference
    # And one payments.processed event carries the amount and the reference
    [event] = _events(order, "payments.processed")
    data = event.envelope["data"]
    assert Decimal(data["amount"]) == Decimal("25.00")
    assert data["currency"] == order.currency
    assert data["payment_id"] == str(payment.id)
    assert data["provider_reference"] == payment.provider_reference
    assert data["customer_id"] == order.customer_id
    assert event.key == str(order.customer_id)
    assert _events(order, "payments.failed") == []


@pytest.mark.django_db(transaction=True)
def test_charge_passes_the_causation_id_to_the_event():
    # Given a reserved order and the event that caused the charge
    order = _reserved_order()
    cause = uuid.uuid4()

    # When it is charged because of that event
    payment_charge_for_order(order_id=order.id, causation_id=cause)

    # Then the payment event names its cause
    [event] = _events(order, "payments.processed")
    assert event.envelope["causation_id"] == str(cause)


@pytest.mark.django_db(transaction=True)
def test_charging_twice_returns_the_same_payment_and_charges_once():
    # Given a reserved order already charged
    order = _reserved_order()
    first = payment_charge_for_order(order_id=order.id)

    # When the charge is requested again (a redelivered event)
    second = payment_charge_for_order(order_id=order.id)

    # Then the same payment comes back, with one ledger row and one event
    assert first is not None and second is not None
    assert second.id == first.id
    assert Payment.objects.filter(order=order).count() == 1
    assert FakeGatewayTransaction.objects.count() == 1
    assert len(_events(order, "payments.processed")) == 1


@pytest.mark.django_db(transaction=True)
def test_pending_order_is_not_charged():
    # Given an order still pending (stock not reserved yet)
    order = _order()

    # When a charge is requested
    result = payment_charge_for_order(order_id=order.id)

    # Then nothing is charged or recorded
    assert result is None
    assert not Payment.objects.exists()
    assert not FakeGatewayTransaction.objects.exists()
    assert not OutboxEvent.objects.filter(event_type__startswith="payments.").exists()


@pytest.mark.django_db(transaction=True)
def test_cancelled_order_is_not_charged():
    # Given a reserved order that the customer cancelled
    order = _reserved_order()
    order_cancel(order_id=order.id, actor="customer")

    # When the (late) charge is requested
    result = payment_charge_for_order(order_id=order.id)

    # Then nothing is charged or recorded
    assert result is None
    assert not Payment.objects.exists()
    assert not FakeGatewayTransaction.objects.exists()
    assert not OutboxEvent.objects.filter(event_type__startswith="payments.").exists()


@pytest.mark.django_db(transaction=True)
def test_unknown_order_is_not_charged():
    assert payment_charge_for_order(order_id=uuid.uuid4()) is None
    assert not FakeGatewayTransaction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_declined_charge_records_a_failed_payment_and_payments_failed():
    # Given a reserved order paid with the decline token
    order = _reserved_order(token="tok_decline", price="12.50", quantity=2)

    # When it is charged
    payment = payment_charge_for_order(order_id=order.id)

    # Then the payment is failed with the decline reason
    assert payment is not None
    payment.refresh_from_db()
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_reason == "card_declined"
    # And one payments.failed event says why; no payments.processed
    [event] = _events(order, "payments.failed")
    data = event.envelope["data"]
    assert data["reason"] == "card_declined"
    assert Decimal(data["amount"]) == Decimal("25.00")
    assert _events(order, "payments.processed") == []
    # And the order moved in the same transaction: payment failed, then cancelled (the
    # cancel is what releases its stock)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert len(_events(order, "orders.payment_failed")) == 1
    assert len(_events(order, "orders.cancelled")) == 1


@pytest.mark.django_db(transaction=True)
def test_charge_above_the_limit_fails_with_amount_above_limit(settings):
    # Given a limit of 20 and a reserved order of 25.00
    settings.PAYMENTS = {**settings.PAYMENTS, "OPTIONS": {"decline_above": "20"}}
    payment_gateway.cache_clear()
    order = _reserved_order(price="12.50", quantity=2)

    # When it is charged
    payment = payment_charge_for_order(order_id=order.id)

    # Then it fails for the amount
    assert payment is not None
    assert payment.status == Payment.Status.FAILED
    assert payment.failure_reason == "amount_above_limit"
    [event] = _events(order, "payments.failed")
    assert event.envelope["data"]["reason"] == "amount_above_limit"


@pytest.mark.django_db(transaction=True)
def test_unavailable_gateway_propagates_and_leaves_no_payment():
    # Given a reserved order whose token makes the provider unavailable
    order = _reserved_order(token="tok_unavailable")

    # When it is charged
    with pytest.raises(GatewayUnavailable):
        payment_charge_for_order(order_id=order.id)

    # Then no payment and no payment event exist, so a retry may charge it later
    assert not Payment.objects.exists()
    assert not OutboxEvent.objects.filter(event_type__startswith="payments.").exists()


# --- payment_charges_total (the payment failure alert) ----------------------------------


def _charges_counted() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("payment_charges_total", {"outcome": outcome}) or 0.0
        for outcome in ("captured", "failed")
    }


@pytest.mark.django_db(transaction=True)
def test_recorded_charges_are_counted_by_outcome_once_committed():
    # Given a reserved order that will be captured and one that will be declined
    ok, declined = _reserved_order(), _reserved_order(token="tok_decline")
    before = _charges_counted()

    # When both are charged, and the first is charged again (a redelivered event)
    payment_charge_for_order(order_id=ok.id)
    payment_charge_for_order(order_id=declined.id)
    payment_charge_for_order(order_id=ok.id)

    # Then one capture and one failure are counted: the repeat recorded nothing
    after = _charges_counted()
    assert after["captured"] - before["captured"] == 1
    assert after["failed"] - before["failed"] == 1


@pytest.mark.django_db(transaction=True)
def test_charges_recorded_in_a_transaction_that_rolls_back_are_not_counted():
    # Given a declined charge the provider answered
    order = _reserved_order(token="tok_decline")
    charges = payment_charges_request(order_ids=[order.id])
    before = _charges_counted()

    # When it is recorded in a consumer batch's transaction that then fails
    with pytest.raises(RuntimeError), transaction.atomic():
        payments_record_charges(charges=charges, causes=[PaymentCause(order.id)])
        raise RuntimeError("the batch failed after recording it")

    # Then nothing is counted (the batch is retried, and counted when it commits)
    assert _charges_counted() == before
    assert not Payment.objects.exists()


# --- payment_refund_for_order ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_refund_of_a_captured_payment_refunds_once_and_records_payments_refunded():
    # Given a captured payment
    order = _reserved_order(price="12.50", quantity=2)
    payment = payment_charge_for_order(order_id=order.id)
    assert payment is not None

    # When it is refunded
    refunded = payment_refund_for_order(order_id=order.id)

    # Then the payment is refunded with the provider's refund reference
    assert refunded is not None
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    refund = FakeGatewayTransaction.objects.get(kind=FakeGatewayTransaction.Kind.REFUND)
    assert refund.idempotency_key == f"order-{order.id}-refund"
    assert refund.amount == Decimal("25.00")
    assert payment.refund_reference == refund.reference
    # And one payments.refunded event carries the amount
    [event] = _events(order, "payments.refunded")
    data = event.envelope["data"]
    assert Decimal(data["amount"]) == Decimal("25.00")
    assert data["payment_id"] == str(payment.id)
    assert data["provider_reference"] == refund.reference


@pytest.mark.django_db(transaction=True)
def test_refunding_twice_refunds_once():
    # Given a refunded payment
    order = _reserved_order()
    payment_charge_for_order(order_id=order.id)
    payment_refund_for_order(order_id=order.id)

    # When the refund is requested again (a redelivered orders.cancelled)
    again = payment_refund_for_order(order_id=order.id)

    # Then nothing more happens
    assert again is not None
    assert again.status == Payment.Status.REFUNDED
    assert FakeGatewayTransaction.objects.filter(kind="refund").count() == 1
    assert len(_events(order, "payments.refunded")) == 1


@pytest.mark.django_db(transaction=True)
def test_failed_payment_is_not_refunded():
    # Given a declined payment
    order = _reserved_order(token="tok_decline")
    payment_charge_for_order(order_id=order.id)

    # When a refund is requested
    result = payment_refund_for_order(order_id=order.id)

    # Then the payment stays failed and no refund happens
    assert result is not None
    assert result.status == Payment.Status.FAILED
    assert not FakeGatewayTransaction.objects.filter(kind="refund").exists()
    assert _events(order, "payments.refunded") == []


@pytest.mark.django_db(transaction=True)
def test_refund_without_a_payment_does_nothing():
    # Given an order that was never charged
    order = _order()

    # When a refund is requested
    result = payment_refund_for_order(order_id=order.id)

    # Then nothing is returned or recorded
    assert result is None
    assert not FakeGatewayTransaction.objects.exists()
    assert _events(order, "payments.refunded") == []
