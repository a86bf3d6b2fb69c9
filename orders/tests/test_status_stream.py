"""The live order status: moves numbered and announced after commit, replayed from the
order's events, and the endpoint's refusals (the stream itself, over a real uvicorn
process, is in tests/test_order_status_stream.py)."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.utils import timezone

from api_tokens.services import api_token_issue
from kafka_bridge.models import ArchivedEvent, OutboxEvent
from orders.models import Order
from orders.selectors import order_status_moves_after, order_status_now
from orders.services import (
    OrderItemInput,
    order_cancel,
    order_create,
    order_deliver,
    order_expire_stale,
    order_mark_paid,
    order_mark_payment_failed,
    order_mark_reserved,
    order_ship,
)
from orders.status_feed import CHANNEL, OrderStatusMove, publisher, status_move_decode
from orders.status_stream import StatusCursor, sse_status_event
from testing.factories import api_client_for, customer_create, product_with_stock

pytestmark = pytest.mark.django_db


def _order() -> Order:
    order, _ = order_create(
        customer=customer_create(), items=[OrderItemInput(product_with_stock().sku, 1)]
    )
    return order


def _walk(order_id: uuid.UUID, *steps: str) -> None:
    moves = {
        "reserved": order_mark_reserved,
        "paid": order_mark_paid,
        "shipped": order_ship,
        "delivered": order_deliver,
    }
    for step in steps:
        moves[step](order_id=order_id)


@pytest.fixture
def feed() -> Iterator[redis.client.PubSub]:
    """A subscription to the status feed on the test's Redis."""
    subscription = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(CHANNEL)
    subscription.get_message(timeout=1)  # the subscription's confirmation
    yield subscription
    subscription.close()


def _heard(feed: redis.client.PubSub, order_id: uuid.UUID, count: int) -> list[OrderStatusMove]:
    assert publisher.wait_idle(5)
    moves = []
    while len(moves) < count and (message := feed.get_message(timeout=5)) is not None:
        move = status_move_decode(message["data"])
        if move is not None and move.order_id == order_id:
            moves.append(move)
    return moves


# --- numbering and announcing -------------------------------------------------------------


def test_each_move_is_numbered_and_announced_once_committed(
    feed, django_capture_on_commit_callbacks
):
    # Given a new order: its first status
    order = _order()
    assert order_status_now(order_id=order.id).seq == 1  # type: ignore[union-attr]

    # When it moves through the saga's services, the consumer's and staff's alike
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _walk(order.id, "reserved", "paid", "shipped", "delivered")

        # Then nothing is announced before the transactions commit
        assert publisher.wait_idle(5)
        assert feed.get_message(timeout=0.2) is None
    for callback in callbacks:
        callback()

    # And then each move is announced once, numbered in order, as the order's row says
    heard = _heard(feed, order.id, 4)
    assert [(m.seq, m.status) for m in heard] == [
        (2, "reserved"),
        (3, "paid"),
        (4, "shipped"),
        (5, "delivered"),
    ]
    order.refresh_from_db()
    assert (order.status_seq, order.status_changed_at) == (5, heard[-1].at)


def test_a_declined_payment_announces_both_moves_it_makes(feed, django_capture_on_commit_callbacks):
    order = _order()
    order_mark_reserved(order_id=order.id)

    with django_capture_on_commit_callbacks(execute=True):
        order_mark_payment_failed(order_id=order.id, reason="card_declined")

    heard = _heard(feed, order.id, 2)
    assert [(m.seq, m.status, m.reason) for m in heard] == [
        (3, "payment_failed", "card_declined"),
        (4, "cancelled", "payment failed: card_declined"),
    ]
    assert Order.objects.get(id=order.id).status_seq == 4


def test_a_cancel_by_the_api_and_an_expiry_are_announced_too(
    feed, django_capture_on_commit_callbacks
):
    cancelled, expired = _order(), _order()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client_for(cancelled.customer).post(f"/api/orders/{cancelled.id}/cancel/")
    assert response.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert expired.id in order_expire_stale(now=timezone.now() + timedelta(days=1))

    assert [(m.seq, m.status) for m in _heard(feed, cancelled.id, 1)] == [(2, "cancelled")]
    assert [(m.seq, m.status) for m in _heard(feed, expired.id, 1)] == [(2, "expired")]


def test_an_event_that_no_longer_applies_moves_and_announces_nothing(
    feed, django_capture_on_commit_callbacks
):
    order = _order()
    order_cancel(order_id=order.id, actor="customer")

    with django_capture_on_commit_callbacks(execute=True):
        order_mark_reserved(order_id=order.id)  # a late reservation

    assert Order.objects.get(id=order.id).status_seq == 2
    assert _heard(feed, order.id, 1) == []


# --- replay from the database ---------------------------------------------------------------


def test_moves_after_a_number_are_rebuilt_from_the_orders_events():
    order = _order()
    _walk(order.id, "reserved", "paid")
    order_cancel(order_id=order.id, actor="staff", reason="customer called")

    moves = order_status_moves_after(order_id=order.id, seq=1)

    assert [(m.seq, m.status, m.reason) for m in moves] == [
        (2, "reserved", ""),
        (3, "paid", ""),
        (4, "cancelled", "customer called"),
    ]
    assert order_status_moves_after(order_id=order.id, seq=4) == []
    assert order_status_moves_after(order_id=uuid.uuid4(), seq=0) == []
    # the last is the order's row, as a fresh stream starts with it
    assert moves[-1] == order_status_now(order_id=order.id)


