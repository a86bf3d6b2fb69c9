"""The admin's part in the risk review: the order page's Risk section and timeline, the
approve and reject actions on held orders, and the view-only list of assessments."""

from unittest import mock

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import constants as message_levels
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from orders.models import Order
from orders.services import OrderItemInput, order_create, order_mark_reserved
from risk.models import RiskAssessment
from risk.review import Review
from risk.services import RiskCheck, risk_orders_assess
from testing.factories import customer_create, product_with_stock

pytestmark = pytest.mark.django_db

ORDERS = "admin:orders_order_changelist"


@pytest.fixture(autouse=True)
def _risk_on(settings):  # type: ignore[no-untyped-def]
    settings.RISK = {**settings.RISK, "ENABLED": True, "CUSTOMER_MAX_ORDERS": 1}


def _assessed(*, held: bool) -> Order:
    """A customer's first order (approved) or second one (held: more than 1 an hour)."""
    product, customer = product_with_stock(), customer_create()
    orders = []
    for _ in range(2 if held else 1):
        order, _ = order_create(
            customer=customer, items=[OrderItemInput(sku=product.sku, quantity=1)]
        )
        order_mark_reserved(order_id=order.id)
        orders.append(order)
    risk_orders_assess(checks=[RiskCheck(order.id) for order in orders])
    return Order.objects.get(id=orders[-1].id)


def _run_action(client: Client, action: str, orders: list[Order]) -> list[tuple[int, str]]:
    response = client.post(
        reverse(ORDERS),
        {"action": action, ACTION_CHECKBOX_NAME: [str(o.pk) for o in orders], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    return [(message.level, str(message)) for message in response.context["messages"]]


def test_order_page_shows_the_assessment_every_rule_and_the_event_in_the_timeline(
    admin_client: Client,
):
    order = _assessed(held=True)

    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()

    assert "score 60: Hold for review (review from 50, block from 100)" in page
    assert escape("2 orders by this customer in 60 min (more than 1)") in page
    assert "<td>first_order_high_amount</td><td>0</td>" in page
    assert "<td>risk.assessed</td>" in page and "<td>orders.held</td>" in page
    assert f"{reverse('admin:risk_riskassessment_changelist')}?order_id={order.pk}" in page


def test_approve_action_reserves_held_orders_again_and_refuses_others(admin_client: Client):
    held, approved = _assessed(held=True), _assessed(held=False)

    with mock.patch("orders.tasks.orders_charge_awaiting.delay"):
        messages = _run_action(admin_client, "approve_held", [held, approved])

    assert (message_levels.SUCCESS, "Approved: 1 order(s).") in messages
    assert (
        message_levels.WARNING,
        f"Not approved, wrong status: {str(approved.id)[:8]} (reserved)",
    ) in messages
    assert Order.objects.get(id=held.id).status == "reserved"
    assessment = RiskAssessment.objects.get(order_id=held.id)
    assert (assessment.review, assessment.reviewed_by) == (Review.APPROVED, "admin")


def test_reject_action_cancels_held_orders(admin_client: Client):
    held = _assessed(held=True)

    messages = _run_action(admin_client, "reject_held", [held])

    assert (message_levels.SUCCESS, "Rejected: 1 order(s).") in messages
    order = Order.objects.get(id=held.id)
    assert (order.status, order.status_reason) == (
        "cancelled",
        "rejected in the payment risk review",
    )
    assert RiskAssessment.objects.get(order_id=held.id).review == Review.REJECTED


def test_assessments_are_listed_filtered_and_shown_but_never_changed(admin_client: Client):
    held, approved = _assessed(held=True), _assessed(held=False)
    changelist = reverse("admin:risk_riskassessment_changelist")

    holds = admin_client.get(changelist, {"decision": "hold"})
    page = admin_client.get(
        reverse(
            "admin:risk_riskassessment_change",
            args=[RiskAssessment.objects.get(order_id=held.id).pk],
        )
    )

    assert [a.order_id for a in holds.context["cl"].result_list] == [held.id]
    assert approved.id not in {a.order_id for a in holds.context["cl"].result_list}
    assert page.status_code == 200
    assert "<td>customer_velocity</td><td>60</td>" in page.content.decode()
    assessment = RiskAssessment.objects.get(order_id=held.id)
    change = reverse("admin:risk_riskassessment_change", args=[assessment.pk])
    admin_client.post(change, {"score": 0})
    assert RiskAssessment.objects.get(pk=assessment.pk).score == 60
    assert admin_client.get(reverse("admin:risk_riskassessment_add")).status_code == 403
