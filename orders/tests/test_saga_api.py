"""The saga's API: cancel (customer), ship and deliver (staff), and the saga in the detail."""

import uuid
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from kafka_bridge.models import OutboxEvent
from orders.models import Order, Shipment
from orders.payments import payment_charge_for_order, payment_gateway
from orders.services import (
    OrderItemInput,
    order_create,
    order_mark_paid,
    order_mark_reserved,
    order_ship,
)
from orders.status import OrderStatus
from testing.factories import api_client_for, customer_create, product_with_stock, staff_create

pytestmark = pytest.mark.django_db

ORDERS_URL = "/api/orders/"


def _url(order_id: object, action: str = "") -> str:
    return f"{ORDERS_URL}{order_id}/{action + '/' if action else ''}"


def _order(customer=None, *, price: str = "12.50", quantity: int = 2) -> Order:  # type: ignore[no-untyped-def]
    product = product_with_stock(price=price)
    order, _ = order_create(
        customer=customer or customer_create(),
        items=[OrderItemInput(sku=product.sku, quantity=quantity)],
    )
    return order


def _paid_order(customer=None) -> Order:  # type: ignore[no-untyped-def]
    order = _order(customer)
    order_mark_reserved(order_id=order.id)
    order_mark_paid(order_id=order.id)
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    return order


def _shipped_order(customer=None) -> Order:  # type: ignore[no-untyped-def]
    order = _paid_order(customer)
    order_ship(order_id=order.id)
    order.refresh_from_db()
    return order


def _status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


@pytest.fixture
def staff_client() -> APIClient:
    return api_client_for(staff_create())


# --- cancel ------------------------------------------------------------------------------


def test_customer_cancels_an_own_pending_order():
    # Given a customer's pending order
    customer = customer_create()
    order = _order(customer)

    # When the customer cancels it
    response = api_client_for(customer).post(_url(order.id, "cancel"))

    # Then it is cancelled, and the answer shows the cancellation in the timeline
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == str(order.id)
    assert body["status"] == "cancelled"
    assert body["status_reason"] == "cancelled by customer"
    assert [entry["event_type"] for entry in body["timeline"]] == [
        "orders.created",
        "orders.cancelled",
    ]
    assert _status(order) == OrderStatus.CANCELLED
    event = OutboxEvent.objects.get(aggregate_id=str(order.id), event_type="orders.cancelled")
    assert event.envelope["data"]["actor"] == "customer"


def test_cancel_after_shipping_is_409_naming_the_status():
    # Given a customer's order that has shipped
    customer = customer_create()
    order = _shipped_order(customer)

    # When the customer tries to cancel it
    response = api_client_for(customer).post(_url(order.id, "cancel"))

    # Then it is a conflict that names the current status, and nothing changes
    assert response.status_code == 409, response.content
    assert response.json()["status"] == "shipped"
    assert "detail" in response.json()
    assert _status(order) == OrderStatus.SHIPPED
    assert not OutboxEvent.objects.filter(event_type="orders.cancelled").exists()


def test_cancelling_someone_elses_order_is_404_and_changes_nothing():
    # Given an order of another customer
    order = _order(customer_create())

    # When a different customer tries to cancel it
    response = api_client_for(customer_create()).post(_url(order.id, "cancel"))

    # Then it is not found, and the order is untouched
    assert response.status_code == 404
    assert _status(order) == OrderStatus.PENDING


def test_cancelling_an_unknown_order_is_404():
    response = api_client_for(customer_create()).post(_url(uuid.uuid4(), "cancel"))

    assert response.status_code == 404


def test_anonymous_cancel_is_401():
    order = _order()

    response = APIClient().post(_url(order.id, "cancel"))

    assert response.status_code == 401
    assert _status(order) == OrderStatus.PENDING


# --- ship --------------------------------------------------------------------------------


