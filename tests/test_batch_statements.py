"""What a consumer batch costs in SQL: an order's whole saga handed, event by event, to every
group's registered handlers as batches of one (the common case at low load, where the
fixed cost per batch is what counts). Each statement is a round trip and server work, so
the count is pinned, like the API's query count in orders/tests/test_api.py."""

from collections import Counter
from collections.abc import Sequence

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kafka_bridge.consumer.apply import events_apply
from kafka_bridge.contracts import Event
from kafka_bridge.models import OutboxEvent
from kafka_bridge.registry import CONSUMERS, ConsumerSpec, TwoPhaseHandler
from notifications.models import Notification
from notifications.services import KIND_BY_ORDER_STATUS
from orders.events import OrderCreatedV2
from orders.payments import payment_gateway
from orders.services import OrderItemInput, order_create
from orders.status import OrderStatus
from reporting.models import CustomerOrderSummary
from testing.factories import customer_create, product_with_stock
from testing.saga import events_recorded_after
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.payloads import ALL_EVENTS

# Statements for the batches of one order's saga, all groups together (BEGIN and COMMIT
# included): 90 when this was pinned. A change that adds some should say why.
# +12: the webhooks group reads orders.created, orders.reserved and orders.paid; each batch
# of one is BEGIN, the ProcessedEvent INSERT, one SELECT of the active endpoints and COMMIT
# (with endpoints subscribed, one INSERT of the deliveries more).
# -1: marking an order paid locks its payment for a refund only when one was made (a charge
# that landed after the order ended).
# -6: recording a charge moves its order to paid in the same transaction, so the orders
# group no longer applies payments.processed in a batch of its own.
# -3: the notifications group reads shipping addresses from the orders at render time
# instead of copying each from orders.created in a batch of its own.
SAGA_STATEMENTS_AT_MOST = 92


def _saga_batches_of_one(
    held: dict[str, list[Event]] | None = None,
) -> dict[tuple[str, str], Counter[str]]:
    """Every event the order causes, oldest first, applied by each group that handles it;
    the first word of each statement, per (group, event type). The groups named in `held`
    get their events appended there instead, unapplied."""
    product = product_with_stock()
    last_id = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    order_create(customer=customer_create(), items=[OrderItemInput(product.sku, 1)])
    statements: dict[tuple[str, str], Counter[str]] = {}
    for event in events_recorded_after(last_id):
        for name, spec in CONSUMERS.items():
            if spec.is_raw or event.event_type not in spec.handlers:
                continue
            if held is not None and name in held:
                held[name].append(event)
                continue
            with CaptureQueriesContext(connection) as captured:
                events_apply(group=name, events=[event], handlers=spec.handlers)
            statements[(name, event.event_type)] = Counter(
                query["sql"].split()[0].upper() for query in captured.captured_queries
            )
    return statements


@pytest.mark.django_db(transaction=True)  # real BEGIN and COMMIT; the charge runs outside one
def test_a_batch_of_one_is_one_transaction_without_savepoints():
    # Given an order's saga run through every group's handlers as batches of one, after a
    # first order's (which creates rows made once, such as the order-rate watermark)
    payment_gateway.cache_clear()
    _saga_batches_of_one()
    statements = _saga_batches_of_one()

    # Then the saga went all the way (every group saw its events) ...
    assert set(statements) >= {
        ("inventory", "orders.created"),
        ("orders", "inventory.reserved"),
        ("notifications", "orders.paid"),
        ("read_models", "orders.paid"),
    }
    # ... each batch was one transaction, but the orders group's charge, which commits the
    # reservation before calling the gateway and records its answer after ...
    transactions = {key: counts["BEGIN"] for key, counts in statements.items()}
    assert transactions.pop(("orders", "inventory.reserved")) == 2
    assert set(transactions.values()) == {1}, transactions
    # ... the services the handlers call joined the batch's transaction: no savepoint (a
    # failing handler fails the whole batch, which the runner then splits) ...
    with_savepoints = {key for key, counts in statements.items() if counts["SAVEPOINT"]}
    assert not with_savepoints
    # ... and the whole saga stayed within its statement budget
    total = sum(sum(counts.values()) for counts in statements.values())
    assert total <= SAGA_STATEMENTS_AT_MOST, {k: sum(c.values()) for k, c in statements.items()}


