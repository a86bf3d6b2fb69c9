"""The admin's pipeline dashboard: its figures (selectors) and who may see it. The page in
a real browser is in tests/test_browser.py."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from kafka_bridge.models import DeadLetter, OutboxEvent
from kafka_bridge.selectors import consumer_lag_by_group, dead_letters_by_topic, outbox_backlog
from orders.models import Order
from orders.selectors import orders_count_by_status
from orders.status import OrderStatus
from reporting.dashboard import minutes_chart
from reporting.selectors import pipeline_minutes
from testing.factories import customer_create, order_place_via_api, product_with_stock, staff_create

pytestmark = pytest.mark.django_db

URL = "/admin/pipeline/"


def _orders(count: int) -> list[str]:
    customer, product = customer_create(), product_with_stock(on_hand=100)
    return [order_place_via_api(customer, product.sku) for _ in range(count)]


def _dead_letter(topic: str, status: str = DeadLetter.Status.NEW) -> DeadLetter:
    return DeadLetter.objects.create(
        dlq_topic=f"{topic}.dlq",
        dlq_partition=0,
        dlq_offset=DeadLetter.objects.count(),
        original_topic=topic,
        consumer_group="g",
        error_class="ValueError",
        error_message="bad",
        value=b"{}",
        status=status,
    )


def test_orders_by_status_lists_every_status_with_zeros():
    ids = _orders(3)
    Order.objects.filter(id=ids[0]).update(status=OrderStatus.PAID)

    counts = {status: n for status, _label, n in orders_count_by_status()}

    assert list(counts) == [s.value for s in OrderStatus]
    assert counts["pending"] == 2 and counts["paid"] == 1
    assert sum(counts.values()) == 3


def test_minutes_are_counted_into_sixty_buckets_oldest_first_with_zeros():
    now = datetime(2026, 11, 24, 12, 30, 40, tzinfo=UTC)
    ids = _orders(3)
    # two orders 5 minutes ago, one 2 hours ago (outside the hour)
    Order.objects.filter(id__in=ids[:2]).update(created_at=now - timedelta(minutes=5))
    Order.objects.filter(id=ids[2]).update(created_at=now - timedelta(hours=2))
    OutboxEvent.objects.update(created_at=now - timedelta(minutes=5))

    minutes = pipeline_minutes(now=now)

    assert len(minutes) == 60
    assert minutes[-1].minute == datetime(2026, 11, 24, 12, 30, tzinfo=UTC)
    assert minutes[0].minute == datetime(2026, 11, 24, 11, 31, tzinfo=UTC)
    busy = [m for m in minutes if m.orders or m.events]
    assert [(m.minute.minute, m.orders, m.events) for m in busy] == [(25, 2, 3)]


def test_the_chart_scales_bars_to_the_busiest_minute():
    minutes = pipeline_minutes()
    chart = minutes_chart(minutes)
    assert len(chart.events) == len(chart.orders) == 60
    assert chart.peak == 1 and all(bar.height == 0 for bar in chart.events)

    _orders(2)
    chart = minutes_chart(pipeline_minutes())
    assert chart.peak == 2  # two orders.created events in this minute
    assert chart.events[-1].height > 0 and chart.orders[-1].height == chart.events[-1].height


def test_outbox_backlog_counts_unpublished_rows_and_ages_the_oldest():
    assert outbox_backlog().pending == 0 and outbox_backlog().oldest_age_seconds == 0
    _orders(2)
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(seconds=90))
    backlog = outbox_backlog()
    assert backlog.pending == 2
    assert 89 < backlog.oldest_age_seconds < 150
    OutboxEvent.objects.update(published_at=timezone.now())
    assert outbox_backlog().pending == 0


def test_dead_letters_are_counted_by_topic_new_first():
    for _ in range(2):
        _dead_letter("payments")
    _dead_letter("orders", status=DeadLetter.Status.REPLAYED)
    assert dead_letters_by_topic() == [
        {"original_topic": "payments", "new": 2, "total": 2},
        {"original_topic": "orders", "new": 0, "total": 1},
    ]


def test_only_staff_see_the_dashboard(client: Client):
    assert client.get(URL).status_code == 302  # to the admin login
    client.force_login(customer_create())
    response = client.get(URL)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    client.force_login(staff_create())
    assert client.get(URL).status_code == 200


def test_a_broker_that_does_not_answer_leaves_the_page_up_without_lag(client: Client, settings):
    settings.KAFKA = {**settings.KAFKA, "BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    assert consumer_lag_by_group(timeout=1).unavailable
    _dead_letter("payments")
    client.force_login(staff_create())

    response = client.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Lag unavailable" in page
    assert 'data-topic="payments"' in page  # everything else is still there


@pytest.mark.integration
def test_lag_is_summed_per_consumer_group(kafka_namespace):
    from kafka_bridge.client import pipeline_topics, topics_ensure

    topics_ensure(pipeline_topics())
    lag = consumer_lag_by_group(timeout=10)
    assert not lag.unavailable
    groups = {g.group: g for g in lag.groups}
    assert any(name.endswith("inventory") for name in groups)
    assert all(g.partitions > 0 and g.lag >= 0 for g in groups.values())


@pytest.mark.integration
def test_the_payment_circuit_shows_its_state_and_the_orders_waiting(client: Client, settings):
    # Given an open payment breaker (this test's own) and an order reserved long ago, unpaid
    from common.redis_client import redis_client
    from orders.breaker import payment_breaker
    from orders.services import order_mark_reserved

    settings.KAFKA = {**settings.KAFKA, "NAMESPACE": f"dash{timezone.now().timestamp()}-"}
    payment_breaker.cache_clear()
    breaker = payment_breaker()
    try:
        redis_client().hset(
            breaker.key, mapping={"state": "open", "failures": 5, "opened_at": 1_700_000_000_000}
        )
        [order_id] = _orders(1)
        order_mark_reserved(order_id=uuid.UUID(order_id))
        Order.objects.filter(id=order_id).update(
            status_changed_at=timezone.now() - timedelta(minutes=5)
        )
        client.force_login(staff_create())

        page = client.get(URL).content.decode()

        # Then the page says it is open, with its failures and the order waiting
        assert 'id="circuit-state" data-state="open">open<' in page.replace("\n", "")
        assert f"5 of {breaker.fail_max}" in page
        assert "2023-11-14 22:13:20" in page
        assert '?status=reserved">1</a>' in page
        # and the risk decisions are listed with zeros, linking to the assessments
        assert 'data-decision="hold"' in page
    finally:
        breaker.reset()
        payment_breaker.cache_clear()


def test_without_redis_the_page_says_the_breaker_state_is_unknown(client: Client, settings):
    from orders.breaker import payment_breaker
    from tools.localservices import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    payment_breaker.cache_clear()
    from common.redis_client import redis_client

    redis_client.cache_clear()
    try:
        client.force_login(staff_create())
        page = client.get(URL).content.decode()
        assert 'data-state="unknown"' in page
        assert 'id="circuit-unavailable"' in page
    finally:
        redis_client.cache_clear()
        payment_breaker.cache_clear()
