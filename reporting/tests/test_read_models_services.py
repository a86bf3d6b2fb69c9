"""The read models' step on its own (database only): order events in, sales per product per
day and per-customer summaries out; each event once per generation."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from reporting.models import CustomerOrderSummary, OrderFacts, ProductDailySales
from reporting.selectors import customer_summary_list, product_sales_list
from reporting.services.read_models import read_models_apply
from testing.streams import as_event, order_created_value, order_status_value

pytestmark = pytest.mark.django_db

DAY1 = datetime(2030, 3, 1, 23, 50, tzinfo=UTC)
DAY2 = DAY1 + timedelta(minutes=20)  # just after midnight: the next day


class Orders:
    """Events of orders with chosen lines, moved through chosen statuses."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def place(self, customer_id: int, *lines: tuple[str, int, str], at: datetime) -> uuid.UUID:
        order_id = uuid.uuid4()
        self.values.append(
            order_created_value(at, customer_id=customer_id, order_id=order_id, lines=lines)
        )
        return order_id

    def move(self, order_id: uuid.UUID, customer_id: int, *path: str, at: datetime) -> None:
        previous = "pending"
        for status in path:
            self.values.append(
                order_status_value(
                    at, order_id=order_id, customer_id=customer_id, previous=previous, status=status
                )
            )
            previous = status

    @property
    def events(self) -> list:
        return [as_event(value) for value in self.values]


def _shop() -> Orders:
    orders = Orders()
    # customer 1: paid on day 1 (2 x A, 1 x B); paid on day 1 then cancelled on day 2
    # (refunded); rejected (out of stock)
    paid = orders.place(1, ("A", 2, "10.00"), ("B", 1, "5.50"), at=DAY1)
    orders.move(paid, 1, "reserved", "paid", at=DAY1)
    refunded = orders.place(1, ("A", 1, "10.00"), at=DAY1)
    orders.move(refunded, 1, "reserved", "paid", at=DAY1)
    orders.move(refunded, 1, "cancelled", at=DAY2)
    rejected = orders.place(1, ("C", 9, "1.00"), at=DAY1)
    orders.move(rejected, 1, "rejected", at=DAY1)
    # customer 2: declined (payment_failed, then cancelled: never paid, nothing refunded);
    # paid, shipped and delivered on day 2
    declined = orders.place(2, ("B", 2, "5.50"), at=DAY2)
    orders.move(declined, 2, "reserved", "payment_failed", "cancelled", at=DAY2)
    delivered = orders.place(2, ("B", 4, "5.50"), at=DAY2)
    orders.move(delivered, 2, "reserved", "paid", "shipped", "delivered", at=DAY2)
    return orders


def _sales() -> set[tuple]:
    return {
        (r.day, r.sku, r.units_sold, r.revenue, r.units_refunded, r.refunds)
        for r in product_sales_list()
    }


def _customers() -> dict[int, tuple]:
    return {
        c.customer_id: (c.orders_placed, c.orders_by_status, c.lifetime_value)
        for c in customer_summary_list()
    }


EXPECTED_SALES = {
    (date(2030, 3, 1), "A", 3, Decimal("30.00"), 0, Decimal("0.00")),
    (date(2030, 3, 1), "B", 1, Decimal("5.50"), 0, Decimal("0.00")),
    (date(2030, 3, 2), "A", 0, Decimal("0.00"), 1, Decimal("10.00")),
    (date(2030, 3, 2), "B", 4, Decimal("22.00"), 0, Decimal("0.00")),
}
EXPECTED_CUSTOMERS = {
    1: (3, {"cancelled": 1, "paid": 1, "rejected": 1}, Decimal("25.50")),
    2: (2, {"cancelled": 1, "delivered": 1}, Decimal("22.00")),
}


def test_sales_per_product_per_day_and_customer_summaries_from_events():
    read_models_apply(events=_shop().events)

    assert _sales() == EXPECTED_SALES
    assert _customers() == EXPECTED_CUSTOMERS
    summary = customer_summary_list(customer_id=2).get()
    assert (summary.first_order_at, summary.last_order_at) == (DAY2, DAY2)


def test_one_event_per_batch_gives_the_same_tables():
    for event in _shop().events:
        read_models_apply(events=[event])

    assert _sales() == EXPECTED_SALES
    assert _customers() == EXPECTED_CUSTOMERS


def test_an_event_applied_again_changes_nothing():
    events = _shop().events
    assert read_models_apply(events=events) == len(events)

    assert read_models_apply(events=events) == 0
    assert read_models_apply(events=events[:3]) == 0

    assert _sales() == EXPECTED_SALES
    assert _customers() == EXPECTED_CUSTOMERS


def test_a_move_the_status_machine_forbids_is_ignored():
    orders = Orders()
    order_id = orders.place(3, ("A", 1, "10.00"), at=DAY1)
    orders.move(order_id, 3, "reserved", "paid", "shipped", at=DAY1)
    read_models_apply(events=orders.events)

    # When a late copy of "paid" (say a replayed dead letter) comes after "shipped"
    late = Orders()
    late.move(order_id, 3, "reserved", "paid", at=DAY2)
    read_models_apply(events=late.events[1:])

    # Then the order stays shipped, sold once
    assert OrderFacts.objects.get(order_id=order_id).status == "shipped"
    assert _sales() == {(date(2030, 3, 1), "A", 1, Decimal("10.00"), 0, Decimal("0.00"))}


def test_generations_are_apart():
    events = _shop().events
    read_models_apply(events=events, generation=1)

    # When the same events are applied to generation 2 (a rebuild)
    assert read_models_apply(events=events, generation=2) == len(events)

    # Then each generation has its own rows, equal in content
    for model in (ProductDailySales, CustomerOrderSummary, OrderFacts):
        assert (
            model.objects.filter(generation=1).count() == model.objects.filter(generation=2).count()
        )
    assert _sales() == EXPECTED_SALES  # readers see generation 1, the live one
