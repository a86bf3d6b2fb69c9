"""The orders API: create, list, retrieve; validation, idempotency, auth and the schema."""

import json
import logging
import subprocess
import sys
import uuid
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from kafka_bridge.models import OutboxEvent
from orders.models import Order
from testing.factories import SHIPPING_ADDRESS as ADDRESS
from testing.factories import api_client_for, customer_create, product_with_stock

ORDERS_URL = "/api/orders/"


def _order_url(order_id: object) -> str:
    return f"{ORDERS_URL}{order_id}/"


def _post_order(client, body, **headers):  # type: ignore[no-untyped-def]
    return client.post(ORDERS_URL, body, format="json", headers=headers)


def _items(*pairs: tuple[str, int]) -> dict:
    return {"items": [{"sku": sku, "quantity": quantity} for sku, quantity in pairs]}


# --- create ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_channel_and_address_are_stored_returned_and_carried_by_the_v2_event():
    customer = customer_create()
    product = product_with_stock(sku="MUG-1")
    body = {**_items((product.sku, 1)), "sales_channel": "mobile_app", "shipping_address": ADDRESS}

    response = _post_order(api_client_for(customer), body)

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["sales_channel"] == "mobile_app"
    assert created["shipping_address"] == {**ADDRESS, "line2": ""}
    order = Order.objects.get(id=created["id"])
    assert (order.sales_channel, order.shipping_address) == ("mobile_app", {**ADDRESS, "line2": ""})
    detail = api_client_for(customer).get(_order_url(order.id)).json()
    assert detail["shipping_address"]["city"] == "London"
    envelope = OutboxEvent.objects.get(event_type="orders.created").envelope
    assert envelope["schema_version"] == 2
    assert envelope["data"]["sales_channel"] == "mobile_app"
    assert envelope["data"]["shipping_address"] == {**ADDRESS, "line2": ""}


@pytest.mark.django_db
def test_without_channel_and_address_an_order_is_a_web_order_shipping_nowhere():
    customer = customer_create()
    product = product_with_stock()

    response = _post_order(api_client_for(customer), _items((product.sku, 1)))

    assert response.status_code == 201, response.content
    assert (response.json()["sales_channel"], response.json()["shipping_address"]) == ("web", None)
    data = OutboxEvent.objects.get(event_type="orders.created").envelope["data"]
    assert (data["sales_channel"], data["shipping_address"]) == ("web", None)


@pytest.mark.django_db
def test_same_idempotency_key_with_another_address_is_422():
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    body = {**_items((product.sku, 1)), "shipping_address": ADDRESS}
    assert _post_order(client, body, **{"Idempotency-Key": "k"}).status_code == 201

    moved = {**body, "shipping_address": {**ADDRESS, "city": "Paris", "country": "FR"}}
    response = _post_order(client, moved, **{"Idempotency-Key": "k"})

    assert response.status_code == 422, response.content
    assert _post_order(client, body, **{"Idempotency-Key": "k"}).status_code == 201
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_create_order_returns_pending_order_and_records_created_event():
    # Given a customer and two products
    customer = customer_create()
    mug = product_with_stock(sku="MUG-1", price="12.50")
    tea = product_with_stock(sku="TEA-1", price="3.20")

    # When the customer orders 2 mugs and 3 teas
    response = _post_order(api_client_for(customer), _items((mug.sku, 2), (tea.sku, 3)))

    # Then a pending order with the captured prices and the right total is returned
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    order_id = uuid.UUID(body["id"])
    assert Decimal(body["total"]) == Decimal("12.50") * 2 + Decimal("3.20") * 3
    assert body["currency"] == settings.ORDERS["CURRENCY"]
    lines = {line["sku"]: line for line in body["items"]}
    assert set(lines) == {"MUG-1", "TEA-1"}
    assert Decimal(lines["MUG-1"]["unit_price"]) == Decimal("12.50")
    assert Decimal(lines["TEA-1"]["unit_price"]) == Decimal("3.20")
    assert lines["MUG-1"]["quantity"] == 2
    assert lines["TEA-1"]["quantity"] == 3
    order = Order.objects.get(id=order_id)
    assert order.customer == customer
    assert order.total == Decimal("34.60")

    # And exactly one orders.created event keyed by the customer describes it
    event = OutboxEvent.objects.get(event_type="orders.created")
    assert event.key == str(customer.pk)
    assert event.aggregate_id == str(order_id)
    assert event.published_at is None
    envelope = event.envelope
    assert envelope["event_type"] == "orders.created"
    assert envelope["event_id"] == str(event.event_id)
    assert envelope["aggregate_id"] == str(order_id)
    assert envelope["correlation_id"] == event.correlation_id
    data = envelope["data"]
    assert data["order_id"] == str(order_id)
    assert data["customer_id"] == customer.pk
    assert data["currency"] == settings.ORDERS["CURRENCY"]
    assert Decimal(data["total"]) == Decimal("34.60")
    assert sorted(
        (item["sku"], item["quantity"], Decimal(item["unit_price"])) for item in data["items"]
    ) == [("MUG-1", 2, Decimal("12.50")), ("TEA-1", 3, Decimal("3.20"))]


