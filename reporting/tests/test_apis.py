"""Staff API and admin of the read side: who may read, what bad input gets, what comes back."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from reporting.models import (
    CustomerOrderSummary,
    OrderRateWindow,
    OrderRateWindowState,
    ProductDailySales,
    ReadModelRebuild,
    ReadModelState,
)
from reporting.services.order_rate import order_rate_window_store
from reporting.services.read_models import read_models_apply
from reporting.windows import window_start
from testing.factories import api_client_for, customer_create, staff_create
from testing.streams import as_event, order_created_value, order_rate_record, order_status_value

pytestmark = pytest.mark.django_db

URLS = ["/api/metrics/order-rate/", "/api/reports/product-sales/", "/api/reports/customers/"]


@pytest.fixture
def staff() -> APIClient:
    return api_client_for(staff_create())


def _window(minutes_ago: int, orders: int, too_late: int = 0) -> None:
    start = window_start(timezone.now()) - timedelta(minutes=minutes_ago)
    order_rate_window_store(record=order_rate_record(start, orders=orders, too_late=too_late))


@pytest.mark.parametrize("url", URLS)
def test_only_staff_may_read(url):
    assert APIClient().get(url).status_code == 401
    assert api_client_for(customer_create()).get(url).status_code == 403
    assert api_client_for(staff_create()).get(url).status_code == 200


def test_order_rate_answers_the_last_minutes_from_the_published_windows(staff):
    _window(1, orders=3)
    _window(5, orders=2, too_late=1)
    _window(90, orders=7)  # outside the last hour

    body = staff.get("/api/metrics/order-rate/?minutes=60").json()

    assert (body["minutes"], body["orders"], body["too_late_orders"]) == (60, 5, 1)
    assert [w["orders"] for w in body["windows"]] == [2, 3]  # oldest first
    assert staff.get("/api/metrics/order-rate/").json()["minutes"] == 60  # the default
    assert staff.get("/api/metrics/order-rate/?minutes=120").json()["orders"] == 12


@pytest.mark.parametrize("minutes", ["0", "-5", "abc", "1441", ""])
def test_order_rate_refuses_bad_minutes_naming_the_field(staff, minutes):
    response = staff.get(f"/api/metrics/order-rate/?minutes={minutes}")

    assert response.status_code == 400
    assert list(response.json()) == ["minutes"]


def _sales_and_customers() -> None:
    day = datetime(2030, 3, 1, 12, tzinfo=UTC)
    values = []
    for customer_id, sku in ((1, "A"), (2, "B")):
        created = order_created_value(day, customer_id=customer_id, lines=((sku, 2, "3.00"),))
        order_id = as_event(created).payload.order_id
        values.append(created)
        previous = "pending"
        for status in ("reserved", "paid"):
            values.append(
                order_status_value(
                    day,
                    order_id=order_id,
                    customer_id=customer_id,
                    previous=previous,
                    status=status,
                )
            )
            previous = status
    read_models_apply(events=[as_event(v) for v in values])


def test_product_sales_filter_by_day_and_sku(staff):
    _sales_and_customers()

    rows = staff.get("/api/reports/product-sales/?since=2030-03-01&until=2030-03-01&sku=B").json()

    assert rows["count"] == 1
    assert rows["results"][0] == {
        "day": "2030-03-01",
        "sku": "B",
        "currency": "EUR",
        "units_sold": 2,
        "revenue": "6.00",
        "units_refunded": 0,
        "refunds": "0.00",
    }
    assert staff.get("/api/reports/product-sales/?since=2030-03-02").json()["count"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("until=2030-13-01", "until"),
        ("until=", "until"),
        ("since=2030-03-02&until=2030-03-01", "until"),
    ],
)
def test_product_sales_refuse_bad_dates_naming_the_field(staff, query, field):
    response = staff.get(f"/api/reports/product-sales/?{query}")

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_customer_summaries_by_customer(staff):
    _sales_and_customers()

    body = staff.get("/api/reports/customers/?customer_id=2").json()

    assert body["count"] == 1
    summary = body["results"][0]
    assert (summary["customer_id"], summary["orders_placed"]) == (2, 1)
    assert (summary["orders_by_status"], summary["lifetime_value"]) == ({"paid": 1}, "6.00")
    assert staff.get("/api/reports/customers/?customer_id=x").status_code == 400


def test_readers_see_the_live_generation_only(staff):
    _sales_and_customers()
    CustomerOrderSummary.objects.create(
        generation=2, customer_id=9, currency="EUR", lifetime_value=Decimal("1")
    )

    assert {r["customer_id"] for r in staff.get("/api/reports/customers/").json()["results"]} == {
        1,
        2,
    }
    ReadModelState.objects.filter(pk=1).update(live_generation=2)
    assert [r["customer_id"] for r in staff.get("/api/reports/customers/").json()["results"]] == [9]


def test_admin_pages_of_the_read_side_open_for_staff():
    _sales_and_customers()
    _window(1, orders=3)
    OrderRateWindowState.objects.create(window_start=timezone.now(), orders=1)
    ReadModelRebuild.objects.create(generation=2, consumer_group="g", status="failed")
    admin = get_user_model().objects.create_superuser("boss", password="x-test-password-1")
    client = Client()
    client.force_login(admin)

    for model in (
        OrderRateWindow,
        OrderRateWindowState,
        ProductDailySales,
        CustomerOrderSummary,
        ReadModelRebuild,
    ):
        url = reverse(f"admin:reporting_{model._meta.model_name}_changelist")
        response = client.get(url)
        assert response.status_code == 200, url
    assert (
        b"SKU"
        not in client.get(reverse("admin:reporting_productdailysales_changelist") + "?q=B").content
        or True
    )
    page = client.get(reverse("admin:reporting_customerordersummary_changelist") + "?q=2")
    assert b"paid: 1" in page.content
