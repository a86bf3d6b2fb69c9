"""The API's documentation and its error answers: the docs pages load nothing from off-site,
the OpenAPI schema declares every answer of every operation with its body, and URLs under
/api/ that are no route answer in the API's error format. (The docs rendered in a browser
with every other host unreachable: tests/test_browser.py.)"""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client

from testing.factories import api_client_for, customer_create

pytestmark = pytest.mark.django_db

ASSET_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_api_docs_pages_load_every_asset_from_our_own_static_files(client: Client, page: str):
    # When the docs page is fetched
    response = client.get(page)

    # Then it links only our own static files, each of which exists (the page would be blank
    # without them), and names no other host anywhere
    assert response.status_code == 200
    html = response.content.decode()
    assets = ASSET_URL.findall(html)
    assert any(asset.endswith(".js") for asset in assets), html
    for asset in assets:
        assert asset.startswith(settings.STATIC_URL), asset
        found = finders.find(asset.removeprefix(settings.STATIC_URL))
        assert found is not None, f"{asset} is not a static file"
        assert Path(found).stat().st_size > 0
    assert "://" not in html and "//" not in "".join(assets)


def _schema(client: Client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    return json.loads(response.content)


ERROR = {"$ref": "#/components/schemas/Error"}
FIELD_ERRORS = {"$ref": "#/components/schemas/FieldErrors"}
CONFLICT = {"$ref": "#/components/schemas/OrderStatusConflict"}
INVALID_INPUT = {"anyOf": [FIELD_ERRORS, ERROR]}
# 400 (a request line or header gunicorn cannot parse), 414 and 431: gunicorn's own answers
EVERY_OPERATION = {
    "400": ERROR,
    "401": ERROR,
    "406": ERROR,
    "414": ERROR,
    "429": ERROR,
    "431": ERROR,
}
WITH_BODY = {"400": INVALID_INPUT, "413": ERROR, "415": ERROR}
EXPECTED_ERRORS = {
    ("get", "/api/orders/"): {**EVERY_OPERATION, "404": ERROR},  # no such page
    ("post", "/api/orders/"): {**EVERY_OPERATION, **WITH_BODY, "403": ERROR, "422": FIELD_ERRORS},
    ("get", "/api/orders/{order_id}/"): {**EVERY_OPERATION, "404": ERROR},
    # the live status: Last-Event-ID validated (400); a server that holds no streams (503)
    ("get", "/api/orders/{order_id}/events/"): {
        **EVERY_OPERATION,
        "400": INVALID_INPUT,
        "404": ERROR,
        "503": ERROR,
    },
    ("post", "/api/orders/{order_id}/cancel/"): {
        **EVERY_OPERATION,
        "403": ERROR,  # CSRF, for session authentication
        "404": ERROR,
        "409": CONFLICT,
    },
    ("post", "/api/orders/{order_id}/ship/"): {
        **EVERY_OPERATION,
        **WITH_BODY,
        "403": ERROR,
        "404": ERROR,
        "409": CONFLICT,
    },
    ("post", "/api/orders/{order_id}/deliver/"): {
        **EVERY_OPERATION,
        "403": ERROR,
        "404": ERROR,
        "409": CONFLICT,
    },
    # staff review of the orders the risk check held
    ("get", "/api/orders/held/"): {**EVERY_OPERATION, "403": ERROR, "404": ERROR},
    ("get", "/api/orders/{order_id}/risk/"): {**EVERY_OPERATION, "403": ERROR, "404": ERROR},
    ("post", "/api/orders/{order_id}/approve/"): {
        **EVERY_OPERATION,
        "403": ERROR,
        "404": ERROR,
        "409": CONFLICT,
    },
    ("post", "/api/orders/{order_id}/reject/"): {
        **EVERY_OPERATION,
        "403": ERROR,
        "404": ERROR,
        "409": CONFLICT,
    },
    ("get", "/api/products/"): {**EVERY_OPERATION, "404": ERROR},
    # the customer's notification channels
    ("get", "/api/notification-preferences/"): EVERY_OPERATION,
    ("put", "/api/notification-preferences/"): {**EVERY_OPERATION, **WITH_BODY, "403": ERROR},
    ("get", "/api/push-subscriptions/"): EVERY_OPERATION,
    ("post", "/api/push-subscriptions/"): {**EVERY_OPERATION, **WITH_BODY, "403": ERROR},
    ("delete", "/api/push-subscriptions/{subscription_id}/"): {
        **EVERY_OPERATION,
        "403": ERROR,  # CSRF, for session authentication
        "404": ERROR,
    },
    # staff reports: query fields validated (400), staff only (403)
    ("get", "/api/metrics/order-rate/"): {**EVERY_OPERATION, "400": INVALID_INPUT, "403": ERROR},
    ("get", "/api/reports/product-sales/"): {
        **EVERY_OPERATION,
        "400": INVALID_INPUT,
        "403": ERROR,
        "404": ERROR,
    },
    ("get", "/api/reports/customers/"): {
        **EVERY_OPERATION,
        "400": INVALID_INPUT,
        "403": ERROR,
        "404": ERROR,
    },
    # webhook endpoints: staff only
    ("get", "/api/webhooks/"): {**EVERY_OPERATION, "403": ERROR, "404": ERROR},
    ("post", "/api/webhooks/"): {**EVERY_OPERATION, **WITH_BODY, "403": ERROR},
    ("get", "/api/webhooks/{endpoint_id}/"): {**EVERY_OPERATION, "403": ERROR, "404": ERROR},
    ("delete", "/api/webhooks/{endpoint_id}/"): {**EVERY_OPERATION, "403": ERROR, "404": ERROR},
    ("post", "/api/webhooks/{endpoint_id}/enable/"): {
        **EVERY_OPERATION,
        "403": ERROR,
        "404": ERROR,
    },
}


def test_the_schema_declares_every_error_of_every_operation_with_its_json_body(client: Client):
    schema = _schema(client)
    operations = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    }

    assert set(operations) == set(EXPECTED_ERRORS)
    for key, operation in operations.items():
        errors = {code: r for code, r in operation["responses"].items() if code >= "400"}
        bodies = {code: r["content"]["application/json"]["schema"] for code, r in errors.items()}
        assert bodies == EXPECTED_ERRORS[key], key
        assert all(response["description"] for response in errors.values()), key
        assert errors["401"]["headers"]["WWW-Authenticate"]["required"] is True
        assert errors["429"]["headers"]["Retry-After"]["required"] is True


