"""API rate limits: each limit is crossed (429 with Retry-After, in the API's error shape),
then recovers once its window has passed; the limits share the Redis cache; one setting
turns them off; an unreachable cache lets requests through. Windows are a few seconds long
here (settings override), and recovery is polled with a deadline of Retry-After."""

import logging
import uuid
from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from common.throttling import rate_parse
from testing.factories import api_client_for, customer_create, product_with_stock
from testing.polling import wait_until
from tools.localservices import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

LIMITS = {"customer": "1000/min", "order_create": "1000/min", "anonymous": "1000/min"}


@pytest.fixture
def limits(settings) -> Callable[..., None]:  # type: ignore[no-untyped-def]
    """Turn the limits on, counted under a key prefix of this test's own (the Redis server
    may be shared with other runs), with the given rates and the others out of reach."""
    settings.API_THROTTLING = True
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }

    def set_rates(**rates: str) -> None:
        settings.API_THROTTLE_RATES = {**LIMITS, **rates}

    set_rates()
    return set_rates


def _order(client: APIClient, sku: str) -> int:
    body = {"items": [{"sku": sku, "quantity": 1}]}
    return client.post("/api/orders/", body, format="json").status_code


def _assert_throttled(response, window_seconds: int) -> int:  # type: ignore[no-untyped-def]
    """A 429 in the API's error shape, with a Retry-After within the window; return it."""
    assert response.status_code == 429, response.content
    assert set(response.json()) == {"detail"}, response.json()
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= window_seconds
    return retry_after


def _recovers(request: Callable[[], int], expected: int, retry_after: int) -> None:
    """Poll until `request` answers `expected` again; fail if that takes well past
    Retry-After. (Refused requests are not counted, so polling does not prolong the wait.)"""
    wait_until(
        lambda: request() == expected,
        timeout=retry_after + 3,
        interval=0.2,
        message=f"a {expected} after Retry-After {retry_after}s",
    )


def test_order_creation_is_limited_per_customer_and_recovers_after_the_window(limits):
    # Given at most 2 orders per 4 s per customer
    limits(order_create="2/4s")
    sku = product_with_stock(on_hand=1000).sku
    customer, other = api_client_for(customer_create()), api_client_for(customer_create())

    # When the customer places 2 orders, then a third
    assert [_order(customer, sku), _order(customer, sku)] == [201, 201]
    third = customer.post("/api/orders/", {"items": [{"sku": sku, "quantity": 1}]}, format="json")

    # Then the third is refused with 429 and Retry-After, and so is the next one at once
    retry_after = _assert_throttled(third, window_seconds=4)
    assert _order(customer, sku) == 429
    # And the limit is on creating only, and only for that customer
    assert customer.get("/api/orders/").status_code == 200
    assert _order(other, sku) == 201

    # And once the window has passed the customer can order again
    _recovers(lambda: _order(customer, sku), 201, retry_after)


def test_the_whole_api_is_limited_per_customer_and_recovers_after_the_window(limits):
    # Given at most 3 requests per 4 s per customer, on any endpoint
    limits(customer="3/4s")
    customer, other = api_client_for(customer_create()), api_client_for(customer_create())
    statuses = [
        customer.get("/api/products/").status_code,
        customer.get("/api/orders/").status_code,
        customer.get("/api/products/").status_code,
    ]
    assert statuses == [200, 200, 200]

    # When the customer sends a fourth request, to any endpoint
    fourth = customer.get("/api/orders/")

    # Then it is refused with 429 and Retry-After; another customer is not affected
    retry_after = _assert_throttled(fourth, window_seconds=4)
    assert customer.get("/api/products/").status_code == 429
    assert other.get("/api/products/").status_code == 200

    # And once the window has passed the customer is served again
    _recovers(lambda: customer.get("/api/products/").status_code, 200, retry_after)