@pytest.mark.django_db
def test_later_price_change_does_not_alter_an_existing_order():
    # Given an order placed at the old price
    customer = customer_create()
    product = product_with_stock(price="5.00")
    client = api_client_for(customer)
    order_id = _post_order(client, _items((product.sku, 2))).json()["id"]

    # When the price changes
    product.price = Decimal("7.00")
    product.save()

    # Then the order still shows the captured price and total
    body = client.get(_order_url(order_id)).json()
    assert Decimal(body["items"][0]["unit_price"]) == Decimal("5.00")
    assert Decimal(body["total"]) == Decimal("10.00")


@pytest.mark.django_db
def test_correlation_id_header_is_echoed_and_stored_on_the_event():
    # Given a customer, a product and a caller-chosen correlation id
    customer = customer_create()
    product = product_with_stock()
    correlation_id = f"req-{uuid.uuid4()}"

    # When the order is posted with that X-Correlation-ID
    response = _post_order(
        api_client_for(customer), _items((product.sku, 1)), **{"X-Correlation-ID": correlation_id}
    )

    # Then the response echoes it and the event carries it
    assert response.status_code == 201, response.content
    assert response["X-Correlation-ID"] == correlation_id
    event = OutboxEvent.objects.get(event_type="orders.created")
    assert event.correlation_id == correlation_id
    assert event.envelope["correlation_id"] == correlation_id


@pytest.mark.django_db
def test_without_correlation_header_one_is_made_and_used_for_the_event():
    customer = customer_create()
    product = product_with_stock()

    response = _post_order(api_client_for(customer), _items((product.sku, 1)))

    assert response.status_code == 201, response.content
    made = response["X-Correlation-ID"]
    assert made
    assert OutboxEvent.objects.get(event_type="orders.created").correlation_id == made