def test_customer_may_not_ship_even_an_own_order():
    # Given a customer's paid order
    customer = customer_create()
    order = _paid_order(customer)

    # When the customer tries to ship it
    response = api_client_for(customer).post(_url(order.id, "ship"), {}, format="json")

    # Then it is forbidden and nothing ships
    assert response.status_code == 403
    assert _status(order) == OrderStatus.PAID
    assert not Shipment.objects.exists()


def test_anonymous_ship_is_401():
    order = _paid_order()

    response = APIClient().post(_url(order.id, "ship"), {}, format="json")

    assert response.status_code == 401
    assert _status(order) == OrderStatus.PAID


def test_staff_ships_a_paid_order_with_a_carrier(staff_client):
    # Given a paid order
    order = _paid_order()

    # When staff ship it with UPS
    response = staff_client.post(_url(order.id, "ship"), {"carrier": "UPS"}, format="json")

    # Then it is shipped and the answer carries the shipment and the shipped event
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "shipped"
    shipment = Shipment.objects.get(order=order)
    assert body["shipment"]["carrier"] == "UPS" == shipment.carrier
    assert body["shipment"]["tracking_number"] == shipment.tracking_number
    assert body["shipment"]["tracking_number"].startswith("TRK")
    assert body["shipment"]["delivered_at"] is None
    assert body["timeline"][-1]["event_type"] == "orders.shipped"
    assert _status(order) == OrderStatus.SHIPPED


def test_staff_ship_without_a_body_uses_the_default_carrier(staff_client, settings):
    order = _paid_order()

    response = staff_client.post(_url(order.id, "ship"))

    assert response.status_code == 200, response.content
    assert response.json()["shipment"]["carrier"] == settings.ORDERS["DEFAULT_CARRIER"]


def test_shipping_an_order_that_is_not_paid_is_409(staff_client):
    # Given a pending order
    order = _order()

    # When staff try to ship it
    response = staff_client.post(_url(order.id, "ship"), {}, format="json")

    # Then it is a conflict naming the status, and no shipment is made
    assert response.status_code == 409, response.content
    assert response.json()["status"] == "pending"
    assert not Shipment.objects.exists()
    assert _status(order) == OrderStatus.PENDING


def test_shipping_an_unknown_order_is_404(staff_client):
    response = staff_client.post(_url(uuid.uuid4(), "ship"), {}, format="json")

    assert response.status_code == 404


def test_carrier_longer_than_50_characters_is_400(staff_client):
    # Given a paid order
    order = _paid_order()

    # When staff ship it with a 51-character carrier
    response = staff_client.post(_url(order.id, "ship"), {"carrier": "C" * 51}, format="json")

    # Then the carrier is refused and nothing ships
    assert response.status_code == 400, response.content
    assert "carrier" in response.json()
    assert _status(order) == OrderStatus.PAID
    assert not Shipment.objects.exists()


def test_carrier_of_exactly_50_characters_is_accepted(staff_client):
    order = _paid_order()

    response = staff_client.post(_url(order.id, "ship"), {"carrier": "C" * 50}, format="json")

    assert response.status_code == 200, response.content
    assert Shipment.objects.get(order=order).carrier == "C" * 50


# --- deliver -----------------------------------------------------------------------------


def test_customer_may_not_mark_an_order_delivered():
    customer = customer_create()
    order = _shipped_order(customer)

    response = api_client_for(customer).post(_url(order.id, "deliver"))

    assert response.status_code == 403
    assert _status(order) == OrderStatus.SHIPPED


def test_staff_marks_a_shipped_order_delivered(staff_client):
    # Given a shipped order
    order = _shipped_order()

    # When staff mark it delivered
    response = staff_client.post(_url(order.id, "deliver"))

    # Then it is delivered, with the delivery time on its shipment
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "delivered"
    assert body["shipment"]["delivered_at"] is not None
    assert body["timeline"][-1]["event_type"] == "orders.delivered"
    assert _status(order) == OrderStatus.DELIVERED


def test_delivering_an_order_that_has_not_shipped_is_409(staff_client):
    order = _paid_order()

    response = staff_client.post(_url(order.id, "deliver"))

    assert response.status_code == 409, response.content
    assert response.json()["status"] == "paid"
    assert _status(order) == OrderStatus.PAID


