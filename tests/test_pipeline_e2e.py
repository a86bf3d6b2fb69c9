"""End to end over real processes: API → outbox → relay → Kafka → consumers → DB."""

import pytest

from inventory.models import Reservation
from notifications.models import Notification
from orders.models import Order
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.saga import stock_of, wait_for_notifications, wait_for_status

pytestmark = pytest.mark.integration
K = Notification.Kind


def test_order_is_reserved_confirmed_and_paid(pipeline):
    # Given a running pipeline, a customer and a product with stock
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=5)

    # When the customer orders 3 units through the API
    order_id = order_place_via_api(customer, product.sku, 3)

    # Then stock is reserved, the payment taken, and each step notified once, by e-mail
    wait_for_status(order_id, "paid")
    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    assert stock_of(product.sku) == (5, 3)
    assert Reservation.objects.get(order_id=order_id).quantity == 3
    assert {n.customer for n in Notification.objects.filter(order_id=order_id)} == {customer}


def test_order_beyond_stock_is_rejected_with_out_of_stock_notice(pipeline):
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=2)

    order_id = order_place_via_api(customer, product.sku, 3)

    wait_for_status(order_id, "rejected")
    wait_for_notifications(order_id, K.OUT_OF_STOCK)
    assert product.sku in Order.objects.get(id=order_id).status_reason
    assert stock_of(product.sku) == (2, 0)
    assert not Reservation.objects.filter(order_id=order_id).exists()
