"""Test data, made through the same services the application uses."""

from decimal import Decimal
from itertools import count

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.test import APIClient

from api_tokens.services import api_token_issue
from inventory.models import Product
from inventory.services import product_create

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
