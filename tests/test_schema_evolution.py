"""A rolling deploy of orders.created V2: V1 events already in the topic, then V2 events from
the new code behind them, all processed by the same consumers, in order, once each."""

import json

import pytest
from django.utils import timezone

from inventory.models import Reservation
from kafka_bridge.client import topic_name
from kafka_bridge.models import OutboxEvent, ProcessedEvent
from notifications.models import Notification
from orders.events import OrderCreatedV1
from testing.factories import (
    SHIPPING_ADDRESS,
    customer_create,
    order_place_via_api,
    product_with_stock,
)
from testing.kafka import event_envelope, messages_produce, topic_read_all
from testing.saga import gateway_calls, stock_of, wait_for_notifications, wait_for_status

pytestmark = pytest.mark.integration
K = Notification.Kind


def _published_as_v1(order_ids: list[str]) -> list[bytes]:
    """The orders.created events of these orders as the code before V2 published them (same
    event ids, the V1 payload), their outbox rows marked published."""
    rows = OutboxEvent.objects.filter(event_type="orders.created", aggregate_id__in=order_ids)
    values = []
    for row in rows.order_by("id"):
        v1_data = {
            k: v for k, v in row.envelope["data"].items() if k in OrderCreatedV1.model_fields
        }
        values.append(
            event_envelope(
                "orders.created",
                v1_data,
                version=1,
                aggregate_id=row.aggregate_id,
                event_id=str(row.event_id),
            )
        )
    rows.update(published_at=timezone.now())
    return values


def test_v1_events_then_v2_events_are_processed_in_order_once_each(pipeline):
    # Given two orders whose V1 events are already in the topic (placed before the deploy)
    customer = customer_create()
    product = product_with_stock(on_hand=10)
    legacy = [order_place_via_api(customer, product.sku, 1) for _ in range(2)]
    messages_produce("orders", str(customer.pk), _published_as_v1(legacy))

    # When the new code takes two V2 orders, with a channel and an address, of the same
    # customer (so the same partition, behind the V1 events), and the pipeline runs
    current = [
        order_place_via_api(
            customer, product.sku, 1, sales_channel="mobile_app", shipping_address=SHIPPING_ADDRESS
        )
        for _ in range(2)
    ]
    pipeline.start_saga()

    # Then every order is paid
    for order_id in legacy + current:
        wait_for_status(order_id, "paid")
        wait_for_notifications(order_id, K.ORDER_CONFIRMED, K.PAYMENT_RECEIVED)
    # in topic order: V1, V1, V2, V2
    envelopes = [json.loads(m.value()) for m in topic_read_all(topic_name("orders"), expected=12)]
    created = [e for e in envelopes if e["event_type"] == "orders.created"]
    assert [(e["aggregate_id"], e["schema_version"]) for e in created] == [
        *((order_id, 1) for order_id in legacy),
        *((order_id, 2) for order_id in current),
    ]
    reserved = Reservation.objects.order_by("id").values_list("order_id", flat=True)
    assert [str(order_id) for order_id in reserved] == legacy + current
    # once each: one reservation and one charge per order, one processing per group
    assert stock_of(product.sku) == (10, 4)
    assert all(gateway_calls(order_id) == {"charge": 1} for order_id in legacy + current)
    processed = ProcessedEvent.objects.filter(event_type="orders.created")
    assert processed.filter(consumer_group__endswith="inventory").count() == 4
    # and the V2 address reached the e-mails, while the upcast V1 orders have none
    confirmations = Notification.objects.filter(kind=K.ORDER_CONFIRMED)
    for order_id in current:
        body = confirmations.get(order_id=order_id).body
        assert "12 St James's Square" in body and "SW1Y 4JH London" in body
    for order_id in legacy:
        assert "ship to" not in confirmations.get(order_id=order_id).body