def test_refused_tokens_are_limited_per_address_and_recover_after_the_window(limits):
    # Given at most 2 requests without valid credentials per 4 s per address
    limits(anonymous="2/4s")
    guesser = APIClient(REMOTE_ADDR="198.51.100.7")
    guesser.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    # When one address guesses tokens
    first, second, third = (guesser.get("/api/orders/") for _ in range(3))

    # Then the first guesses are refused as usual (401), the next one is throttled (429)
    assert [first.status_code, second.status_code] == [401, 401]
    retry_after = _assert_throttled(third, window_seconds=4)
    # And anonymous reads of public endpoints from that address count against the same limit
    assert APIClient(REMOTE_ADDR="198.51.100.7").get("/api/schema/").status_code == 429
    # And other addresses, and valid tokens from the same address, are not affected
    other_address = APIClient(REMOTE_ADDR="198.51.100.8")
    other_address.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert other_address.get("/api/orders/").status_code == 401
    customer = api_client_for(customer_create())
    assert customer.get("/api/orders/", REMOTE_ADDR="198.51.100.7").status_code == 200

    # And once the window has passed, a wrong token is a plain 401 again
    _recovers(lambda: guesser.get("/api/orders/").status_code, 401, retry_after)


def test_the_address_is_taken_from_the_trusted_proxy(limits, settings):
    # Given one proxy in front, which appends the address it saw to X-Forwarded-For
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    limits(anonymous="1/min")
    client = Client(REMOTE_ADDR="10.0.0.1")  # the proxy

    # When two clients behind it each fetch the schema once, one of them twice
    first = client.get("/api/schema/", HTTP_X_FORWARDED_FOR="203.0.113.1")
    second = client.get("/api/schema/", HTTP_X_FORWARDED_FOR="203.0.113.2")
    again = client.get("/api/schema/", HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.1")

    # Then each client has a limit of its own, whatever it puts in front of the header
    assert [first.status_code, second.status_code, again.status_code] == [200, 200, 429]


def test_api_throttling_false_turns_every_limit_off(limits, settings):
    # Given tiny limits, turned off by the one setting
    limits(customer="1/min", order_create="1/min", anonymous="1/min")
    settings.API_THROTTLING = False
    sku = product_with_stock(on_hand=100).sku
    customer = api_client_for(customer_create())
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Token wrong")

    # When every limit is crossed several times over
    # Then nothing is throttled
    assert [_order(customer, sku) for _ in range(3)] == [201] * 3
    assert [guesser.get("/api/orders/").status_code for _ in range(3)] == [401] * 3


def test_an_unreachable_cache_lets_requests_through_with_one_warning(limits, settings, caplog):
    # Given limits that would refuse the second request, counted in a Redis that is down
    limits(customer="1/min")
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }
    customer = api_client_for(customer_create())

    # When the customer sends requests
    with caplog.at_level(logging.WARNING, logger="common.throttling"):
        statuses = [customer.get("/api/products/").status_code for _ in range(3)]

    # Then they are served, and the outage is logged once
    assert statuses == [200, 200, 200]
    warnings = [r for r in caplog.records if r.name == "common.throttling"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_the_schema_declares_429_with_retry_after_on_every_operation(db):
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) >= 7
    for path, method, operation in operations:
        throttled = operation["responses"].get("429")
        assert throttled, (method, path)
        assert throttled["headers"]["Retry-After"]["required"] is True
        assert throttled["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [("60/min", (60, 60)), ("20/10s", (20, 10)), ("1000/day", (1000, 86400)), ("5/2h", (5, 7200))],
)
def test_rates_read_like_drfs_with_an_optional_period_count(rate, parsed):
    assert rate_parse(rate) == parsed


@pytest.mark.parametrize(
    "rate", ["", "60", "60/", "/min", "sixty/min", "60/fortnight", "6/0.5s", "6/0s"]
)
def test_a_malformed_rate_is_refused(rate):
    with pytest.raises(ValueError, match="not a rate"):
        rate_parse(rate)
