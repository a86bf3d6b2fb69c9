"""kafka_bridge.sql: the one-statement UPDATE gives the same rows as Django's bulk_update; the
one-statement INSERT takes JSON columns and returns what ON CONFLICT let in; one row goes as
scalar parameters (no arrays) and gives the same rows; the written-once read gives the rows a
queryset gives."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kafka_bridge.sql import rows_insert, rows_update, rows_where_in
from reporting.models import CustomerOrderSummary

pytestmark = pytest.mark.django_db

FIELDS = ["currency", "orders_by_status", "lifetime_value", "first_order_at", "last_order_at"]
INSERTED = (
    "generation",
    "customer_id",
    "currency",
    "orders_by_status",
    "orders_placed",
    "lifetime_value",
)
LET_IN = "ON CONFLICT (generation, customer_id) DO NOTHING RETURNING customer_id"


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
    fields = INSERTED
    statuses = {"paid": 2, "held": 1}
    conflict = LET_IN

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


def test_one_row_is_inserted_and_updated_with_scalar_parameters():
    at = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)
    fields = (*INSERTED, "first_order_at")
    conflict = LET_IN

    with CaptureQueriesContext(connection) as queries:
        inserted = rows_insert(
            CustomerOrderSummary,
            fields,
            [(1, 7, "EUR", {"paid": 1}, 1, Decimal("9.50"), at)],
            suffix=conflict,
        )
        again = rows_insert(
            CustomerOrderSummary, fields, [(1, 7, "USD", {}, 0, Decimal(0), None)], suffix=conflict
        )
        row = CustomerOrderSummary.objects.get(customer_id=7)
        row.orders_by_status, row.lifetime_value, row.first_order_at = {"shipped": 3}, 0, None
        row.last_order_at = at
        rows_update(CustomerOrderSummary, [row], FIELDS)

    assert (inserted, again) == ([(7,)], [])
    writes = [q["sql"] for q in queries if not q["sql"].startswith("SELECT")]
    if connection.vendor == "postgresql":
        assert len(writes) == 3
        assert not any("unnest" in sql for sql in writes)
    stored = CustomerOrderSummary.objects.get(customer_id=7)
    assert stored.currency == "EUR"  # the second insert met the conflict
    assert stored.orders_by_status == {"shipped": 3}
    assert (stored.lifetime_value, stored.first_order_at, stored.last_order_at) == (
        Decimal(0),
        None,
        at,
    )


def test_rows_where_in_gives_the_rows_a_queryset_gives_in_primary_key_order():
    at = datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC)
    CustomerOrderSummary.objects.bulk_create(
        [
            CustomerOrderSummary(
                generation=1,
                customer_id=i,
                currency="EUR",
                orders_by_status={"paid": i},
                lifetime_value=Decimal(f"{i}.25"),
                first_order_at=at,
            )
            for i in (5, 3, 9, 4)
        ]
    )
    expected = list(CustomerOrderSummary.objects.filter(customer_id__in=[9, 3, 4]).order_by("pk"))

    with CaptureQueriesContext(connection) as queries:
        rows = rows_where_in(CustomerOrderSummary, "customer_id", [9, 3, 4, 77], lock=True)

    assert [row.pk for row in rows] == [row.pk for row in expected]
    fields = [f.attname for f in CustomerOrderSummary._meta.concrete_fields]
    assert [[getattr(r, f) for f in fields] for r in rows] == [
        [getattr(r, f) for f in fields] for r in expected
    ]
    assert len(queries) == 1
    if connection.features.has_select_for_update:
        assert queries[0]["sql"].endswith("FOR UPDATE")
    assert rows_where_in(CustomerOrderSummary, "customer_id", []) == []
