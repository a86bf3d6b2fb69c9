from collections.abc import Iterable
from decimal import Decimal
from typing import TypedDict

from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce

from inventory.models import Product, Reservation


class ProductAvailable(TypedDict):
    sku: str
    name: str
    price: Decimal
    available: int


def product_list_available() -> QuerySet[Product, ProductAvailable]:
    """Active products with their available stock, as rows of the four values the product
    list shows: no model instances (a page of them cost more than the query)."""
    return (
        Product.objects.filter(active=True)
        .values(
            "sku",
            "name",
            "price",
            available=Coalesce(F("stock__on_hand") - F("stock__reserved"), 0),
        )
        .order_by("sku")
    )


def products_by_sku(skus: Iterable[str]) -> dict[str, Product]:
    # Unordered: the result is a dict, so the model's default ORDER BY sku is wasted work.
    products = Product.objects.filter(sku__in=list(skus)).order_by()
    return {product.sku: product for product in products}


def reservation_list_for_order(order_id: object) -> QuerySet[Reservation]:
    return Reservation.objects.filter(order_id=order_id).select_related("product")
