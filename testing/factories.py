"""Test data, made through the same services the application uses."""

from decimal import Decimal
from itertools import count

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.services import product_create

_sequence = count(1)


def customer_create(username: str | None = None) -> AbstractBaseUser:
    username = username or f"customer{next(_sequence)}"
    return get_user_model().objects.create_user(username=username, password="x-test-password-1")


def api_client_for(user: AbstractBaseUser) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def product_with_stock(
    *, sku: str | None = None, on_hand: int = 100, price: str = "9.99", active: bool = True
) -> Product:
    sku = sku or f"SKU-{next(_sequence):05d}"
    return product_create(
        sku=sku, name=f"Product {sku}", price=Decimal(price), on_hand=on_hand, active=active
    )
