"""verify_order_history: each order's status rebuilt from its events, compared with the
stored one."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from kafka_bridge.models import ArchivedEvent, OutboxEvent
from kafka_bridge.retention import outbox_prune_published
from orders.models import Order
from orders.services import (
    OrderItemInput,
    order_cancel,
    order_create,
    order_mark_paid,
    order_mark_reserved,
    order_ship,
)
from orders.status import status_replay
from testing.factories import customer_create, product_with_stock

pytestmark = pytest.mark.django_db


def _orders() -> dict[str, uuid.UUID]:
    """Orders moved along the saga by the services: pending, cancelled, paid, shipped."""
    customer = customer_create()
    sku = product_with_stock().sku

    def placed() -> uuid.UUID:
        order, _ = order_create(customer=customer, items=[OrderItemInput(sku=sku, quantity=1)])
        return order.id

    pending, cancelled, paid, shipped = placed(), placed(), placed(), placed()
    order_cancel(order_id=cancelled, actor="customer")
    for order_id in (paid, shipped):
        order_mark_reserved(order_id=order_id)
        order_mark_paid(order_id=order_id)
    order_ship(order_id=shipped)
    return {"pending": pending, "cancelled": cancelled, "paid": paid, "shipped": shipped}


def _verify() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_order_history", stdout=out, stderr=err)
    except CommandError as exc:
        return 1, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def test_orders_that_agree_with_their_events_pass():
    _orders()

    code, out, _ = _verify()

    assert code == 0
    assert "all 4 orders agree with their events" in out


def test_every_order_whose_stored_status_disagrees_is_reported_and_exit_1():
    orders = _orders()
    # Given two orders whose stored status was changed behind the services' back, and one
    # whose events were lost
    Order.objects.filter(id=orders["paid"]).update(status="delivered")
    Order.objects.filter(id=orders["pending"]).update(status="reserved")
    OutboxEvent.objects.filter(aggregate_id=str(orders["cancelled"])).delete()

    code, out, message = _verify()

    assert code == 1
    assert message == "3 of 4 orders disagree with their events"
    lines = out.splitlines()
    assert len(lines) == 3
    assert (
        f"order {orders['paid']}: stored delivered, its events say paid "
        "(orders.created, orders.reserved, orders.paid)" in lines
    )
    assert f"order {orders['pending']}: stored reserved, its events say pending" in out
    assert f"order {orders['cancelled']}: stored cancelled, no events (-)" in out
    assert str(orders["shipped"]) not in out


def test_events_archived_by_retention_still_count():
    orders = _orders()
    OutboxEvent.objects.update(published_at=timezone.now() - timedelta(days=30))
    outbox_prune_published(older_than=timezone.now() - timedelta(days=7), batch_size=3)
    assert not OutboxEvent.objects.exists()
    assert ArchivedEvent.objects.filter(aggregate_id=str(orders["shipped"])).count() == 4

    code, out, _ = _verify()

    assert code == 0, out


def test_an_event_recorded_twice_counts_once():
    # Given the paid order's orders.paid recorded again with its event id, as a replayed
    # dead letter is
    orders = _orders()
    again = OutboxEvent.objects.get(aggregate_id=str(orders["paid"]), event_type="orders.paid")
    again.pk = None
    again.save()

    code, out, _ = _verify()

    assert code == 0, out


def test_a_forbidden_move_is_named():
    assert status_replay(["orders.created", "orders.reserved"]).status == "reserved"
    replay = status_replay(["orders.created", "orders.paid"])
    assert (replay.status, replay.problem) == (
        "pending",
        "orders.paid would move it from pending to paid",
    )
    assert status_replay(["orders.reserved"]).problem == "orders.reserved before orders.created"
