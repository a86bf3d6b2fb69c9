"""Test data, made through the same services the application uses."""

import base64
import os
import uuid
from dataclasses import dataclass
from decimal import Decimal
from itertools import count

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.test import APIClient

from api_tokens.services import api_token_issue
from inventory.models import Product
from inventory.services import product_create
from notifications.models import PushSubscription
from notifications.services import push_subscription_register

_sequence = count(1)


# A complete shipping address as the API takes it (line2 left out: it defaults to "").
SHIPPING_ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "postal_code": "SW1Y 4JH",
    "city": "London",
    "country": "GB",
}


def customer_create(username: str | None = None) -> AbstractBaseUser:
    username = username or f"customer{next(_sequence)}"
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password="x-test-password-1"
    )


def api_client_for(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user=user)}")
    return client


def product_with_stock(
    *, sku: str | None = None, on_hand: int = 100, price: str = "9.99", active: bool = True
) -> Product:
    sku = sku or f"SKU-{next(_sequence):05d}"
    return product_create(
        sku=sku, name=f"Product {sku}", price=Decimal(price), on_hand=on_hand, active=active
    )


def order_place_via_api(
    customer: AbstractBaseUser,
    sku: str,
    quantity: int = 1,
    *,
    payment_token: str = "",
    correlation_id: str | None = None,
    **fields: object,
) -> str:
    """POST an order as `customer`, with any further body `fields` (`sales_channel`,
    `shipping_address`); return its id (fails the test on anything but 201)."""
    headers = {"HTTP_X_CORRELATION_ID": correlation_id} if correlation_id else {}
    response = api_client_for(customer).post(
        "/api/orders/",
        {"items": [{"sku": sku, "quantity": quantity}], "payment_token": payment_token, **fields},
        format="json",
        **headers,
    )
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def staff_create(username: str = "staff") -> AbstractBaseUser:
    return get_user_model().objects.create_user(
        username=username, password="x-test-password-1", is_staff=True
    )


@dataclass(frozen=True)
class BrowserPushKeys:
    """What a browser's Push API makes for a subscription: a P-256 key pair (the public
    half goes to the server as `p256dh`) and a 16-byte auth secret. The private key lets a
    test decrypt what was pushed."""

    private_key: ec.EllipticCurvePrivateKey
    p256dh: str
    auth: str
    auth_secret: bytes


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def browser_push_keys() -> BrowserPushKeys:
    private_key = ec.generate_private_key(ec.SECP256R1())
    public = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    secret = os.urandom(16)
    return BrowserPushKeys(private_key, _b64url(public), _b64url(secret), secret)


def push_subscription_register_for(
    customer: AbstractBaseUser, *, endpoint: str | None = None
) -> tuple[PushSubscription, BrowserPushKeys]:
    """A push subscription on a real push service's host, through the service."""
    keys = browser_push_keys()
    subscription, _ = push_subscription_register(
        customer=customer,
        endpoint=endpoint or f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}",
        p256dh=keys.p256dh,
        auth=keys.auth,
    )
    return subscription, keys


def push_subscription_at(
    customer: AbstractBaseUser, endpoint: str
) -> tuple[PushSubscription, BrowserPushKeys]:
    """A push subscription whose endpoint is a local test server (plain HTTP on the
    loopback, which the API refuses): stored directly."""
    keys = browser_push_keys()
    subscription = PushSubscription.objects.create(
        customer=customer, endpoint=endpoint, p256dh=keys.p256dh, auth=keys.auth
    )
    return subscription, keys


def vapid_private_key() -> str:
    """A fresh VAPID private key, as WEBPUSH_VAPID_PRIVATE_KEY takes it (raw, base64url)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _b64url(key.private_numbers().private_value.to_bytes(32, "big"))
