"""Retention of the outbox and ProcessedEvent: pruned in batches, history and the duplicate
backstop kept where they are needed."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from kafka_bridge.dead_letters import DeadLetterNotReplayable, dead_letter_replay
from kafka_bridge.models import ArchivedEvent, DeadLetter, OutboxEvent, ProcessedEvent
from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.tasks import event_tables_prune
from orders.selectors import order_timeline
from testing.kafka import event_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def retention(settings):  # type: ignore[no-untyped-def]
    settings.RETENTION = {
        "OUTBOX_DAYS": 7,
        "PROCESSED_EVENT_DAYS": 30,
        "BATCH_SIZE": 2,  # several batches in every test
        "SWEEP_SECONDS": 3600,
    }
    return settings.RETENTION


def _order_events(order_id: uuid.UUID, count: int) -> list[OutboxEvent]:
    data = {"order_id": str(order_id), "customer_id": 7, "reason": "out_of_stock"}
    with transaction.atomic():
        return outbox_events_record(
            [NewEvent("inventory.failed", str(order_id), "7", data) for _ in range(count)]
        )


def test_published_outbox_rows_past_retention_move_to_the_archive(retention):
    # Given an order's 6 events: 3 published 8 days ago, 1 published 6 days ago, 2 never
    # published (one of them recorded 10 days ago: a relay outage must not lose it)
    order_id = uuid.uuid4()
    rows = _order_events(order_id, 6)
    now = timezone.now()
    for row, published_days_ago in zip(rows[:4], (8, 8, 8, 6), strict=True):
        OutboxEvent.objects.filter(id=row.id).update(
            published_at=now - timedelta(days=published_days_ago)
        )
    OutboxEvent.objects.filter(id=rows[4].id).update(created_at=now - timedelta(days=10))
    timeline_before = [(e.event_id, e.event_type) for e in order_timeline(order_id=order_id)]

    # When the beat task runs
    result = event_tables_prune()

    # Then the three old published rows moved out of the outbox, into the archive
    assert result["outbox_archived"] == 3
    remaining = OutboxEvent.objects.filter(aggregate_id=str(order_id))
    assert set(remaining.values_list("id", flat=True)) == {row.id for row in rows[3:]}
    archived = ArchivedEvent.objects.filter(aggregate_id=str(order_id))
    assert [a.outbox_id for a in archived] == [row.id for row in rows[:3]]
    assert all(a.published_at < now - timedelta(days=7) for a in archived)
    # and the order's timeline lost nothing, in the same order
    timeline_after = order_timeline(order_id=order_id)
    assert [(e.event_id, e.event_type) for e in timeline_after] == timeline_before
    assert [e.is_published for e in timeline_after] == [True] * 4 + [False] * 2
    # and a second run finds nothing more to do
    assert event_tables_prune()["outbox_archived"] == 0


def test_processed_events_past_retention_are_deleted(retention):
    now = timezone.now()
    ages = [40, 35, 31, 29, 1]
    for days in ages:
        row = ProcessedEvent.objects.create(
            consumer_group="g", event_id=uuid.uuid4(), event_type="orders.created"
        )
        ProcessedEvent.objects.filter(id=row.id).update(processed_at=now - timedelta(days=days))

    result = event_tables_prune()

    assert result["processed_events_deleted"] == 3
    kept = ProcessedEvent.objects.filter(consumer_group="g").values_list("processed_at", flat=True)
    assert sorted(round((now - at) / timedelta(days=1)) for at in kept) == [1, 29]


def test_zero_days_keeps_everything(retention):
    retention.update(OUTBOX_DAYS=0, PROCESSED_EVENT_DAYS=0)
    rows = _order_events(uuid.uuid4(), 2)
    OutboxEvent.objects.filter(id__in=[r.id for r in rows]).update(
        published_at=timezone.now() - timedelta(days=365)
    )

    assert event_tables_prune() == {"outbox_archived": 0, "processed_events_deleted": 0}
    assert OutboxEvent.objects.filter(id__in=[r.id for r in rows]).count() == 2


@pytest.mark.parametrize(("failed_days_ago", "replayable"), [(29, True), (31, False)])
def test_a_dead_letter_older_than_the_duplicate_backstop_is_not_replayed(
    retention, failed_days_ago, replayable
):
    # Given a dead letter of a valid event, failed some days ago
    value = event_envelope(
        "inventory.failed",
        {"order_id": str(uuid.uuid4()), "customer_id": 7, "reason": "out_of_stock"},
    )
    dead_letter = DeadLetter.objects.create(
        dlq_topic="inventory.dlq",
        dlq_partition=0,
        dlq_offset=failed_days_ago,
        original_topic="inventory",
        consumer_group="orders",
        error_class="RuntimeError",
        value=value,
        failed_at=timezone.now() - timedelta(days=failed_days_ago),
    )

    # When staff replay it
    if replayable:
        with transaction.atomic():
            row = dead_letter_replay(dead_letter_id=dead_letter.id, actor="staff")
        assert row.event_id is not None
    else:
        # Then one older than PROCESSED_EVENT_RETENTION_DAYS is refused, with the reason
        refused = pytest.raises(DeadLetterNotReplayable, match="PROCESSED_EVENT_RETENTION_DAYS")
        with refused, transaction.atomic():
            dead_letter_replay(dead_letter_id=dead_letter.id, actor="staff")
        assert DeadLetter.objects.get(id=dead_letter.id).status == DeadLetter.Status.NEW


def test_the_prune_runs_on_the_beat_schedule():
    entry = django_settings.CELERY_BEAT_SCHEDULE["event-tables-prune"]
    assert entry["task"] == "kafka_bridge.tasks.event_tables_prune"
    assert entry["schedule"] == django_settings.RETENTION["SWEEP_SECONDS"]
