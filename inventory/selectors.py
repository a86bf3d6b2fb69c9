import functools
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

from django.db import connection
from django.db.models import QuerySet

from inventory.models import Product, Reservation, StockLevel
from kafka_bridge.sql import Columns, rows_where_in


class ProductAvailable(TypedDict):
    sku: str
    name: str
    price: Decimal
    available: int


class AvailableProducts:
    """Active products with their available stock, by SKU: what the product list pages
    through (`list(products[a:b])`, `products.count()`), as rows of the four values it
    shows. The statements are written once per process: the product list is the API's most
    read page, and compiling its queryset cost it more CPU than PostgreSQL spent on it."""

    def count(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(_available_statements().count)
            return int(cursor.fetchone()[0])

    def __getitem__(self, bounds: slice) -> list[ProductAvailable]:
        start, stop = bounds.start or 0, bounds.stop
        assert bounds.step is None and stop is not None, "a page: [start:stop]"
        statements = _available_statements()
        with connection.cursor() as cursor:
            cursor.execute(statements.page, [stop - start, start])
            rows = cursor.fetchall()
        products = []
        for row in rows:
            sku, name, price = statements.columns.values(row[:-1])
            products.append(
                ProductAvailable(sku=sku, name=name, price=price, available=int(row[-1]))
            )
        return products


_PRODUCT_FIELDS = ("sku", "name", "price")


@dataclass(frozen=True)
class _AvailableStatements:
    columns: Columns
    page: str
    count: str


@functools.cache
def _available_statements() -> _AvailableStatements:
    quote = connection.ops.quote_name
    products, stock = quote(Product._meta.db_table), quote(StockLevel._meta.db_table)
    columns = Columns("p", [Product._meta.get_field(name) for name in _PRODUCT_FIELDS])
    return _AvailableStatements(
        columns=columns,
        page=(
            f"SELECT {', '.join(columns.sql())}, COALESCE(s.on_hand - s.reserved, 0) "
            f"FROM {products} p LEFT JOIN {stock} s ON s.product_id = p.id "
            f"WHERE p.active ORDER BY p.sku LIMIT %s OFFSET %s"
        ),
        count=f"SELECT COUNT(*) FROM {products} p WHERE p.active",
    )


def product_list_available() -> AvailableProducts:
    return AvailableProducts()


def products_by_sku(skus: Iterable[str]) -> dict[str, Product]:
    return {product.sku: product for product in rows_where_in(Product, "sku", skus)}


def reservation_list_for_order(order_id: object) -> QuerySet[Reservation]:
    return Reservation.objects.filter(order_id=order_id).select_related("product")
