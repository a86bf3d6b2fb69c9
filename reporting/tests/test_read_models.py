"""Read models over real processes: orders through the API and the saga, the live
read_models consumer keeping the tables, and rebuild_read_models replaying the order topic
into a new generation that equals the live one."""

import io
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from kafka_bridge.models import OutboxEvent, ProcessedEvent
from orders.models import Order
from orders.services import order_cancel, order_deliver, order_ship
from reporting.models import (
    CustomerOrderSummary,
    OrderFacts,
    ProductDailySales,
    ReadModelRebuild,
    ReadModelState,
)
from reporting.selectors import customer_summary_list, product_sales_list, read_models_generation
from reporting.services.read_models import read_models_dedupe_group
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.polling import wait_until
from testing.saga import wait_for_status
from tools.localservices import free_port

pytestmark = pytest.mark.integration


def _snapshot() -> dict[str, set[tuple]]:
    """The live generation's rows, without ids and generation numbers."""
    generation = read_models_generation()
    return {
        "sales": set(
            ProductDailySales.objects.filter(generation=generation).values_list(
                "day", "sku", "currency", "units_sold", "revenue", "units_refunded", "refunds"
            )
        ),
        "customers": {
            (
                c.customer_id,
                c.orders_placed,
                tuple(sorted(c.orders_by_status.items())),
                c.lifetime_value,
                c.first_order_at,
                c.last_order_at,
            )
            for c in CustomerOrderSummary.objects.filter(generation=generation)
        },
        "orders": set(
            OrderFacts.objects.filter(generation=generation).values_list(
                "order_id", "customer_id", "total", "status", "placed_at", "status_changed_at"
            )
        ),
    }


def _agrees_with_orders(customers: list) -> bool:
    """Whether every customer's summary counts their orders by status as the orders are."""
    summaries = {s.customer_id: s.orders_by_status for s in customer_summary_list()}
    return all(
        summaries.get(c.pk)
        == dict(Counter(Order.objects.filter(customer=c).values_list("status", flat=True)))
        for c in customers
    )


def test_rebuilt_tables_equal_the_live_ones_and_the_live_consumer_carries_on(pipeline):
    # Given the saga and the live read_models consumer
    pipeline.relay()
    pipeline.consumers(["inventory", "orders", "read_models"])
    mug = product_with_stock(on_hand=50, price="12.50")
    print_ = product_with_stock(on_hand=1, price="40.00")
    ada, bob = customer_create(), customer_create()

    # and orders of every outcome: paid, paid then cancelled (refunded), rejected, declined,
    # delivered
    paid = order_place_via_api(ada, mug.sku, 2)
    refunded = order_place_via_api(ada, mug.sku, 1)
    rejected = order_place_via_api(ada, print_.sku, 2)
    declined = order_place_via_api(bob, mug.sku, 1, payment_token="tok_decline")
    delivered = order_place_via_api(bob, print_.sku, 1)
    for order_id, status in [
        (paid, "paid"),
        (refunded, "paid"),
        (rejected, "rejected"),
        (declined, "cancelled"),
        (delivered, "paid"),
    ]:
        wait_for_status(order_id, status)
    order_cancel(order_id=uuid.UUID(refunded), actor="customer")
    order_ship(order_id=uuid.UUID(delivered))
    order_deliver(order_id=uuid.UUID(delivered))
    wait_until(lambda: _agrees_with_orders([ada, bob]), timeout=60, message="live read models")

    # the live tables say what happened
    assert {
        (r.sku, r.units_sold, r.revenue, r.units_refunded, r.refunds) for r in product_sales_list()
    } == {
        (mug.sku, 3, Decimal("37.50"), 1, Decimal("12.50")),
        (print_.sku, 1, Decimal("40.00"), 0, Decimal("0.00")),
    }
    paid_days = {
        datetime.fromisoformat(row.envelope["occurred_at"]).astimezone(UTC).date()
        for row in OutboxEvent.objects.filter(event_type="orders.paid")
    }
    assert {r.day for r in product_sales_list()} == paid_days
    assert {s.customer_id: s.lifetime_value for s in customer_summary_list()} == {
        ada.pk: Decimal("25.00"),
        bob.pk: Decimal("40.00"),
    }
    before = _snapshot()

    # When the read models are rebuilt from the events, with the live consumer running
    out, err = io.StringIO(), io.StringIO()
    call_command("rebuild_read_models", stdout=out, stderr=err)

    # Then the rebuilt generation is live and equal to the tables it replaced
    assert ReadModelState.objects.get().live_generation == 2
    assert _snapshot() == before
    assert "generation 2 is live" in out.getvalue()
    assert "replaying" in err.getvalue()  # the progress bar
    rebuild = ReadModelRebuild.objects.get()
    assert (rebuild.status, rebuild.generation) == ("swapped", 2)
    # every order event the system recorded was applied once to the new generation
    order_events = OutboxEvent.objects.filter(event_type__startswith="orders.").count()
    assert rebuild.events_applied == order_events
    assert (
        ProcessedEvent.objects.filter(consumer_group=read_models_dedupe_group(2)).count()
        == order_events
    )
    # and the old generation is gone, rows and marks
    for model in (ProductDailySales, CustomerOrderSummary, OrderFacts):
        assert not model.objects.filter(generation=1).exists()
    assert not ProcessedEvent.objects.filter(consumer_group=read_models_dedupe_group(1)).exists()

    # And the live consumer carries on into the new generation, applying each event once
    another = order_place_via_api(bob, mug.sku, 4)
    wait_for_status(another, "paid")
    wait_until(lambda: _agrees_with_orders([ada, bob]), timeout=60, message="the new order")
    (mug_sales,) = [r for r in product_sales_list() if r.sku == mug.sku]
    assert (mug_sales.units_sold, mug_sales.revenue) == (7, Decimal("87.50"))


