"""The customer's notification API: preferences (GET/PUT) and push subscriptions
(GET/POST/DELETE). Owner-scoped, token-authenticated, 400 with field errors."""

import uuid

import pytest
from rest_framework.test import APIClient

from notifications.models import NotificationPreferences, PushSubscription
from testing.factories import (
    api_client_for,
    browser_push_keys,
    customer_create,
    push_subscription_register_for,
    vapid_private_key,
)

pytestmark = pytest.mark.django_db

PREFERENCES = "/api/notification-preferences/"
SUBSCRIPTIONS = "/api/push-subscriptions/"
PHONE = "+4915112345678"


def _subscription_body(endpoint: str | None = None) -> dict:
    keys = browser_push_keys()
    return {
        "endpoint": endpoint or f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}",
        "expirationTime": None,
        "keys": {"p256dh": keys.p256dh, "auth": keys.auth},
    }


def _put(client: APIClient, **fields: object):  # type: ignore[no-untyped-def]
    body = {"email_enabled": True, "sms_enabled": False, "push_enabled": False, **fields}
    return client.put(PREFERENCES, body, format="json")


# --- preferences --------------------------------------------------------------------------


def test_a_new_customer_has_the_default_preferences():
    response = api_client_for(customer_create()).get(PREFERENCES)

    assert response.status_code == 200
    assert response.json() == {
        "email_enabled": True,
        "sms_enabled": False,
        "push_enabled": False,
        "phone_number": "",
        "active_channels": ["email"],
        "vapid_public_key": "",
    }


def test_put_sets_every_channel_and_get_reads_them_back():
    # Given a customer with a push subscription
    customer = customer_create()
    client = api_client_for(customer)
    push_subscription_register_for(customer)

    # When they turn e-mail off and SMS and push on
    response = _put(
        client, email_enabled=False, sms_enabled=True, push_enabled=True, phone_number=PHONE
    )

    # Then the answer and a later GET show it, with the channels now active
    expected = {
        "email_enabled": False,
        "sms_enabled": True,
        "push_enabled": True,
        "phone_number": PHONE,
        "active_channels": ["sms", "push"],
        "vapid_public_key": "",
    }
    assert response.status_code == 200, response.content
    assert response.json() == expected
    assert client.get(PREFERENCES).json() == expected


def test_preferences_are_the_callers_own():
    # Given customer A with SMS on
    a, b = customer_create(), customer_create()
    assert _put(api_client_for(a), sms_enabled=True, phone_number=PHONE).status_code == 200

    # When B reads and changes their own
    b_client = api_client_for(b)
    before = b_client.get(PREFERENCES).json()
    _put(b_client, email_enabled=False)

    # Then B saw the defaults, and A's are unchanged
    assert before["sms_enabled"] is False and before["phone_number"] == ""
    a_preferences = NotificationPreferences.objects.get(customer=a)
    assert (a_preferences.email_enabled, a_preferences.phone_number) == (True, PHONE)


def test_the_vapid_public_key_is_given_when_push_is_configured(channels):
    channels(WEBPUSH={"VAPID_PRIVATE_KEY": vapid_private_key()})

    key = api_client_for(customer_create()).get(PREFERENCES).json()["vapid_public_key"]

    assert len(key) == 87  # 65 bytes, base64url without padding


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"phone_number": "015112345678"}, {"phone_number"}),  # national, no +
        ({"phone_number": "+49 151 12345678"}, {"phone_number"}),  # spaces
        ({"phone_number": "+0151123456"}, {"phone_number"}),  # no country code starts with 0
        ({"phone_number": "+1234567890123456"}, {"phone_number"}),  # 16 digits: too long
        ({"phone_number": 4915112345678}, {"phone_number"}),  # a number, not a string
        ({"sms_enabled": True}, {"phone_number"}),  # SMS without a number
        ({"push_enabled": True}, {"push_enabled"}),  # push without a subscription
        ({"email_enabled": "true"}, {"email_enabled"}),  # a string, not a boolean
        ({"sms_enabled": 1}, {"sms_enabled"}),
        ({"email_enabled": None}, {"email_enabled"}),
    ],
)
def test_bad_preferences_are_400_by_field_and_change_nothing(fields, errors):
    customer = customer_create()

    response = _put(api_client_for(customer), **fields)

    assert response.status_code == 400, response.content
    assert set(response.json()) == errors
    assert not NotificationPreferences.objects.filter(customer=customer).exists()


