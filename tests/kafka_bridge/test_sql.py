"""kafka_bridge.sql: the one-statement UPDATE gives the same rows as Django's bulk_update; the
one-statement INSERT takes JSON columns and returns what ON CONFLICT let in."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kafka_bridge.sql import rows_insert, rows_update
from reporting.models import CustomerOrderSummary

pytestmark = pytest.mark.django_db

FIELDS = ["currency", "orders_by_status", "lifetime_value", "first_order_at", "last_order_at"]


def test_rows_update_writes_every_type_in_one_statement_and_touches_no_other_row():
    at = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)
    rows = CustomerOrderSummary.objects.bulk_create(
        [
            CustomerOrderSummary(generation=1, customer_id=i, currency="EUR", first_order_at=at)
            for i in range(3)
        ]
    )
    first, second, untouched = rows
    first.orders_by_status, first.lifetime_value = {"paid": 2, "pending": 1}, Decimal("12.30")
    first.first_order_at, first.last_order_at = None, at
    second.currency, second.orders_by_status = "USD", {}

    with CaptureQueriesContext(connection) as queries:
        rows_update(CustomerOrderSummary, [first, second], FIELDS)

    assert len(queries) == 1
    stored = {row.customer_id: row for row in CustomerOrderSummary.objects.all()}
    for expected in (first, second, untouched):
        row = stored[expected.customer_id]
        assert [getattr(row, name) for name in FIELDS] == [
            getattr(expected, name) for name in FIELDS
        ]
    assert stored[untouched.customer_id].orders_by_status == {}
    assert stored[untouched.customer_id].first_order_at == at


def test_rows_update_of_nothing_sends_nothing():
    with CaptureQueriesContext(connection) as queries:
        rows_update(CustomerOrderSummary, [], FIELDS)
    assert not queries


def test_rows_insert_writes_json_columns_and_returns_the_rows_let_in():
    fields = (
        "generation",
        "customer_id",
        "currency",
        "orders_by_status",
        "orders_placed",
        "lifetime_value",
    )
    statuses = {"paid": 2, "held": 1}
    conflict = "ON CONFLICT (generation, customer_id) DO NOTHING RETURNING customer_id"

    with CaptureQueriesContext(connection) as queries:
        first = rows_insert(
            CustomerOrderSummary,
            fields,
            [(1, 1, "EUR", statuses, 3, Decimal(0)), (1, 2, "EUR", {}, 0, Decimal(0))],
            suffix=conflict,
        )
    again = rows_insert(
        CustomerOrderSummary,
        fields,
        [(1, 2, "USD", {"x": 1}, 1, Decimal(0)), (1, 3, "EUR", [], 0, Decimal(0))],
        suffix=conflict,
    )

    assert len(queries) == 1
    assert sorted(first) == [(1,), (2,)]
    assert again == [(3,)]  # customer 2 was there: kept as it was
    stored = {row.customer_id: row for row in CustomerOrderSummary.objects.all()}
    assert stored[1].orders_by_status == statuses
    assert (stored[2].currency, stored[2].orders_by_status) == ("EUR", {})
    assert stored[3].orders_by_status == []
