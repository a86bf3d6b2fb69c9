"""End to end over real processes: API → outbox → relay → Kafka → consumers → DB."""

import pytest

from inventory.models import Reservation, StockLevel
from notifications.models import Notification
from orders.models import Order
from testing.factories import api_client_for, customer_create, product_with_stock
from testing.polling import wait_until

pytestmark = pytest.mark.integration


def _order_status(order_id: str) -> str:
    return Order.objects.get(id=order_id).status


def test_order_is_reserved_and_confirmed(pipeline):
    # Given a running pipeline, a customer and a product with stock
    pipeline.start_all()
    customer = customer_create()
    product = product_with_stock(on_hand=5)

    # When the customer orders 3 units through the API
    response = api_client_for(customer).post(
        "/api/orders/", {"items": [{"sku": product.sku, "quantity": 3}]}, format="json"
    )

    # Then the order is accepted as pending, and soon reserved with one confirmation
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    order_id = response.json()["id"]
    wait_until(lambda: _order_status(order_id) == "reserved", timeout=30, message="reserved")
    wait_until(
        lambda: Notification.objects.filter(order_id=order_id).exists(),
        timeout=30,
        message="notification",
    )
    stock = StockLevel.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (5, 3)
    assert Reservation.objects.get(order_id=order_id).quantity == 3
    notifications = list(Notification.objects.filter(order_id=order_id))
    assert [n.kind for n in notifications] == [Notification.Kind.ORDER_CONFIRMED]
    assert notifications[0].customer == customer


def test_order_beyond_stock_is_rejected_with_out_of_stock_notice(pipeline):
    pipeline.start_all()
    customer = customer_create()
    product = product_with_stock(on_hand=2)

    response = api_client_for(customer).post(
        "/api/orders/", {"items": [{"sku": product.sku, "quantity": 3}]}, format="json"
    )

    assert response.status_code == 201, response.content
    order_id = response.json()["id"]
    wait_until(lambda: _order_status(order_id) == "rejected", timeout=30, message="rejected")
    wait_until(
        lambda: Notification.objects.filter(order_id=order_id).exists(),
        timeout=30,
        message="notification",
    )
    order = Order.objects.get(id=order_id)
    assert product.sku in order.status_reason
    stock = StockLevel.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (2, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()
    kinds = list(Notification.objects.filter(order_id=order_id).values_list("kind", flat=True))
    assert kinds == [Notification.Kind.OUT_OF_STOCK]
