"""With SCHEMA_REGISTRY_URL set, events travel in the Confluent Schema Registry wire format.

The registry is the client's in-memory `mock://` one, which lives inside a process: the
relay and the consumer therefore run in this test's process (the consumer on a thread),
sharing it, against the real broker and database."""

import threading
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection

from inventory.models import Reservation
from kafka_bridge.client import pipeline_topics, topic_name, topics_ensure
from kafka_bridge.consumer import ConsumerRunner
from kafka_bridge.contracts import EventDecodeError
from kafka_bridge.models import OutboxEvent
from kafka_bridge.registry import consumer_spec_get
from kafka_bridge.relay import OutboxRelay
from kafka_bridge.wire import message_decode, registry_client, registry_framer
from orders.events import OrderCreatedV2
from testing.factories import (
    SHIPPING_ADDRESS,
    api_client_for,
    customer_create,
    product_with_stock,
)
from testing.kafka import event_envelope, messages_produce, topic_read_all
from testing.polling import wait_until
from tools.localservices import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(settings, transactional_db, kafka_namespace: str) -> str:
    """A fresh in-memory registry for this test, and the topics of its namespace."""
    url = f"mock://{uuid.uuid4().hex[:8]}"
    settings.SCHEMA_REGISTRY = {"URL": url, "BASIC_AUTH_USER_INFO": ""}
    topics_ensure(pipeline_topics())
    return url


@pytest.fixture
def inventory_consumer(registry: str) -> Iterator[ConsumerRunner]:
    runner = ConsumerRunner(spec=consumer_spec_get("inventory"))

    def run() -> None:
        try:
            runner.run()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run, name="inventory-consumer")
    thread.start()
    yield runner
    runner.stop.event.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def _place_order(customer, sku: str) -> str:
    body = {
        "items": [{"sku": sku, "quantity": 1}],
        "sales_channel": "marketplace",
        "shipping_address": SHIPPING_ADDRESS,
    }
    response = api_client_for(customer).post("/api/orders/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_events_go_out_registry_framed_and_both_formats_are_consumed(inventory_consumer):
    # Given a plain JSON V1 event already in the topic, from before the registry was enabled
    customer = customer_create()
    product = product_with_stock(on_hand=5)
    old_order_id = str(uuid.uuid4())
    old = {
        "order_id": old_order_id,
        "customer_id": customer.pk,
        "currency": "EUR",
        "total": "1.00",
        "items": [{"sku": product.sku, "quantity": 1, "unit_price": "1.00"}],
    }
    messages_produce("orders", str(customer.pk), [event_envelope("orders.created", old)])

    # When an order is placed through the API and the relay publishes it
    new_order_id = _place_order(customer, product.sku)
    relay = OutboxRelay()
    wait_until(lambda: (relay.publish_batch(), not relay.active)[1], timeout=30)

    # Then its message is in the registry wire format, under the subject of its version
    plain, framed = topic_read_all(topic_name("orders"), expected=2)
    assert plain.value()[:1] == b"{"
    assert framed.value()[:1] == b"\x00"
    schema_id = int.from_bytes(framed.value()[1:5], "big")
    assert registry_client().get_schema(schema_id).schema_str.count('"orders.created.v2"') == 1
    assert "orders.created.v2" in registry_client().get_subjects()
    event = message_decode(framed.value(), topic=framed.topic())
    assert isinstance(event.payload, OrderCreatedV2)
    assert event.payload.sales_channel == "marketplace"
    assert event.payload.shipping_address.city == SHIPPING_ADDRESS["city"]
    # and the consumer processes both, in order, once each
    wait_until(
        lambda: Reservation.objects.filter(order_id__in=[old_order_id, new_order_id]).count() == 2,
        timeout=30,
        message="both orders reserved",
    )
    reserved = list(Reservation.objects.order_by("id").values_list("order_id", flat=True))
    assert [str(order_id) for order_id in reserved] == [old_order_id, new_order_id]
    assert inventory_consumer.stats.dead_lettered == 0


def test_an_unreachable_registry_holds_the_relay_back_not_the_api(registry, settings):
    # Given a registry that does not answer
    settings.SCHEMA_REGISTRY = {
        "URL": f"http://127.0.0.1:{free_port()}",
        "BASIC_AUTH_USER_INFO": "",
    }
    customer = customer_create()
    product = product_with_stock(on_hand=5)

    # When an order is placed, the API still answers 201 (nothing calls the registry there)
    order_id = _place_order(customer, product.sku)

    # Then the relay records the failure on the row and publishes nothing
    relay = OutboxRelay()
    row = OutboxEvent.objects.filter(aggregate_id=order_id)
    wait_until(lambda: (relay.publish_batch(), row.get().attempts)[1] >= 1, timeout=30)
    assert row.get().published_at is None
    assert row.get().last_error.startswith("schema registry: ")
    # and once a registry answers, the same row goes out, framed
    settings.SCHEMA_REGISTRY = {"URL": registry, "BASIC_AUTH_USER_INFO": ""}
    relay.framer = registry_framer()
    wait_until(lambda: (relay.publish_batch(), row.get().published_at)[1], timeout=30)
    (message,) = topic_read_all(topic_name("orders"), expected=1)
    assert message_decode(message.value(), topic=message.topic()).envelope.aggregate_id == order_id
    assert message.value()[:1] == b"\x00"


def test_a_framed_message_without_a_registry_is_undecodable_with_a_reason(settings):
    # Given a message framed by a registry
    settings.SCHEMA_REGISTRY = {"URL": f"mock://{uuid.uuid4().hex[:8]}", "BASIC_AUTH_USER_INFO": ""}
    transition = {
        "order_id": str(uuid.uuid4()),
        "customer_id": 1,
        "previous_status": "pending",
        "status": "reserved",
    }
    value = registry_framer().frame(
        event_envelope("orders.reserved", transition),
        event_type="orders.reserved",
        version=1,
        topic="orders",
    )
    assert message_decode(value, topic="orders").payload.status == "reserved"

    # When a consumer without SCHEMA_REGISTRY_URL reads it, it is refused with the reason
    settings.SCHEMA_REGISTRY = {"URL": "", "BASIC_AUTH_USER_INFO": ""}
    with pytest.raises(EventDecodeError, match="SCHEMA_REGISTRY_URL is not set"):
        message_decode(value, topic="orders")