def test_the_error_components_describe_the_error_format(client: Client):
    components = _schema(client)["components"]["schemas"]

    assert components["Error"]["required"] == ["detail"]
    assert components["OrderStatusConflict"]["required"] == ["detail", "status"]
    # field → messages, or a nested object / list of objects in the shape of the request
    nested = components["FieldErrors"]["additionalProperties"]["anyOf"]
    assert {"type": "array", "items": {"type": "string"}} in nested
    assert FIELD_ERRORS in nested


def test_the_schema_says_the_api_takes_json_bodies_with_integer_quantities(client: Client):
    schema = _schema(client)
    body = schema["paths"]["/api/orders/"]["post"]["requestBody"]["content"]
    item = schema["components"]["schemas"]["Item"]

    assert set(body) == {"application/json"}
    assert item["properties"]["quantity"]["type"] == "integer"
    assert item["properties"]["sku"]["type"] == "string"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/"),
        ("get", "/api/nothing/here/"),
        ("post", "/api/nothing/"),
        ("get", "/api/orders/not-an-order-id/"),
        ("post", "/api/orders/not-an-order-id/cancel/"),
        ("post", "/api/orders/00000000-0000-0000-0000-00000000000Z/ship/"),
    ],
)
@pytest.mark.parametrize("caller", ["customer", "anonymous"])
def test_urls_under_api_that_are_no_route_are_404_in_the_error_format(
    method: str, path: str, caller: str
):
    client = api_client_for(customer_create()) if caller == "customer" else Client()

    response = getattr(client, method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_pages_outside_api_keep_djangos_404_page(client: Client):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path"),
    [("delete", "/api/orders/"), ("put", "/api/products/"), ("get", "/api/orders/{id}/cancel/")],
)
def test_a_method_an_api_url_does_not_take_is_405_in_the_error_format(method: str, path: str):
    customer = customer_create()
    client = api_client_for(customer)

    response = getattr(client, method)(path.format(id="6f1c2b4e-8c1f-4a52-9a39-2f7d0c9a1b11"))

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json().keys() == {"detail"}
