"""The products API: what can be ordered right now."""

import uuid

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from inventory.models import StockLevel
from inventory.services import StockRequest, stock_reserve_for_order
from testing.factories import api_client_for, customer_create, product_with_stock

PRODUCTS_URL = "/api/products/"


@pytest.mark.django_db
def test_products_lists_active_products_with_available_stock():
    # Given two active products, one partly reserved, and an inactive one
    mug = product_with_stock(sku="MUG-1", on_hand=10, price="12.50")
    tea = product_with_stock(sku="TEA-1", on_hand=4)
    product_with_stock(sku="OLD-1", on_hand=7, active=False)
    StockLevel.objects.filter(product=mug).update(reserved=3)

    # When a customer lists the products
    response = api_client_for(customer_create()).get(PRODUCTS_URL)

    # Then only the active ones appear, each with on_hand - reserved available
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    by_sku = {product["sku"]: product for product in body["results"]}
    assert set(by_sku) == {"MUG-1", "TEA-1"}
    assert by_sku["MUG-1"]["available"] == 7
    assert by_sku["MUG-1"]["price"] == "12.50"
    assert by_sku["MUG-1"]["name"] == mug.name
    assert by_sku["TEA-1"]["available"] == 4
    assert tea.sku in by_sku


@pytest.mark.django_db
def test_products_available_follows_reservations():
    # Given a product of which an order reserved 2 units
    product = product_with_stock(on_hand=5)
    outcome = stock_reserve_for_order(
        order_id=uuid.uuid4(), items=[StockRequest(sku=product.sku, quantity=2)]
    )
    assert outcome.reserved

    # When the products are listed
    body = api_client_for(customer_create()).get(PRODUCTS_URL).json()

    # Then 3 are available
    assert body["results"] == [
        {"sku": product.sku, "name": product.name, "price": "9.99", "available": 3}
    ]


@pytest.mark.django_db
def test_products_are_sorted_by_sku_and_paginated():
    page_size = settings.REST_FRAMEWORK["PAGE_SIZE"]
    skus = [product_with_stock(sku=f"P-{n:03d}").sku for n in range(page_size + 1)]

    client = api_client_for(customer_create())
    first = client.get(PRODUCTS_URL).json()
    second = client.get(PRODUCTS_URL, {"page": 2}).json()

    assert first["count"] == page_size + 1
    assert [p["sku"] for p in first["results"]] == skus[:page_size]
    assert [p["sku"] for p in second["results"]] == skus[page_size:]


@pytest.mark.django_db
def test_products_need_authentication():
    product_with_stock()

    response = APIClient().get(PRODUCTS_URL)

    assert response.status_code == 401
