"""The staff API of the risk review: held orders with their assessments, one order's
assessment, approve and reject; customers are refused all of it."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Order
from orders.services import OrderItemInput, order_create, order_mark_reserved
from risk.services import RiskCheck, risk_orders_assess
from testing.factories import api_client_for, customer_create, product_with_stock, staff_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _risk_on(settings):  # type: ignore[no-untyped-def]
    settings.RISK = {**settings.RISK, "ENABLED": True, "CUSTOMER_MAX_ORDERS": 1}


def _held(count: int) -> list[Order]:
    """`count` held orders: each customer's second order (more than 1 an hour)."""
    product = product_with_stock(on_hand=1000)
    held = []
    for _ in range(count):
        customer = customer_create()
        pair = []
        for _ in range(2):
            order, _ = order_create(
                customer=customer, items=[OrderItemInput(sku=product.sku, quantity=1)]
            )
            order_mark_reserved(order_id=order.id)
            pair.append(order)
        risk_orders_assess(checks=[RiskCheck(order.id) for order in pair])
        held.append(Order.objects.get(id=pair[1].id))
    assert {order.status for order in held} == {"held"}
    return held


def test_staff_list_the_held_orders_oldest_first_with_their_assessments():
    held = _held(3)
    staff = api_client_for(staff_create())

    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/api/orders/held/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [str(o.id) for o in held]
    risk = results[0]["risk"]
    assert (risk["score"], risk["decision"], risk["review"]) == (60, "hold", "")
    assert risk["reasons"] == ["2 orders by this customer in 60 min (more than 1)"]
    assert len(risk["rules"]) == 6
    fewer = len(queries)
    _held(5)
    with CaptureQueriesContext(connection) as queries:
        assert len(staff.get("/api/orders/held/").json()["results"]) == 8
    assert len(queries) == fewer  # one query for every assessment of the page


def test_staff_read_any_orders_assessment():
    [order] = _held(1)
    staff = api_client_for(staff_create())

    body = staff.get(f"/api/orders/{order.id}/risk/").json()

    assert (body["status"], body["risk"]["decision"]) == ("held", "hold")
    assert staff.get(f"/api/orders/{uuid.uuid4()}/risk/").status_code == 404


def test_approve_and_reject_answer_with_the_order_and_its_review():
    approved, rejected = _held(2)
    staff_user = staff_create()
    staff = api_client_for(staff_user)

    first = staff.post(f"/api/orders/{approved.id}/approve/")
    second = staff.post(f"/api/orders/{rejected.id}/reject/")

    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["risk"]["review"]) == ("reserved", "approved")
    assert first.json()["risk"]["reviewed_by"] == staff_user.get_username()
    assert second.status_code == 200, second.content
    assert (second.json()["status"], second.json()["risk"]["review"]) == ("cancelled", "rejected")


def test_an_order_that_is_not_held_is_a_conflict_naming_its_status():
    [order] = _held(1)
    staff = api_client_for(staff_create())
    staff.post(f"/api/orders/{order.id}/reject/")

    response = staff.post(f"/api/orders/{order.id}/approve/")

    assert response.status_code == 409
    assert response.json()["status"] == "cancelled"
    assert staff.post(f"/api/orders/{uuid.uuid4()}/reject/").status_code == 404


def test_customers_may_not_review_or_read_assessments():
    [order] = _held(1)
    customer = api_client_for(Order.objects.get(id=order.id).customer)

    assert customer.get("/api/orders/held/").status_code == 403
    assert customer.get(f"/api/orders/{order.id}/risk/").status_code == 403
    assert customer.post(f"/api/orders/{order.id}/approve/").status_code == 403
    assert customer.post(f"/api/orders/{order.id}/reject/").status_code == 403
    own = customer.get(f"/api/orders/{order.id}/").json()
    assert own["status"] == "held" and "risk" not in own