def test_put_needs_every_channel():
    response = api_client_for(customer_create()).put(
        PREFERENCES, {"email_enabled": True}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()) == {"sms_enabled", "push_enabled"}


def test_anonymous_requests_are_401():
    client = APIClient()

    assert client.get(PREFERENCES).status_code == 401
    assert client.put(PREFERENCES, {}, format="json").status_code == 401
    assert client.get(SUBSCRIPTIONS).status_code == 401
    assert client.post(SUBSCRIPTIONS, _subscription_body(), format="json").status_code == 401


# --- push subscriptions -------------------------------------------------------------------


def test_register_list_and_delete_a_push_subscription():
    customer = customer_create()
    client = api_client_for(customer)
    body = _subscription_body()

    created = client.post(SUBSCRIPTIONS, body, format="json")
    listed = client.get(SUBSCRIPTIONS)
    deleted = client.delete(f"{SUBSCRIPTIONS}{created.json()['id']}/")

    assert created.status_code == 201, created.content
    assert created.json()["endpoint"] == body["endpoint"]
    assert [s["id"] for s in listed.json()] == [created.json()["id"]]
    assert deleted.status_code == 204
    assert not PushSubscription.objects.exists()


def test_registering_an_endpoint_again_updates_its_keys():
    customer = customer_create()
    client = api_client_for(customer)
    body = _subscription_body()
    first = client.post(SUBSCRIPTIONS, body, format="json")

    again = client.post(SUBSCRIPTIONS, {**_subscription_body(body["endpoint"])}, format="json")

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert PushSubscription.objects.count() == 1


def test_subscriptions_are_the_callers_own():
    # Given A's subscription
    a, b = customer_create(), customer_create()
    subscription, _ = push_subscription_register_for(a)
    b_client = api_client_for(b)

    # When B lists subscriptions and tries to delete A's
    listed = b_client.get(SUBSCRIPTIONS)
    deleted = b_client.delete(f"{SUBSCRIPTIONS}{subscription.id}/")

    # Then B sees none, gets 404, and A's subscription stays
    assert listed.json() == []
    assert deleted.status_code == 404
    assert PushSubscription.objects.filter(id=subscription.id).exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpoint": "http://fcm.googleapis.com/fcm/send/x"}, "endpoint"),  # not https
        ({"endpoint": "https://127.0.0.1/push"}, "endpoint"),  # no push service
        ({"endpoint": "https://fcm.googleapis.com.evil.example/x"}, "endpoint"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"keys": {"p256dh": browser_push_keys().p256dh, "auth": "short"}}, "keys.auth"),
        ({"keys": {"p256dh": "!" * 87, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"keys": {"auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"expirationTime": "soon"}, "expirationTime"),
    ],
)
def test_bad_subscriptions_are_400_by_field(change, field):
    response = api_client_for(customer_create()).post(
        SUBSCRIPTIONS, {**_subscription_body(), **change}, format="json"
    )

    assert response.status_code == 400, response.content
    errors = response.json()
    for part in field.split("."):  # errors are nested like the request
        errors = errors[part]
    assert errors
    assert not PushSubscription.objects.exists()


def test_subscriptions_per_customer_are_limited(channels):
    channels(WEBPUSH={"MAX_SUBSCRIPTIONS": 2})
    client = api_client_for(customer_create())
    for _ in range(2):
        assert client.post(SUBSCRIPTIONS, _subscription_body(), format="json").status_code == 201

    response = client.post(SUBSCRIPTIONS, _subscription_body(), format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_deleting_an_unknown_subscription_is_404():
    response = api_client_for(customer_create()).delete(f"{SUBSCRIPTIONS}{uuid.uuid4()}/")

    assert response.status_code == 404