@pytest.mark.django_db(transaction=True)
def test_the_risk_check_joins_the_reservations_transaction_and_adds_a_few_statements(settings):
    # Given the saga run as batches of one without the risk check, then with it
    payment_gateway.cache_clear()
    _saga_batches_of_one()
    without = _saga_batches_of_one()[("orders", "inventory.reserved")]
    settings.RISK = {**settings.RISK, "ENABLED": True}
    with_check = _saga_batches_of_one()[("orders", "inventory.reserved")]

    # Then the check commits with the reservation, before the charge, with no savepoint,
    # and costs a fixed handful of statements (a batch of 500 costs the same:
    # risk/tests/test_services.py)
    assert (without["BEGIN"], with_check["BEGIN"]) == (2, 2)
    assert not with_check["SAVEPOINT"]
    added = sum(with_check.values()) - sum(without.values())
    assert added <= RISK_STATEMENTS_AT_MOST, dict(with_check - without)


# The check: the assessments known, the orders' facts, three or four reads of their history
# (the token's orders only with a token), the assessment and outbox inserts: 7 when this
# was pinned (8 with a payment token).
# -5: the facts and all their history, with a token or without, are one read; the
# assessments made before are read only for an order the insert skipped (a redelivery).
RISK_STATEMENTS_AT_MOST = 3


@pytest.mark.django_db(transaction=True)
def test_groups_that_fold_an_orders_events_apply_a_batch_of_them_in_one_call():
    # Given an endpoint subscribed to every event, and the events of an order's saga held
    # back from the groups that fold them (after a first order's, which creates rows made
    # once)
    WebhookEndpoint.objects.create(url="https://hooks.example.com/", event_types=[ALL_EVENTS])
    payment_gateway.cache_clear()
    folding = {name for name, spec in CONSUMERS.items() if spec.whole_batches}
    assert folding == {"notifications", "read_models", "webhooks"}
    _saga_batches_of_one(held={name: [] for name in folding})
    held: dict[str, list[Event]] = {name: [] for name in folding}
    _saga_batches_of_one(held=held)
    created = held["read_models"][0].payload
    assert isinstance(created, OrderCreatedV2)

    # When each of those groups gets its events as one batch
    statements = {}
    for name, events in held.items():
        assert len({e.envelope.aggregate_id for e in events}) == 1 < len(events), events
        with CaptureQueriesContext(connection) as captured:
            events_apply(
                group=name,
                events=events,
                handlers=CONSUMERS[name].handlers,
                whole_batches=True,
            )
        statements[name] = [query["sql"] for query in captured.captured_queries]

    # Then each applied them in one transaction with one pass of its handler: the handler's
    # statements once, not once per event ...
    for name, sql in statements.items():
        assert sum(s.startswith("BEGIN") for s in sql) == 1, (name, sql)
        assert len(sql) <= WHOLE_BATCH_STATEMENTS_AT_MOST[name], (name, sql)
    # ... and folded them in order: the order reads as paid, notified of its reservation and
    # its payment, and one delivery per event went out in event order
    summary = CustomerOrderSummary.objects.get(customer_id=created.customer_id)
    assert summary.orders_by_status == {OrderStatus.PAID: 1}
    assert summary.lifetime_value == created.total
    kinds = Notification.objects.filter(order_id=created.order_id).order_by("id")
    assert [n.kind for n in kinds] == [
        KIND_BY_ORDER_STATUS[e.payload.status]  # type: ignore[union-attr]
        for e in held["notifications"]
    ]
    deliveries = WebhookDelivery.objects.filter(order_id=created.order_id).order_by("id")
    assert [d.event_type for d in deliveries] == [e.event_type for e in held["webhooks"]]


# Statements of one batch holding the order's events, per folding group, BEGIN and COMMIT
# included. Applied in waves, one event at a time, they cost 14, 33 and 15: notifications
# and webhooks now pay what a batch of one costs; read_models 2 more than its costliest
# batch of one (orders.paid, 13), as the batch both creates the order's facts and moves them.
WHOLE_BATCH_STATEMENTS_AT_MOST = {"notifications": 7, "read_models": 15, "webhooks": 5}


def test_only_a_group_with_one_plain_handler_can_take_whole_batches():
    def first(events: Sequence[Event]) -> None: ...

    def second(events: Sequence[Event]) -> None: ...

    two_phase = TwoPhaseHandler(name="charge", prepare=first, apply=lambda events, _: None)

    ConsumerSpec(name="folds", handlers={"orders.created": first}, whole_batches=True)
    for handlers in ({"orders.created": first, "orders.paid": second}, {"orders.paid": two_phase}):
        with pytest.raises(ValueError, match="whole_batches needs one plain handler"):
            ConsumerSpec(name="cannot", handlers=handlers, whole_batches=True)
