"""Property-based tests of the HTTP API, generated from its own OpenAPI schema (/api/schema/).

Over every operation the schema documents:
1. a customer who owns orders never gets a 5xx, whatever the request, and every response
   is one the schema declares for that operation, with its content type and body (staff
   likewise on the staff-only operations);
2. a customer never reads, cancels or lists another customer's order: 404, nothing changes;
3. an anonymous request is always refused with 401.

The application runs in-process (`ecommerce.wsgi.application`, no server) inside the test's
transaction. Each generated request runs in a savepoint that is rolled back afterwards, so
every example starts from the same rows (rows a POST creates never leak into the next
example) and Hypothesis can replay and shrink a failure exactly.
"""

import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api_tokens.services import api_token_issue
from ecommerce.wsgi import application
from kafka_bridge.models import OutboxEvent
from orders.models import Order
from orders.services import (
    order_cancel,
    order_deliver,
    order_mark_paid,
    order_mark_reserved,
    order_ship,
)
from orders.status import OrderStatus
from testing.factories import (
    api_client_for,
    customer_create,
    order_place_via_api,
    product_with_stock,
    staff_create,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _application_in_test_transaction(environ, start_response):  # type: ignore[no-untyped-def]
    """`ecommerce.wsgi.application` run the way Django's own test client runs it: without
    `close_old_connections` at the start and end of the request. The application shares
    this thread's connection, which is inside the test's transaction; closing it there
    would end that transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()  # sends request_finished while close_old_connections is off
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Loaded once, at collection, from the running application: serving the schema touches no
# database. (`schemathesis.pytest.from_fixture` would load it per test, but its lazy runner
# needs `Node._nodeid`, which pytest 9 no longer has.)
SCHEMA = schemathesis.openapi.from_wsgi(
    "/api/schema/",
    _application_in_test_transaction,
    headers={"Accept": "application/vnd.oai.openapi+json"},
)

# Bounded for CI: about 7 operations x (coverage cases + 30 generated) per test.
FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    # The `world` fixture is built once per operation and shared by its examples on purpose:
    # every example runs in a rolled-back savepoint, so it always sees the same rows.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every response check that holds for this API. Left out, and why:
# - positive_data_acceptance: a schema-valid order may still be refused on purpose (an
#   unknown SKU, a repeated SKU: 400, declared as such).
RESPONSE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    missing_required_header,
    unsupported_method,
]

ORDER_STATUSES = (
    OrderStatus.PENDING,
    OrderStatus.RESERVED,
    OrderStatus.PAID,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.CANCELLED,
)


@dataclass(frozen=True)
class World:
    owner: AbstractBaseUser
    intruder: AbstractBaseUser
    staff: AbstractBaseUser
    owner_order_ids: tuple[str, ...]  # one per ORDER_STATUSES, in that order
    intruder_order_ids: tuple[str, ...]
    skus: tuple[str, ...]
    # Issued outside the examples' rolled-back savepoints, so they last for every example.
    keys: dict[int, str]

    def auth(self, user: AbstractBaseUser) -> dict[str, str]:
        return {"Authorization": f"Token {self.keys[user.pk]}"}


def _order_in_status(customer: AbstractBaseUser, sku: str, status: str) -> str:
    """An order placed through the API, then moved along the saga by the services."""
    order_id = order_place_via_api(customer, sku)
    steps = {
        OrderStatus.PENDING: [],
        OrderStatus.RESERVED: [order_mark_reserved],
        OrderStatus.PAID: [order_mark_reserved, order_mark_paid],
        OrderStatus.SHIPPED: [order_mark_reserved, order_mark_paid, order_ship],
        OrderStatus.DELIVERED: [order_mark_reserved, order_mark_paid, order_ship, order_deliver],
    }
    if status == OrderStatus.CANCELLED:
        order_cancel(order_id=uuid.UUID(order_id), actor="customer")
    for step in steps.get(status, []):
        step(order_id=uuid.UUID(order_id))
    assert Order.objects.get(id=order_id).status == status
    return order_id


@pytest.fixture
def world(db) -> World:  # type: ignore[no-untyped-def]
    """A shop with active products (and an inactive one), a customer owning one order in
    each status that matters, a second customer with an order of their own, and staff."""
    products = [product_with_stock(price=price) for price in ("9.99", "0.50", "120.00")]
    product_with_stock(active=False)
    owner = customer_create()
    intruder = customer_create()
    staff = staff_create()
    return World(
        owner=owner,
        intruder=intruder,
        staff=staff,
        owner_order_ids=tuple(
            _order_in_status(owner, products[0].sku, status) for status in ORDER_STATUSES
        ),
        intruder_order_ids=(order_place_via_api(intruder, products[1].sku),),
        skus=tuple(product.sku for product in products),
        keys={user.pk: api_token_issue(user=user) for user in (owner, intruder, staff)},
    )


@contextmanager
def _rolled_back() -> Iterator[None]:
    """Whatever happens inside is undone, so the next example starts from the same rows."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _pick(generated: object, choices: tuple[str, ...]) -> str | None:
    """One of `choices` (or None, about one time in len+1), chosen from the generated value
    so that the same case always makes the same choice."""
    index = zlib.crc32(repr(generated).encode()) % (len(choices) + 1)
    return choices[index] if index < len(choices) else None


def _is_valid_at(case: schemathesis.Case, location: ParameterLocation) -> bool:
    return case.meta is None or not case.meta.is_negative_at(location)


def _aim_at_real_rows(case: schemathesis.Case, world: World) -> None:
    """Random UUIDs, SKUs and page numbers only ever reach 404 and 400, so most schema-valid
    cases get one of the owner's real order ids, page 1, and order lines for distinct existing
    SKUs instead (so orders really get created). Invalid parts stay as generated."""
    path = case.path_parameters or {}
    if "order_id" in path and _is_valid_at(case, ParameterLocation.PATH):
        path["order_id"] = _pick(path["order_id"], world.owner_order_ids) or path["order_id"]
    query = case.query or {}
    if "page" in query and _is_valid_at(case, ParameterLocation.QUERY):
        query["page"] = _pick(query["page"], ("1",)) or query["page"]
    body = case.body
    if (
        isinstance(body, dict)
        and isinstance(body.get("items"), list)
        and all(isinstance(item, dict) for item in body["items"])
        and _is_valid_at(case, ParameterLocation.BODY)
        and _pick(body["items"], ("aim",) * 3)  # three cases in four
    ):
        # At most one line per product: a repeated SKU is refused on purpose.
        body["items"] = [
            {**item, "sku": sku} for item, sku in zip(body["items"], world.skus, strict=False)
        ]


def _statuses(order_ids: Iterable[str]) -> dict[str, tuple[str, str, object]]:
    return {
        str(order.id): (order.status, order.status_reason, order.updated_at)
        for order in Order.objects.filter(id__in=list(order_ids))
    }


def _events_about(order_ids: Iterable[str]) -> int:
    return OutboxEvent.objects.filter(aggregate_id__in=[str(i) for i in order_ids]).count()


def _route_exists(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


# --- 1. no 5xx, responses as documented ---------------------------------------------------


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_customer_requests_never_cause_a_server_error(case, world):  # type: ignore[no-untyped-def]
    # Given a customer who owns orders in every status, and products to order
    _aim_at_real_rows(case, world)

    # When they send any request the schema allows (and many it does not)
    # Then no answer is a 5xx, and every documented answer conforms to the schema
    with _rolled_back():
        case.call_and_validate(headers=world.auth(world.owner), checks=RESPONSE_CHECKS)


@SCHEMA.include(path_regex=r"/(ship|deliver)/$|^/api/(metrics|reports|webhooks)/").parametrize()
@FUZZ_SETTINGS
def test_staff_requests_never_cause_a_server_error(case, world):  # type: ignore[no-untyped-def]
    # Given staff, and orders in every status (so ship and deliver both succeed and conflict);
    # the staff-only reports and webhook endpoints too
    _aim_at_real_rows(case, world)
    checks = RESPONSE_CHECKS
    if case.operation.path.endswith("/ship/"):
        # The schema documents the order-creation body for ship, so a body that is "invalid"
        # by the schema is in fact fine (see test_schema_documents_the_ship_request_body).
        checks = [check for check in checks if check is not negative_data_rejection]

    # When staff send any request to the staff-only operations
    # Then no answer is a 5xx, and every documented answer conforms to the schema
    with _rolled_back():
        case.call_and_validate(headers=world.auth(world.staff), checks=checks)


# --- 2. one customer never reaches another's orders ---------------------------------------

ATTEMPTS = st.lists(
    st.tuples(
        st.sampled_from(["retrieve", "cancel", "ship", "deliver"]),
        st.integers(min_value=0, max_value=len(ORDER_STATUSES) - 1),
        st.sampled_from(["canonical", "upper", "hex"]),
    ),
    min_size=1,
    max_size=6,
)


def _spelled(order_id: str, spelling: str) -> str:
    return {"canonical": order_id, "upper": order_id.upper(), "hex": uuid.UUID(order_id).hex}[
        spelling
    ]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(attempts=ATTEMPTS, body=st.sampled_from([None, {}, {"reason": "mine now"}]))
def test_a_customer_never_reads_cancels_or_lists_another_customers_orders(  # type: ignore[no-untyped-def]
    world, attempts, body
):
    # Given the owner's orders in every status, as they are now
    owner_ids = world.owner_order_ids
    before = _statuses(owner_ids)
    events_before = _events_about(owner_ids)
    intruder = api_client_for(world.intruder)

    # When another customer tries to read, cancel, ship or deliver them, however spelled
    for action, index, spelling in attempts:
        url = f"/api/orders/{_spelled(owner_ids[index], spelling)}/"
        if action == "retrieve":
            response = intruder.get(url)
        else:
            response = intruder.post(f"{url}{action}/", body, format="json")

        # Then each attempt is refused: not found (even for orders that could no longer be
        # cancelled, so a 409 does not reveal that the order exists), or forbidden to
        # non-staff; never a success
        if spelling != "canonical":
            expected = 404  # not a route at all: the uuid converter takes lowercase only
        elif action in ("retrieve", "cancel"):
            expected = 404
        else:
            expected = 403
        assert response.status_code == expected, (action, spelling, response.content)
        if expected == 404 and spelling == "canonical":
            assert response.json() == {"detail": "No such order."}

    # And nothing about the owner's orders changed, nor was any event recorded for them
    assert _statuses(owner_ids) == before
    assert _events_about(owner_ids) == events_before

    # And the owner still sees every one of them, unchanged (the ids were real all along)
    owner = api_client_for(world.owner)
    for order_id, (status, _, _) in before.items():
        response = owner.get(f"/api/orders/{order_id}/")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == status

    # And the other customer's list holds their own orders and none of the owner's
    listed, url = [], "/api/orders/"
    while url:
        page = intruder.get(url).json()
        listed += [order["id"] for order in page["results"]]
        url = page["next"]
    assert set(listed) == set(world.intruder_order_ids)


# --- 3. anonymous requests are refused ----------------------------------------------------


@SCHEMA.parametrize()
@settings(FUZZ_SETTINGS, max_examples=15)
def test_anonymous_requests_are_refused_with_401(case, world):  # type: ignore[no-untyped-def]
    # Given the owner's orders as they are now
    _aim_at_real_rows(case, world)
    for name in [name for name in case.headers or {} if name.lower() == "authorization"]:
        del case.headers[name]
    before = _statuses(world.owner_order_ids)

    with _rolled_back():
        # When a request without credentials reaches any operation
        response = case.call()

        # Then it is refused with 401 and a Token challenge (only a path that is no route
        # at all, e.g. a malformed order id, is a 404), never a 5xx; both as declared
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        )
        assert "authorization" not in {name.lower() for name in response.request.headers}
        if _route_exists(unquote(urlsplit(response.request.url).path)):
            assert response.status_code == 401, response.text
            assert response.headers.get("www-authenticate") == ["Token"]
        else:
            assert response.status_code == 404, response.text
        assert response.json().keys() == {"detail"}

        # And nothing changed
        assert _statuses(world.owner_order_ids) == before


# --- regressions: server errors and schema mismatches found while fuzzing ---------------

OPERATIONS = [
    (method.upper(), path)
    for path, item in SCHEMA.raw_schema["paths"].items()
    for method in item
    if method in ("get", "post", "put", "patch", "delete")
]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(operation=("GET", "/api/orders/"), session_key="\x00" * 8)  # the known failure
@given(
    operation=st.sampled_from(OPERATIONS),
    # What can reach the application: WSGI decodes header bytes as Latin-1.
    session_key=st.text(st.characters(max_codepoint=0xFF), max_size=40),
)
def test_anonymous_requests_with_any_session_cookie_are_refused_with_401(  # type: ignore[no-untyped-def]
    world, operation, session_key
):
    # Given a request without credentials, but with a session cookie of any content
    method, path = operation
    client = Client()
    client.cookies["sessionid"] = session_key  # quoted and escaped as a browser would send it

    with _rolled_back():
        # When it reaches any operation
        some_id = world.owner_order_ids[0]  # any id: the request is refused before lookup
        target = path.format(order_id=some_id, endpoint_id=some_id, subscription_id=some_id)
        response = client.generic(method, target)

        # Then it is refused with 401, like any other anonymous request
        assert response.status_code == 401, response.content


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(price=Decimal("10000000.00"), quantity=1000)  # the known failure: total 10^10
@given(
    price=st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2),
    quantity=st.integers(min_value=1, max_value=1000),
)
def test_an_order_of_any_catalogue_product_never_causes_a_server_error(  # type: ignore[no-untyped-def]
    world, price, quantity
):
    with _rolled_back():
        # Given a product at any price the catalogue can hold
        product = product_with_stock(price=str(price))

        # When a customer orders any quantity the API accepts
        response = api_client_for(world.owner).post(
            "/api/orders/",
            {"items": [{"sku": product.sku, "quantity": quantity}]},
            format="json",
        )

        # Then the order is created with the right total, or refused with a 400 (a total
        # beyond what an order can hold), never a 5xx
        assert response.status_code in (201, 400), response.content
        if response.status_code == 201:
            assert Decimal(response.json()["total"]) == price * quantity


# --- schema mismatches the fuzzing found ----------------------------------------------------


def _request_schema(path: str, method: str) -> dict:
    content = SCHEMA.raw_schema["paths"][path][method]["requestBody"]["content"]
    reference = content["application/json"]["schema"]["$ref"]
    return SCHEMA.raw_schema["components"]["schemas"][reference.rsplit("/", 1)[-1]]


def test_schema_documents_the_ship_request_body():
    ship = _request_schema("/api/orders/{order_id}/ship/", "post")

    assert set(ship["properties"]) == {"carrier"}
    assert not ship.get("required")


def test_schema_documents_that_an_order_needs_one_to_max_lines():
    items = _request_schema("/api/orders/", "post")["properties"]["items"]

    assert items.get("minItems") == 1
    assert items.get("maxItems") == django_settings.ORDERS["MAX_LINES"]
