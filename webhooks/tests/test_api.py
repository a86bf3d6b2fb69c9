"""/api/webhooks/: staff only, field errors, the secret shown once, delete and re-enable."""

import pytest
from rest_framework.test import APIClient

from testing.factories import api_client_for, customer_create, staff_create
from webhooks.models import WebhookEndpoint
from webhooks.payloads import SUBSCRIBABLE_EVENT_TYPES
from webhooks.status import EndpointStatus

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/orders"


@pytest.fixture
def staff() -> APIClient:
    return api_client_for(staff_create())


def test_staff_register_an_endpoint_and_get_its_secret_once(staff: APIClient, refuse_private):
    # When staff register an endpoint
    response = staff.post(
        "/api/webhooks/",
        {"url": URL, "event_types": ["orders.shipped", "orders.paid", "orders.paid"]},
        format="json",
    )

    # Then it answers 201 with the id and the secret, event types normalised
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["orders.paid", "orders.shipped"]
    assert created["status"] == "active"
    # And the secret is in no later answer
    listed = staff.get("/api/webhooks/").json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    one = staff.get(f"/api/webhooks/{created['id']}/").json()
    assert one["url"] == URL and "secret" not in one
    assert created["secret"] not in str(listed) + str(one)


def test_star_subscribes_to_every_order_event(staff: APIClient):
    response = staff.post("/api/webhooks/", {"url": URL, "event_types": ["*"]}, format="json")

    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    assert all(endpoint.subscribes_to(name) for name in SUBSCRIBABLE_EVENT_TYPES)


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"url": URL, "event_types": ["orders.paid", "orders.teleported"]},
            {"event_types": ["Unknown event type: orders.teleported."]},
        ),
        ({"url": URL, "event_types": []}, {"event_types": ["Name at least one event type"]}),
        ({"url": URL, "event_types": ["*", "orders.paid"]}, {"event_types": ['"*"']}),
        ({"url": "http://hooks.example.com/", "event_types": ["*"]}, {"url": ["must use https"]}),
        ({"url": "https://10.0.0.1/", "event_types": ["*"]}, {"url": ["not a public address"]}),
        ({"url": "https://127.0.0.1/", "event_types": ["*"]}, {"url": ["loopback"]}),
        ({"url": "https://169.254.169.254/", "event_types": ["*"]}, {"url": ["link-local"]}),
        ({"url": "https://[::1]/", "event_types": ["*"]}, {"url": ["loopback"]}),
        (
            {"url": "gopher://x/", "event_types": ["nope"]},
            {"url": ["Only"], "event_types": ["nope"]},
        ),
        ({"url": 5, "event_types": "orders.paid"}, {"url": ["Not a valid string"]}),
        ({"event_types": ["*"]}, {"url": ["This field is required."]}),
    ],
)
def test_bad_registrations_are_400_with_field_errors(
    staff: APIClient, refuse_private, body: dict, errors: dict
):
    response = staff.post("/api/webhooks/", body, format="json")

    assert response.status_code == 400, response.content
    answer = response.json()
    for name, needles in errors.items():
        assert name in answer, answer
        for needle in needles:
            assert any(needle in message for message in answer[name]), answer
    assert not WebhookEndpoint.objects.exists()


def test_private_addresses_and_http_are_accepted_where_allowed(staff: APIClient, allow_private):
    body = {"url": "http://127.0.0.1:9000/hooks", "event_types": ["*"]}

    assert staff.post("/api/webhooks/", body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/webhooks/"),
        ("post", "/api/webhooks/"),
        ("get", "/api/webhooks/6f1c2b4e-8c1f-4a52-9a39-2f7d0c9a1b11/"),
        ("delete", "/api/webhooks/6f1c2b4e-8c1f-4a52-9a39-2f7d0c9a1b11/"),
        ("post", "/api/webhooks/6f1c2b4e-8c1f-4a52-9a39-2f7d0c9a1b11/enable/"),
    ],
)
def test_customers_get_403_and_anonymous_callers_401(method: str, path: str):
    customer = api_client_for(customer_create())
    body = {"url": URL, "event_types": ["*"]}

    as_customer = getattr(customer, method)(path, body, format="json")
    anonymous = getattr(APIClient(), method)(path, body, format="json")

    assert as_customer.status_code == 403 and as_customer.json().keys() == {"detail"}
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"


def test_delete_and_enable(staff: APIClient):
    created = staff.post("/api/webhooks/", {"url": URL, "event_types": ["*"]}, format="json")
    endpoint_id = created.json()["id"]
    WebhookEndpoint.objects.filter(id=endpoint_id).update(
        status=EndpointStatus.DISABLED, disabled_reason="failing", consecutive_failures=9
    )

    enabled = staff.post(f"/api/webhooks/{endpoint_id}/enable/")
    assert enabled.status_code == 200
    assert enabled.json()["status"] == "active"
    assert enabled.json()["consecutive_failures"] == 0

    assert staff.delete(f"/api/webhooks/{endpoint_id}/").status_code == 204
    assert staff.delete(f"/api/webhooks/{endpoint_id}/").status_code == 404
    assert staff.get(f"/api/webhooks/{endpoint_id}/").status_code == 404
    assert staff.post(f"/api/webhooks/{endpoint_id}/enable/").status_code == 404
