"""The admin's part in the saga: the order timeline, the ship / deliver / cancel actions, and
resending notifications."""

import uuid

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import constants as message_levels
from django.test import Client
from django.urls import reverse

from kafka_bridge.models import OutboxEvent
from notifications.delivery import notification_mark_failed, notification_send
from notifications.models import Notification
from notifications.services import notification_create_for_order_change
from orders.events import OrderStatusChangedV1
from orders.models import Order, Shipment
from orders.services import (
    OrderItemInput,
    order_create,
    order_mark_paid,
    order_mark_reserved,
    order_ship,
)
from orders.status import OrderStatus
from testing.factories import customer_create, product_with_stock

pytestmark = pytest.mark.django_db

ORDERS_CHANGELIST = "admin:orders_order_changelist"
NOTIFICATIONS_CHANGELIST = "admin:notifications_notification_changelist"


def _order() -> Order:
    product = product_with_stock()
    order, _ = order_create(
        customer=customer_create(), items=[OrderItemInput(sku=product.sku, quantity=1)]
    )
    return order


def _paid_order() -> Order:
    order = _order()
    order_mark_reserved(order_id=order.id)
    order_mark_paid(order_id=order.id)
    return order


def _shipped_order() -> Order:
    order = _paid_order()
    order_ship(order_id=order.id)
    return order


def _status(order: Order) -> str:
    order.refresh_from_db()
    return order.status


def _run_action(client: Client, changelist: str, action: str, objects: list) -> list:  # type: ignore[type-arg]
    """POST an admin action on the selected rows; return the (level, text) messages shown."""
    response = client.post(
        reverse(changelist),
        {"action": action, ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects], "index": 0},
        follow=True,
    )
    assert response.status_code == 200, response.content[:500]
    return [(message.level, str(message)) for message in response.context["messages"]]


# --- timeline ----------------------------------------------------------------------------


def test_order_page_shows_the_timeline_of_its_events_oldest_first(admin_client: Client):
    # Given an order that was reserved, paid and shipped
    order = _shipped_order()

    # When staff open its change page
    response = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))

    # Then the timeline table lists its events in order, with their relay state
    assert response.status_code == 200
    content = response.content.decode()
    assert "<th>event</th>" in content
    positions = [
        content.index(f"<td>{name}</td>")
        for name in ("orders.created", "orders.reserved", "orders.paid", "orders.shipped")
    ]
    assert positions == sorted(positions)
    assert "<td>pending</td>" in content
    # And the shipment summary names the tracking number
    assert Shipment.objects.get(order=order).tracking_number in content


# --- order actions -----------------------------------------------------------------------


def test_ship_action_ships_a_paid_order(admin_client: Client):
    # Given a paid order
    order = _paid_order()

    # When staff run "ship" on it
    messages = _run_action(admin_client, ORDERS_CHANGELIST, "ship", [order])

    # Then it is shipped with a shipment, and the admin says so
    assert _status(order) == OrderStatus.SHIPPED
    assert Shipment.objects.get(order=order).tracking_number.startswith("TRK")
    assert OutboxEvent.objects.filter(
        aggregate_id=str(order.id), event_type="orders.shipped"
    ).exists()
    assert (message_levels.SUCCESS, "Shipped: 1 order(s).") in messages


def test_ship_action_refuses_an_unpaid_order_with_a_warning(admin_client: Client):
    # Given a paid order and a pending one
    paid, pending = _paid_order(), _order()

    # When staff run "ship" on both
    messages = _run_action(admin_client, ORDERS_CHANGELIST, "ship", [paid, pending])

    # Then the paid one ships and the pending one is named in a warning, unchanged
    assert _status(paid) == OrderStatus.SHIPPED
    assert _status(pending) == OrderStatus.PENDING
    assert not Shipment.objects.filter(order=pending).exists()
    assert (message_levels.SUCCESS, "Shipped: 1 order(s).") in messages
    assert (
        message_levels.WARNING,
        f"Not shipped, wrong status: {str(pending.id)[:8]} (pending)",
    ) in messages


def test_mark_delivered_action_delivers_a_shipped_order(admin_client: Client):
    # Given a shipped order
    order = _shipped_order()

    # When staff mark it delivered
    messages = _run_action(admin_client, ORDERS_CHANGELIST, "mark_delivered", [order])

    # Then it is delivered and its shipment has the delivery time
    assert _status(order) == OrderStatus.DELIVERED
    assert Shipment.objects.get(order=order).delivered_at is not None
    assert (message_levels.SUCCESS, "Delivered: 1 order(s).") in messages


def test_cancel_action_cancels_a_pending_order_as_staff(admin_client: Client):
    # Given a pending order
    order = _order()

    # When staff cancel it
    messages = _run_action(admin_client, ORDERS_CHANGELIST, "cancel", [order])

    # Then it is cancelled by staff, and the event says so
    assert _status(order) == OrderStatus.CANCELLED
    assert order.status_reason == "cancelled by staff"
    event = OutboxEvent.objects.get(aggregate_id=str(order.id), event_type="orders.cancelled")
    assert event.envelope["data"]["actor"] == "staff"
    assert (message_levels.SUCCESS, "Cancelled: 1 order(s).") in messages


def test_cancel_action_on_a_shipped_order_warns_and_changes_nothing(admin_client: Client):
    # Given a shipped order
    order = _shipped_order()

    # When staff try to cancel it
    messages = _run_action(admin_client, ORDERS_CHANGELIST, "cancel", [order])

    # Then a warning names it and its status, and it stays shipped
    assert _status(order) == OrderStatus.SHIPPED
    assert not OutboxEvent.objects.filter(event_type="orders.cancelled").exists()
    assert (
        message_levels.WARNING,
        f"Not cancelled, wrong status: {str(order.id)[:8]} (shipped)",
    ) in messages
    assert (message_levels.SUCCESS, "Cancelled: 0 order(s).") in messages


def test_customer_cannot_run_order_actions(client: Client):
    # Given a logged-in customer who is not staff, and a paid order
    client.force_login(customer_create())
    order = _paid_order()

    # When they post the "ship" action
    response = client.post(
        reverse(ORDERS_CHANGELIST), {"action": "ship", ACTION_CHECKBOX_NAME: [str(order.pk)]}
    )

    # Then they are sent to the login page, and nothing ships
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert _status(order) == OrderStatus.PAID


# --- notification "resend" ---------------------------------------------------------------


def _notification() -> Notification:
    customer = customer_create()
    notification = notification_create_for_order_change(
        change=OrderStatusChangedV1(
            order_id=uuid.uuid4(),
            customer_id=customer.pk,
            previous_status="reserved",
            status="paid",
        ),
        event_id=uuid.uuid4(),
    )
    assert notification is not None
    return notification


def test_resend_action_requeues_failed_notifications_and_leaves_sent_ones(admin_client: Client):
    # Given a failed and a sent notification
    failed, sent = _notification(), _notification()
    notification_mark_failed(notification_id=failed.id, error="SMTPException: down")
    notification_send(notification_id=sent.id)

    # When staff resend both
    messages = _run_action(admin_client, NOTIFICATIONS_CHANGELIST, "resend", [failed, sent])

    # Then the failed one is pending again without its error, the sent one untouched
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.error) == (Notification.Status.PENDING, "")
    assert sent.status == Notification.Status.SENT
    assert (
        message_levels.SUCCESS,
        "Queued 1 notification(s) for delivery; 1 already sent, left alone.",
    ) in messages