@pytest.mark.django_db
def test_unusable_correlation_id_is_replaced_not_stored():
    customer = customer_create()
    product = product_with_stock()
    too_long = "c" * 101

    response = _post_order(
        api_client_for(customer), _items((product.sku, 1)), **{"X-Correlation-ID": too_long}
    )

    assert response.status_code == 201, response.content
    assert response["X-Correlation-ID"] != too_long
    assert OutboxEvent.objects.get().correlation_id == response["X-Correlation-ID"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        pytest.param("text/plain", b"items", id="text-plain"),
        pytest.param("application/xml", b"<items/>", id="xml"),
    ],
)
def test_unsupported_media_type_is_415_and_creates_nothing(content_type, raw):
    customer = customer_create()
    product_with_stock(sku=KNOWN)

    response = api_client_for(customer).generic("POST", ORDERS_URL, raw, content_type=content_type)

    assert response.status_code == 415, response.content
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_form_bodies_are_415_the_api_takes_json_only():
    # Form fields are all strings: the API takes JSON, whose types it checks
    customer = customer_create()
    product_with_stock(sku=KNOWN)
    client = api_client_for(customer)
    fields = {"items[0]sku": KNOWN, "items[0]quantity": "1"}

    multipart = client.post(ORDERS_URL, fields, format="multipart")
    urlencoded = client.generic(
        "POST", ORDERS_URL, urlencode(fields), content_type="application/x-www-form-urlencoded"
    )

    assert (multipart.status_code, urlencoded.status_code) == (415, 415), multipart.content
    assert "detail" in multipart.json()
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_413_json_without_an_error_in_the_log(caplog, settings):
    # Given an upload limit, and a well-formed order body just over it
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    customer = customer_create()
    product_with_stock(sku=KNOWN)
    body = json.dumps({**_items((KNOWN, 1)), "payment_token": "t" * 10_000})

    # When it is posted
    response = api_client_for(customer).generic(
        "POST", ORDERS_URL, body, content_type="application/json"
    )

    # Then it is refused with 413 in the API's error format, logged as no error
    assert response.status_code == 413, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Request body too large: at most 10000 bytes."}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert Order.objects.count() == 0

    # And a body just under the limit is read as usual (here: a 400 for its long token)
    under = json.dumps({**_items((KNOWN, 1)), "payment_token": "t" * 9_900})
    assert len(under) <= 10_000
    response = api_client_for(customer).generic(
        "POST", ORDERS_URL, under, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "payment_token" in response.json()


# --- list and retrieve -------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_only_the_callers_orders_paginated():
    # Given two orders of one customer and one of another
    alice, bob = customer_create(), customer_create()
    product = product_with_stock()
    alice_client = api_client_for(alice)
    alice_ids = {_post_order(alice_client, _items((product.sku, n))).json()["id"] for n in (1, 2)}
    bob_id = _post_order(api_client_for(bob), _items((product.sku, 1))).json()["id"]

    # When alice lists her orders
    response = alice_client.get(ORDERS_URL)

    # Then she sees exactly her two, in a paginated envelope
    assert response.status_code == 200, response.content
    body = response.json()
    assert {"count", "next", "previous", "results"} <= set(body)
    assert body["count"] == 2
    assert {order["id"] for order in body["results"]} == alice_ids
    assert bob_id not in {order["id"] for order in body["results"]}


@pytest.mark.django_db
def test_list_is_split_into_pages_of_page_size():
    # Given more orders than fit on one page
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    page_size = settings.REST_FRAMEWORK["PAGE_SIZE"]
    for _ in range(page_size + 1):
        assert _post_order(client, _items((product.sku, 1))).status_code == 201

    # When the first and second page are read
    first = client.get(ORDERS_URL).json()
    second = client.get(ORDERS_URL, {"page": 2}).json()

    # Then the first is full, the second holds the rest, and nothing is repeated
    assert first["count"] == page_size + 1
    assert len(first["results"]) == page_size
    assert first["next"] is not None
    assert len(second["results"]) == 1
    assert second["next"] is None
    ids = [o["id"] for o in first["results"]] + [o["id"] for o in second["results"]]
    assert len(set(ids)) == page_size + 1


@pytest.mark.django_db
def test_list_is_empty_for_a_customer_without_orders():
    response = api_client_for(customer_create()).get(ORDERS_URL)

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


@pytest.mark.django_db
def test_retrieve_own_order():
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    order_id = _post_order(client, _items((product.sku, 4))).json()["id"]

    response = client.get(_order_url(order_id))

    assert response.status_code == 200, response.content
    assert response.json()["id"] == order_id
    assert response.json()["items"][0]["quantity"] == 4


@pytest.mark.django_db
def test_retrieve_someone_elses_order_is_404():
    # Given bob's order
    product = product_with_stock()
    bob_order = _post_order(api_client_for(customer_create()), _items((product.sku, 1))).json()

    # When alice asks for it
    response = api_client_for(customer_create()).get(_order_url(bob_order["id"]))

    # Then it does not exist for her
    assert response.status_code == 404
    assert bob_order["id"] not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["0", "999", "abc"])
