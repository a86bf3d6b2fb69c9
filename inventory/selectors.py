from collections.abc import Iterable

from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce

from inventory.models import Product, Reservation


def product_list_available() -> QuerySet[Product]:
    """Active products with their available stock (`available` annotation)."""
    return (
        Product.objects.filter(active=True)
        .select_related("stock")
        .annotate(available=Coalesce(F("stock__on_hand") - F("stock__reserved"), 0))
        .order_by("sku")
    )


def products_by_sku(skus: Iterable[str]) -> dict[str, Product]:
    # Unordered: the result is a dict, so the model's default ORDER BY sku is wasted work.
    products = Product.objects.filter(sku__in=list(skus)).order_by()
    return {product.sku: product for product in products}


def reservation_list_for_order(order_id: object) -> QuerySet[Reservation]:
    return Reservation.objects.filter(order_id=order_id).select_related("product")
