"""Redelivery, crashes and competing consumers against real processes and a real broker."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from common.redis_client import redis_client
from inventory.models import Reservation, StockLevel
from kafka_bridge.client import group_name, topic_name
from kafka_bridge.models import OutboxEvent
from notifications.models import Notification
from orders.models import Order
from testing.factories import api_client_for, customer_create, product_with_stock
from testing.kafka import committed_offset, message_reproduce, topic_read_all
from testing.polling import wait_until
from testing.saga import snapshot, wait_for_notifications

pytestmark = pytest.mark.integration
K = Notification.Kind


def _place_order(customer, sku: str, quantity: int = 1) -> str:
    response = api_client_for(customer).post(
        "/api/orders/", {"items": [{"sku": sku, "quantity": quantity}]}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _settled(order_id: str) -> bool:
    return Order.objects.get(id=order_id).status != "pending"


@pytest.mark.parametrize("redis_flushed", [False, True], ids=["redis-key", "database-backstop"])
def test_redelivered_events_change_nothing(pipeline, redis_flushed):
    # Given an order that went all the way through to paid
    pipeline.start_saga()
    customer = customer_create()
    product = product_with_stock(on_hand=10)
    order_id = _place_order(customer, product.sku, quantity=4)
    wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    before = snapshot(order_id, product.sku)
    created = topic_read_all(topic_name("orders"), expected=1)[0]
    reserved = topic_read_all(topic_name("inventory"), expected=1)[0]
    if redis_flushed:  # Redis lost its keys: only the database can recognise the duplicates
        redis_client().flushdb()

    # When Kafka delivers its first two events again
    message_reproduce(created)
    message_reproduce(reserved)

    # Then their consumers (inventory, orders) recognise them as duplicates; nothing changes
    for event in (created, reserved):
        event_id = json.loads(event.value())["event_id"]
        wait_until(
            lambda event_id=event_id: f"duplicate event {event_id}" in pipeline.logs(),
            timeout=30,
            message=f"duplicate of {event_id} seen",
        )
    expected_path = "(database)" if redis_flushed else "(redis)"
    assert expected_path in pipeline.logs()
    assert snapshot(order_id, product.sku) == before
    assert before["stock"] == (10, 4)
    assert before["gateway"] == {"charge": 1}


def test_two_inventory_consumers_never_oversell(pipeline):
    # Given 10 units and two processes of the inventory consumer group sharing partitions
    product = product_with_stock(on_hand=10)
    customers = [customer_create() for _ in range(40)]
    first = pipeline.consumer("inventory")
    second = pipeline.consumer("inventory")
    pipeline.consumer("orders")
    wait_until(lambda: "assigned" in first.log() and "assigned" in second.log(), timeout=30)

    # When 40 customers order one unit each, concurrently
    def place(customer) -> str:
        try:
            return _place_order(customer, product.sku)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        order_ids = list(pool.map(place, customers))
    pipeline.relay()

    # Then exactly 10 are reserved, 30 rejected, and stock never went negative
    wait_until(
        lambda: (
            not Order.objects.filter(id__in=order_ids, status__in=["pending", "reserved"]).exists()
        ),
        timeout=60,
        message="all orders settled",
    )
    statuses = list(Order.objects.filter(id__in=order_ids).values_list("status", flat=True))
    assert statuses.count("paid") == 10  # reserved, then charged
    assert statuses.count("rejected") == 30
    stock = StockLevel.objects.get(product=product)
    assert (stock.on_hand, stock.reserved) == (10, 10)
    assert sum(Reservation.objects.values_list("quantity", flat=True)) == 10
    # and both processes did part of the work
    for worker in (first, second):
        assert worker.terminate() == 0
        processed = int(re.search(r"processed=(\d+)", worker.log()).group(1))
        assert processed > 0, worker.log()


@pytest.mark.parametrize("redis_flushed", [False, True], ids=["redis-key", "database-backstop"])
def test_consumer_killed_before_offset_commit_has_no_second_effect(pipeline, redis_flushed):
    # Given an inventory consumer that never commits offsets on its own while running
    product = product_with_stock(on_hand=10)
    customer = customer_create()
    pipeline.relay()
    victim = pipeline.consumer("inventory", KAFKA_COMMIT_INTERVAL_SECONDS="3600")
    order_id = _place_order(customer, product.sku, quantity=2)

    # When it is SIGKILLed after its transaction committed, before any offset commit
    wait_until(lambda: Reservation.objects.filter(order_id=order_id).exists(), timeout=30)
    victim.kill()
    created = topic_read_all(topic_name("orders"), expected=1)[0]
    group = group_name("inventory")
    assert committed_offset(group, created.topic(), created.partition()) <= created.offset()
    if redis_flushed:
        redis_client().flushdb()

    # Then a restarted consumer gets the event again and recognises it as done
    survivor = pipeline.consumer("inventory")
    event_id = json.loads(created.value())["event_id"]
    wait_until(lambda: f"duplicate event {event_id}" in survivor.log(), timeout=60)
    assert Reservation.objects.filter(order_id=order_id).count() == 1
    assert StockLevel.objects.get(product=product).reserved == 2
    assert (
        OutboxEvent.objects.filter(aggregate_id=order_id, event_type="inventory.reserved").count()
        == 1
    )
    wait_until(
        lambda: (
            committed_offset(group, created.topic(), created.partition()) == created.offset() + 1
        ),
        timeout=30,
        message="offset committed after redelivery",
    )