def test_list_with_a_page_that_does_not_exist_is_404(page):
    response = api_client_for(customer_create()).get(ORDERS_URL, {"page": page})

    assert response.status_code == 404, response.content


@pytest.mark.django_db
def test_retrieve_unknown_order_is_404():
    response = api_client_for(customer_create()).get(_order_url(uuid.uuid4()))

    assert response.status_code == 404


# --- authentication ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", ORDERS_URL),
        ("get", ORDERS_URL),
        ("get", "/api/products/"),
        ("get", _order_url(uuid.uuid4())),
    ],
    # Fixed ids: pytest-xdist workers must collect the same names (the order id is random)
    ids=["post-/api/orders/", "get-/api/orders/", "get-/api/products/", "get-/api/orders/<id>/"],
)
def test_anonymous_requests_are_401(method, url):
    # Given a product that could be ordered
    product_with_stock(sku="ANON-1")

    # When an anonymous caller uses the API
    response = getattr(APIClient(), method)(url, _items(("ANON-1", 1)), format="json")

    # Then it is refused with 401 (and a challenge), and nothing is created
    assert response.status_code == 401, response.content
    assert "WWW-Authenticate" in response
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_anonymous_cannot_read_an_existing_order(client):
    product = product_with_stock()
    order_id = _post_order(api_client_for(customer_create()), _items((product.sku, 1))).json()["id"]

    response = client.get(_order_url(order_id))

    assert response.status_code == 401
    assert order_id not in response.content.decode()


@pytest.mark.django_db
def test_bad_token_is_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get(ORDERS_URL).status_code == 401


# --- query budget ------------------------------------------------------------------------
# Exact counts, so that any extra query (a lazy relation, a lookup that need not happen)
# fails here. Transactional tests: BEGIN and COMMIT are real, as in production.


def _post_two_lines_counting_queries(django_assert_num_queries, count, **headers):  # type: ignore[no-untyped-def]
    customer = customer_create()
    a, b = product_with_stock(price="2.00"), product_with_stock(price="3.00")
    client = api_client_for(customer)  # the token exists before counting, as in real use
    body = _items((a.sku, 1), (b.sku, 2))
    with django_assert_num_queries(count):
        response = _post_order(client, body, **headers)
    assert response.status_code == 201, response.content
    return client, body, response


@pytest.mark.django_db(transaction=True)
def test_create_order_costs_seven_queries(django_assert_num_queries):
    # Token+user, BEGIN, products, INSERT order, INSERT lines, INSERT outbox event, COMMIT:
    # nothing is read back, since a new order has just these lines and no payment/shipment.
    _, _, response = _post_two_lines_counting_queries(django_assert_num_queries, 7)

    body = response.json()
    assert [(line["quantity"], line["unit_price"]) for line in body["items"]] == [
        (1, "2.00"),
        (2, "3.00"),
    ]
    assert body["payment"] is None
    assert body["shipment"] is None
    assert body["total"] == "8.00"


@pytest.mark.django_db(transaction=True)
def test_create_order_with_idempotency_key_costs_ten_queries_and_its_replay_five(
    django_assert_num_queries,
):
    # With a key: + the key lookup, + SAVEPOINT/RELEASE around the insert (the savepoint lets
    # a concurrent duplicate key be answered with the winner's order).
    client, body, first = _post_two_lines_counting_queries(
        django_assert_num_queries, 10, **{"Idempotency-Key": "budget"}
    )

    # The replay: token+user, BEGIN, key lookup (payment, shipment joined), COMMIT, lines.
    with django_assert_num_queries(5):
        replay = _post_order(client, body, **{"Idempotency-Key": "budget"})

    assert replay.status_code == 201, replay.content
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


# --- idempotency -------------------------------------------------------------------------