def test_delivering_an_unknown_order_is_404(staff_client):
    response = staff_client.post(_url(uuid.uuid4(), "deliver"))

    assert response.status_code == 404


# --- detail: timeline, payment, shipment -------------------------------------------------


def test_detail_of_a_new_order_has_an_empty_saga():
    # Given a new order
    customer = customer_create()
    order = _order(customer)

    # When the customer reads it
    response = api_client_for(customer).get(_url(order.id))

    # Then it has no payment or shipment yet, and its timeline holds orders.created
    assert response.status_code == 200
    body = response.json()
    assert body["payment"] is None
    assert body["shipment"] is None
    [entry] = body["timeline"]
    assert entry["event_type"] == "orders.created"
    assert entry["published"] is False
    event = OutboxEvent.objects.get(aggregate_id=str(order.id))
    assert entry["event_id"] == str(event.event_id)
    assert entry["correlation_id"] == event.correlation_id


@pytest.mark.django_db(transaction=True)  # the charge runs outside any transaction
def test_detail_shows_payment_shipment_and_the_timeline_oldest_first():
    # Given an order charged and shipped through the services
    payment_gateway.cache_clear()
    customer = customer_create()
    order = _order(customer, price="12.50", quantity=2)
    order_mark_reserved(order_id=order.id)
    payment_charge_for_order(order_id=order.id)
    order_mark_paid(order_id=order.id)
    order_ship(order_id=order.id)

    # When the customer reads it
    body = api_client_for(customer).get(_url(order.id)).json()

    # Then the payment and shipment are shown
    assert body["payment"]["status"] == "captured"
    assert Decimal(body["payment"]["amount"]) == Decimal("25.00")
    assert body["payment"]["failure_reason"] == ""
    assert body["shipment"]["tracking_number"] == Shipment.objects.get(order=order).tracking_number
    # And the timeline lists every event about the order, oldest first
    assert [entry["event_type"] for entry in body["timeline"]] == [
        "orders.created",
        "orders.reserved",
        "payments.processed",
        "orders.paid",
        "orders.shipped",
    ]


@pytest.mark.django_db(transaction=True)  # the charge runs outside any transaction
def test_detail_of_a_declined_order_shows_the_failed_payment_and_the_cancellation():
    # Given an order whose card was declined
    payment_gateway.cache_clear()
    customer = customer_create()
    product = product_with_stock()
    order, _ = order_create(
        customer=customer,
        items=[OrderItemInput(sku=product.sku, quantity=1)],
        payment_token="tok_decline",
    )
    order_mark_reserved(order_id=order.id)
    payment_charge_for_order(order_id=order.id)

    # When the customer reads it
    body = api_client_for(customer).get(_url(order.id)).json()

    # Then the failed payment and its reason are shown, and the cancellation it caused
    assert body["payment"]["status"] == "failed"
    assert body["payment"]["failure_reason"] == "card_declined"
    assert body["status"] == "cancelled"
    assert [entry["event_type"] for entry in body["timeline"]][-3:] == [
        "payments.failed",
        "orders.payment_failed",
        "orders.cancelled",
    ]


# --- create: payment token ---------------------------------------------------------------


def test_payment_token_longer_than_100_characters_is_400_and_creates_nothing():
    product = product_with_stock()

    response = api_client_for(customer_create()).post(
        ORDERS_URL,
        {"items": [{"sku": product.sku, "quantity": 1}], "payment_token": "t" * 101},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "payment_token" in response.json()
    assert not Order.objects.exists()


def test_payment_token_of_100_characters_is_stored_on_the_order():
    product = product_with_stock()

    response = api_client_for(customer_create()).post(
        ORDERS_URL,
        {"items": [{"sku": product.sku, "quantity": 1}], "payment_token": "t" * 100},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert Order.objects.get(id=response.json()["id"]).payment_token == "t" * 100