def test_a_second_rebuild_is_refused_while_one_is_recorded_as_running(db):
    ReadModelRebuild.objects.create(generation=2, consumer_group="g")

    with pytest.raises(CommandError, match="still running; if its process is gone, pass --force"):
        call_command("rebuild_read_models", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_rebuild_while_orders_keep_coming_misses_none_and_applies_none_twice(pipeline):
    # Given the saga, the live read_models consumer, and some history
    pipeline.relay()
    pipeline.consumers(["inventory", "orders", "read_models"])
    mug = product_with_stock(on_hand=1000, price="2.00")
    customers = [customer_create() for _ in range(4)]
    for customer in customers:
        order_place_via_api(customer, mug.sku, 1)
    # that has gone all the way (workers up): else, on a busy machine, the rebuild may find
    # nothing published yet and end before the next order, overlapping none
    wait_until(
        lambda: (
            not Order.objects.exclude(status="paid").exists() and _agrees_with_orders(customers)
        ),
        timeout=60,
        message="the history in the live read models",
    )

    # When orders keep coming from another thread while the read models are rebuilt
    stop = threading.Event()
    placed: list[str] = []

    def place() -> None:
        try:
            while not stop.is_set() and len(placed) < 60:
                placed.append(order_place_via_api(customers[len(placed) % 4], mug.sku, 1))
                stop.wait(0.05)  # pacing the load, not waiting for Kafka
        finally:
            connection.close()

    thread = threading.Thread(target=place)
    thread.start()
    wait_until(lambda: len(placed) >= 5, timeout=30, message="orders flowing")
    try:
        call_command("rebuild_read_models", stdout=io.StringIO(), stderr=io.StringIO())
    finally:
        stop.set()
        thread.join(30)
    rebuild = ReadModelRebuild.objects.get()
    during = Order.objects.filter(
        created_at__gte=rebuild.started_at, created_at__lte=rebuild.finished_at
    ).count()
    assert during > 0, "no order was placed during the rebuild"

    # Then, once everything settled, the live tables count every order once
    wait_until(
        lambda: not Order.objects.exclude(status="paid").exists(), timeout=90, message="all paid"
    )
    wait_until(lambda: _agrees_with_orders(customers), timeout=60, message="live read models")
    orders = Order.objects.count()
    (sales,) = product_sales_list()
    assert (sales.units_sold, sales.revenue) == (orders, Decimal("2.00") * orders)
    assert sum(s.orders_placed for s in customer_summary_list()) == orders

    # and equal what a rebuild from scratch makes of the same events
    before = _snapshot()
    call_command("rebuild_read_models", stdout=io.StringIO(), stderr=io.StringIO())
    assert ReadModelState.objects.get().live_generation == 3
    assert _snapshot() == before


def test_an_unreachable_broker_is_one_readable_line_and_a_failed_rebuild(db, settings, monkeypatch):
    settings.KAFKA = {**settings.KAFKA, "BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    monkeypatch.setattr("reporting.rebuild.KAFKA_TIMEOUT_SECONDS", 1.0)

    with pytest.raises(CommandError, match=r"^Kafka is not reachable: "):
        call_command("rebuild_read_models", stdout=io.StringIO(), stderr=io.StringIO())

    rebuild = ReadModelRebuild.objects.get()
    assert (rebuild.status, rebuild.generation) == ("failed", 2)
    assert ReadModelState.objects.get().live_generation == 1