@pytest.mark.django_db
def test_same_idempotency_key_and_body_replays_the_same_order():
    # Given a customer who posts an order with an Idempotency-Key
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    body = _items((product.sku, 2))
    first = _post_order(client, body, **{"Idempotency-Key": "key-1"})

    # When the very same request is retried
    second = _post_order(client, body, **{"Idempotency-Key": "key-1"})

    # Then the same order comes back, marked as a replay, and nothing new is created
    assert first.status_code == 201, first.content
    assert second.status_code == 201, second.content
    assert second.json()["id"] == first.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.filter(event_type="orders.created").count() == 1


@pytest.mark.django_db
def test_same_idempotency_key_with_items_in_another_order_is_the_same_request():
    customer = customer_create()
    a, b = product_with_stock(), product_with_stock()
    client = api_client_for(customer)
    first = _post_order(client, _items((a.sku, 1), (b.sku, 2)), **{"Idempotency-Key": "k"})

    second = _post_order(client, _items((b.sku, 2), (a.sku, 1)), **{"Idempotency-Key": "k"})

    assert second.status_code == 201, second.content
    assert second.json()["id"] == first.json()["id"]
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_same_idempotency_key_with_different_body_is_422():
    # Given an order posted with a key
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    _post_order(client, _items((product.sku, 1)), **{"Idempotency-Key": "key-1"})

    # When the key is reused for a different request
    response = _post_order(client, _items((product.sku, 5)), **{"Idempotency-Key": "key-1"})

    # Then it is refused, naming the header, and nothing more is created
    assert response.status_code == 422, response.content
    assert "Idempotency-Key" in response.json()
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.count() == 1


@pytest.mark.django_db
def test_same_idempotency_key_of_two_customers_makes_two_orders():
    product = product_with_stock()
    body = _items((product.sku, 1))

    first = _post_order(api_client_for(customer_create()), body, **{"Idempotency-Key": "shared"})
    second = _post_order(api_client_for(customer_create()), body, **{"Idempotency-Key": "shared"})

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert "Idempotent-Replayed" not in second
    assert Order.objects.count() == 2
    assert OutboxEvent.objects.count() == 2


@pytest.mark.django_db
def test_without_idempotency_key_each_post_makes_a_new_order():
    customer = customer_create()
    product = product_with_stock()
    client = api_client_for(customer)
    body = _items((product.sku, 1))

    first, second = _post_order(client, body), _post_order(client, body)

    assert first.json()["id"] != second.json()["id"]
    assert Order.objects.count() == 2


# --- validation --------------------------------------------------------------------------

MAX_QUANTITY = settings.ORDERS["MAX_QUANTITY_PER_LINE"]
MAX_LINES = settings.ORDERS["MAX_LINES"]
KNOWN = "KNOWN-1"
INACTIVE = "INACTIVE-1"


def _field_named(errors: object, field: str) -> bool:
    """Whether `field` is a key anywhere in a DRF error structure."""
    if isinstance(errors, dict):
        return field in errors or any(_field_named(v, field) for v in errors.values())
    if isinstance(errors, list):
        return any(_field_named(v, field) for v in errors)
    return False