def test_archived_events_replay_without_their_reason():
    order = _order()
    order_cancel(order_id=order.id, actor="customer")
    _walk(_order().id)  # another order's events stay out
    for row in OutboxEvent.objects.filter(aggregate_id=str(order.id)):
        ArchivedEvent.objects.create(
            outbox_id=row.id,
            event_id=row.event_id,
            event_type=row.event_type,
            aggregate_id=row.aggregate_id,
            correlation_id=row.correlation_id,
            created_at=row.created_at,
            published_at=datetime.now(UTC),
        )
        row.delete()

    moves = order_status_moves_after(order_id=order.id, seq=0)

    assert [(m.seq, m.status, m.reason) for m in moves] == [
        (1, "pending", ""),
        (2, "cancelled", "cancelled by customer"),  # the latest: from the order's row
    ]


def test_events_that_do_not_add_up_give_only_the_status_now():
    # Given an order whose events are missing one move (never told twice, at worst skipped)
    order = _order()
    _walk(order.id, "reserved", "paid")
    OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type="orders.reserved").delete()

    moves = order_status_moves_after(order_id=order.id, seq=1)

    assert [(m.seq, m.status) for m in moves] == [(3, "paid")]


def test_the_migration_counts_the_statuses_of_existing_orders():
    orders = [_order() for _ in range(3)]
    _walk(orders[1].id, "reserved", "paid")
    order_cancel(order_id=orders[2].id, actor="customer")
    Order.objects.update(status_seq=1)

    migration = import_module("orders.migrations.0005_order_status_seq")
    migration.status_seq_count(apps, None)

    assert [Order.objects.get(id=o.id).status_seq for o in orders] == [1, 3, 2]


def test_a_stream_sends_each_move_once_in_order():
    at = datetime(2026, 1, 1, tzinfo=UTC)
    order_id = uuid.uuid4()
    move = {n: OrderStatusMove(order_id, n, s, "", at) for n, s in [(2, "reserved"), (3, "paid")]}
    cursor = StatusCursor(after=1)

    assert cursor.take([move[2], move[2], move[3]]) == sse_status_event(move[2]) + sse_status_event(
        move[3]
    )
    assert cursor.take([move[2], move[3]]) == b""
    lines = sse_status_event(move[2]).decode().split("\n")
    assert lines[:2] == ["id: 2", "event: status"]
    assert lines[2].startswith("data: {") and lines[3:] == ["", ""]
    assert json.loads(lines[2].removeprefix("data: ")) == {
        "order_id": str(order_id),
        "status": "reserved",
        "reason": "",
        "at": "2026-01-01T00:00:00+00:00",
    }


# --- the endpoint's refusals ---------------------------------------------------------------

EVENT_STREAM = "text/event-stream"


def _url(order: Order) -> str:
    return f"/api/orders/{order.id}/events/"


def test_anonymous_callers_get_401_in_json(client):
    response = client.get(_url(_order()), HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == "Token"


def test_another_customers_order_is_404_as_in_the_detail_view():
    order = _order()
    intruder = api_client_for(customer_create())

    response = intruder.get(_url(order), HTTP_ACCEPT=EVENT_STREAM)

    assert response.status_code == 404
    assert response.json() == intruder.get(f"/api/orders/{order.id}/").json()


@pytest.mark.parametrize("accept", ["application/json", "*/*", "text/*", "text/event-stream;q=0"])
def test_an_accept_header_without_event_stream_is_406_in_json(accept):
    order = _order()

    response = api_client_for(order.customer).get(_url(order), HTTP_ACCEPT=accept)

    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "This is an event stream: send Accept: text/event-stream."}


@pytest.mark.parametrize("last_event_id", ["x", "-1", "1.5", "\u0661"])
def test_a_last_event_id_that_is_not_a_number_is_400(last_event_id):
    order = _order()

    response = api_client_for(order.customer).get(
        _url(order), HTTP_ACCEPT=EVENT_STREAM, HTTP_LAST_EVENT_ID=last_event_id
    )

    assert response.status_code == 400
    assert list(response.json()) == ["Last-Event-ID"]


def test_a_reconnect_after_the_final_status_is_204():
    order = _order()
    order_cancel(order_id=order.id, actor="customer")

    response = api_client_for(order.customer).get(
        _url(order), HTTP_ACCEPT=EVENT_STREAM, HTTP_LAST_EVENT_ID="2"
    )

    assert response.status_code == 204


def test_a_sync_server_refuses_to_hold_a_stream_with_503():
    order = _order()
    client = api_client_for(order.customer)

    response = client.get(_url(order), HTTP_ACCEPT=f"application/json, {EVENT_STREAM}")

    assert response.status_code == 503
    assert json.loads(response.content).keys() == {"detail"}


def test_the_token_is_checked_like_anywhere_else():
    order = _order()
    key = api_token_issue(user=order.customer)

    response = Client().get(
        _url(order), HTTP_ACCEPT=EVENT_STREAM, HTTP_AUTHORIZATION=f"Token {key}x"
    )

    assert response.status_code == 401
