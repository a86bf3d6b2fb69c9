"""Recording events: validated, serialised once, stored with one INSERT, after-commit wake-up."""

import json
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common.correlation import correlation_scope
from kafka_bridge.contracts import EventDecodeError, event_decode
from kafka_bridge.models import OutboxEvent
from kafka_bridge.outbox import NewEvent, outbox_event_record, outbox_events_record, relay_wake
from orders.events import OrderCreatedV2

pytestmark = pytest.mark.django_db


def _order_created(order_id: uuid.UUID) -> OrderCreatedV2:
    return OrderCreatedV2(
        order_id=order_id,
        customer_id=7,
        currency="EUR",
        total=Decimal("12.50"),
        items=[{"sku": "MUG-1", "quantity": 1, "unit_price": Decimal("12.50")}],
        sales_channel="web",
    )


def test_recorded_rows_carry_the_envelope_bytes_they_will_send(django_capture_on_commit_callbacks):
    # Given two events, one with a payload model and one with a plain dict (non-ASCII text)
    order_id, cause = uuid.uuid4(), uuid.uuid4()
    events = [
        NewEvent("orders.created", str(order_id), "7", _order_created(order_id)),
        NewEvent(
            "inventory.failed",
            str(order_id),
            "7",
            {"order_id": str(order_id), "customer_id": 7, "reason": "épuisé"},
            causation_id=cause,
        ),
    ]

    # When they are recorded together in one transaction
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        correlation_scope("corr-1"),
        CaptureQueriesContext(connection) as queries,
        transaction.atomic(),
    ):
        rows = outbox_events_record(events)

    # Then one INSERT stored both, and the relay is woken once, after commit
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert callbacks == [relay_wake]
    # and each row holds the JSON envelope, as consumers decode it
    stored = list(OutboxEvent.objects.filter(aggregate_id=str(order_id)).order_by("id"))
    assert [row.id for row in rows] == [row.id for row in stored]
    created, failed = (event_decode(bytes(row.value)) for row in stored)
    assert created.event_id == stored[0].event_id
    assert created.event_type == "orders.created"
    assert created.correlation_id == "corr-1"
    assert created.payload == _order_created(order_id)
    assert failed.envelope.causation_id == cause
    assert failed.payload.reason == "épuisé"
    envelope = json.loads(bytes(stored[0].value))
    assert envelope["data"]["total"] == "12.50"  # decimals as strings, as before
    assert envelope["occurred_at"] == json.loads(bytes(stored[1].value))["occurred_at"]
    # and `envelope` reads the same bytes back
    assert stored[1].envelope == json.loads(bytes(stored[1].value))
    assert stored[0].topic == "orders" and stored[1].topic == "inventory"


def test_one_event_is_a_one_element_batch(django_capture_on_commit_callbacks):
    order_id = uuid.uuid4()
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        row = outbox_event_record(
            event_type="orders.created",
            aggregate_id=str(order_id),
            key="7",
            data=_order_created(order_id),
        )
    assert callbacks == [relay_wake]
    assert event_decode(bytes(OutboxEvent.objects.get(id=row.id).value)).event_id == row.event_id


def test_an_invalid_event_stores_none_of_the_batch():
    order_id = uuid.uuid4()
    valid = NewEvent("orders.created", str(order_id), "7", _order_created(order_id))
    invalid = NewEvent("inventory.failed", str(order_id), "7", {"order_id": "not a uuid"})

    with pytest.raises(EventDecodeError), transaction.atomic():
        outbox_events_record([valid, invalid])

    assert not OutboxEvent.objects.filter(aggregate_id=str(order_id)).exists()


@pytest.mark.django_db(transaction=True)
def test_recording_outside_a_transaction_is_refused():
    order_id = uuid.uuid4()
    event = NewEvent("orders.created", str(order_id), "7", _order_created(order_id))

    with pytest.raises(RuntimeError, match=r"transaction\.atomic"):
        outbox_events_record([event])
    with pytest.raises(RuntimeError, match=r"transaction\.atomic"):
        outbox_event_record(
            event_type=event.event_type, aggregate_id=event.aggregate_id, key="7", data=event.data
        )
    assert not OutboxEvent.objects.exists()


def test_with_tracing_off_the_trace_column_is_left_to_its_default():
    # Given a process without tracing (no OTLP endpoint: the test run's)
    order_id = uuid.uuid4()

    # When an event is recorded
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        outbox_event_record(
            event_type="orders.created",
            aggregate_id=str(order_id),
            key="7",
            data=_order_created(order_id),
        )

    # Then its INSERT does not name the column, which holds no trace context
    (insert,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert "trace_context" not in insert
    assert OutboxEvent.objects.get(aggregate_id=str(order_id)).trace_context == ""