INVALID_BODIES = [
    pytest.param(_items(("NO-SUCH-SKU", 1)), "items", id="unknown-sku"),
    pytest.param(_items((INACTIVE, 1)), "items", id="inactive-sku"),
    pytest.param(_items((KNOWN, 1), ("NO-SUCH-SKU", 1)), "items", id="one-unknown-of-two"),
    pytest.param(_items((KNOWN, 0)), "quantity", id="quantity-zero"),
    pytest.param(_items((KNOWN, -3)), "quantity", id="quantity-negative"),
    pytest.param(_items((KNOWN, MAX_QUANTITY + 1)), "quantity", id="quantity-above-max"),
    pytest.param(_items((KNOWN, 10**30)), "quantity", id="quantity-huge"),
    pytest.param({"items": [{"sku": KNOWN, "quantity": "abc"}]}, "quantity", id="quantity-abc"),
    pytest.param({"items": [{"sku": KNOWN, "quantity": 1.5}]}, "quantity", id="quantity-float"),
    pytest.param({"items": [{"sku": KNOWN, "quantity": None}]}, "quantity", id="quantity-null"),
    pytest.param({"items": [{"sku": KNOWN, "quantity": True}]}, "quantity", id="quantity-bool"),
    # JSON types as the schema says: no conversion of "2" to 2, or of 2 to "2"
    pytest.param({"items": [{"sku": KNOWN, "quantity": "2"}]}, "quantity", id="quantity-string"),
    pytest.param({"items": [{"sku": KNOWN, "quantity": 2.0}]}, "quantity", id="quantity-2.0"),
    pytest.param({"items": [{"sku": 1, "quantity": 1}]}, "sku", id="sku-number"),
    pytest.param({**_items((KNOWN, 1)), "payment_token": 42}, "payment_token", id="token-number"),
    pytest.param(
        {**_items((KNOWN, 1)), "shipping_address": {**ADDRESS, "postal_code": 10115}},
        "postal_code",
        id="address-postal-code-number",
    ),
    pytest.param({"items": [{"sku": KNOWN}]}, "quantity", id="quantity-missing"),
    pytest.param({"items": [{"quantity": 1}]}, "sku", id="sku-missing"),
    pytest.param({"items": [{"sku": "", "quantity": 1}]}, "sku", id="sku-empty"),
    pytest.param({"items": [{"sku": None, "quantity": 1}]}, "sku", id="sku-null"),
    pytest.param({"items": [{"sku": ["A"], "quantity": 1}]}, "sku", id="sku-list"),
    pytest.param({"items": [{"sku": "A\x00B", "quantity": 1}]}, "sku", id="sku-nul-char"),
    pytest.param(_items(("S" * 65, 1)), "sku", id="sku-too-long"),
    pytest.param({"items": []}, "items", id="items-empty"),
    pytest.param({}, "items", id="items-missing"),
    pytest.param({"items": None}, "items", id="items-null"),
    pytest.param({"items": {"sku": KNOWN, "quantity": 1}}, "items", id="items-dict"),
    pytest.param({"items": "KNOWN-1"}, "items", id="items-string"),
    pytest.param({"items": ["KNOWN-1"]}, "items", id="item-string"),
    pytest.param({"items": [1]}, "items", id="item-number"),
    pytest.param({"items": [[KNOWN, 1]]}, "items", id="item-list"),
    pytest.param(_items((KNOWN, 1), (KNOWN, 2)), "items", id="duplicate-sku"),
    pytest.param(
        _items(*[(f"L-{n}", 1) for n in range(MAX_LINES + 1)]), "items", id="too-many-lines"
    ),
    pytest.param({**_items((KNOWN, 1)), "sales_channel": "fax"}, "sales_channel", id="channel"),
    pytest.param(
        {**_items((KNOWN, 1)), "shipping_address": {**ADDRESS, "country": "Germany"}},
        "country",
        id="address-country-not-iso",
    ),
    pytest.param(
        {**_items((KNOWN, 1)), "shipping_address": {**ADDRESS, "city": "  "}},
        "city",
        id="address-city-blank",
    ),
    pytest.param(
        {**_items((KNOWN, 1)), "shipping_address": {"name": "Ada"}},
        "line1",
        id="address-incomplete",
    ),
    pytest.param(
        {**_items((KNOWN, 1)), "shipping_address": "Berlin"}, "shipping_address", id="address-str"
    ),
    pytest.param([{"sku": KNOWN, "quantity": 1}], "non_field_errors", id="body-is-list"),
    pytest.param("items", "non_field_errors", id="body-is-string"),
    pytest.param(42, "non_field_errors", id="body-is-number"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
def test_invalid_order_is_400_naming_the_field_and_creates_nothing(body, field):
    # Given a customer, an active and an inactive product
    customer = customer_create()
    product_with_stock(sku=KNOWN)
    product_with_stock(sku=INACTIVE, active=False)

    # When an invalid order is posted
    response = _post_order(api_client_for(customer), body)

    # Then it is a 400 naming the offending field, and nothing is created
    assert response.status_code == 400, response.content
    assert _field_named(response.json(), field), response.json()
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"items": [', id="truncated"),
        pytest.param(b"not json at all", id="text"),
        pytest.param(b"\xff\xfe\x00garbage", id="invalid-utf8"),
        pytest.param(b'{"items": [{"sku": "KNOWN-1", "quantity": NaN}]}', id="nan"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'{"items": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="nested-too-deep"),
        pytest.param(b"[" * 100_000, id="unclosed-deep-nesting"),
    ],
)
def test_malformed_json_is_400_and_creates_nothing(raw):
    customer = customer_create()
    product_with_stock(sku=KNOWN)

    response = api_client_for(customer).generic(
        "POST", ORDERS_URL, raw, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert response.json()  # a JSON error body, not an HTML page
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_error_module_named_in_settings_imports_first_without_a_cycle():
    # DRF's views read DEFAULT_PARSER_CLASSES (our common.api_errors.JSONParser) while
    # being imported; a script that imports our module first must not hit a cycle.
    code = "import django; django.setup(); import common.api_errors"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"items": [{"sku": "\\ud800", "quantity": 1}]}', id="lone-surrogate"),
        pytest.param(b'{"items": [{"sku": "A\\u0000B", "quantity": 1}]}', id="escaped-nul"),
    ],
)
def test_sku_with_characters_postgres_cannot_store_is_400(raw):
    customer = customer_create()

    response = api_client_for(customer).generic(
        "POST", ORDERS_URL, raw, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert _field_named(response.json(), "sku"), response.json()
    assert Order.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 201, id="too-long"),
        pytest.param("bad\tkey", id="not-printable"),
    ],
)
def test_invalid_idempotency_key_is_400_naming_the_header(key):
    customer = customer_create()
    product = product_with_stock()

    response = _post_order(
        api_client_for(customer), _items((product.sku, 1)), **{"Idempotency-Key": key}
    )

    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_idempotency_key_of_exactly_200_characters_is_accepted():
    customer = customer_create()
    product = product_with_stock()

    response = _post_order(
        api_client_for(customer), _items((product.sku, 1)), **{"Idempotency-Key": "k" * 200}
    )

    assert response.status_code == 201, response.content
    assert Order.objects.get().idempotency_key == "k" * 200


@pytest.mark.django_db
def test_limits_themselves_are_accepted():
    # Given exactly MAX_LINES products
    customer = customer_create()
    skus = [product_with_stock(price="1.00").sku for _ in range(MAX_LINES)]

    # When an order uses every line at the maximum quantity
    response = _post_order(api_client_for(customer), _items(*[(sku, MAX_QUANTITY) for sku in skus]))

    # Then it is accepted
    assert response.status_code == 201, response.content
    assert Decimal(response.json()["total"]) == Decimal(MAX_LINES * MAX_QUANTITY)
    assert len(response.json()["items"]) == MAX_LINES


# --- schema and docs ---------------------------------------------------------------------


@pytest.mark.django_db
def test_schema_describes_the_orders_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/orders/" in schema["paths"]
    assert {"get", "post"} <= set(schema["paths"]["/api/orders/"])
    assert "/api/orders/{order_id}/" in schema["paths"]
    assert "/api/products/" in schema["paths"]


@pytest.mark.django_db
def test_schema_documents_the_paginated_order_list(client):
    schema = json.loads(
        client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content
    )

    ok = schema["paths"]["/api/orders/"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    listed = schema["components"]["schemas"][ref]
    assert {"count", "results"} <= set(listed["properties"])


@pytest.mark.django_db
def test_schema_documents_the_idempotency_key_header(client):
    schema = json.loads(
        client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content
    )

    parameters = schema["paths"]["/api/orders/"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)


@pytest.mark.django_db
def test_docs_page_is_served(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
