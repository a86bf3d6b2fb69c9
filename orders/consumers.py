"""Kafka handlers of the orders consumer: the saga's coordinator.

Each takes a batch of events and calls services. Payment provider calls are slow network
I/O, so the handlers that need them are two-phase: the provider is called with no database
transaction open, then the outcome is recorded in the consumer's batch transaction together
with the status changes and the next events. An order whose stock is reserved is assessed
by the risk check (risk.services: a read) and, unless held or blocked, charged; then one
transaction records it reserved, its assessment and its charge (paid, or payment failed).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from inventory.events import InventoryFailedV1, InventoryReservedV1
from kafka_bridge.contracts import Event
from kafka_bridge.registry import ConsumerSpec, TwoPhaseHandler
from orders.events import OrderRef
from orders.payments import (
    GatewayAnswer,
    PaymentCause,
    payment_charges_request,
    payment_refunds_request,
    payments_record_charges,
    payments_record_refunds,
)
from orders.services import OrderChange, orders_apply_changes
from orders.status import OrderStatus
from risk.services import RiskCheck, RiskDecisions, risk_decisions_record, risk_orders_decide

Answers = dict[uuid.UUID, GatewayAnswer]


def _order_id(event: Event) -> uuid.UUID:
    assert isinstance(event.payload, OrderRef | InventoryReservedV1 | InventoryFailedV1)
    return event.payload.order_id


def _causes(events: Sequence[Event]) -> list[PaymentCause]:
    return [PaymentCause(_order_id(e), e.event_id) for e in events]


@dataclass(frozen=True)
class _Decided:
    """What the reservation's first phase decided: the risk decisions, and the charges."""

    risk: RiskDecisions
    charges: Answers


def _assess_and_charge(events: Sequence[Event]) -> _Decided:
    """With no transaction open: assess the risk of the orders whose stock is reserved (a
    read), then charge those it does not refuse."""
    decisions = risk_orders_decide(checks=[RiskCheck(_order_id(e), e.event_id) for e in events])
    refused = decisions.refused()
    charged = [_order_id(e) for e in events if _order_id(e) not in refused]
    charges = payment_charges_request(order_ids=charged, including_pending=True)
    return _Decided(risk=decisions, charges=charges)


def _reserve_and_record(events: Sequence[Event], decided: _Decided) -> None:
    """In the batch transaction: the orders reserved, their assessments (a held or blocked
    order leaves `reserved`), and their charges (a paid order too): one commit, so the
    relay publishes an order's `orders.reserved` and `orders.paid` together. A customer
    who cancels while the charge is in flight cancels a pending order; its charge is
    recorded all the same, and refunded (`payments.refund_due`)."""
    orders = orders_apply_changes(
        changes=[
            # Only a pending order: a held one waits for staff, whatever is redelivered.
            OrderChange(
                _order_id(e),
                OrderStatus.RESERVED,
                causation_id=e.event_id,
                expected=OrderStatus.PENDING,
            )
            for e in events
        ]
    )
    # The orders stay locked: the assessments and the charges move them without reading
    # them again.
    risk_decisions_record(decided.risk, locked=orders)
    payments_record_charges(charges=decided.charges, causes=_causes(events), locked=orders)


on_inventory_reserved = TwoPhaseHandler(
    name="on_inventory_reserved", prepare=_assess_and_charge, apply=_reserve_and_record
)


def on_inventory_failed(events: Sequence[Event]) -> None:
    changes = []
    for event in events:
        payload = event.payload
        assert isinstance(payload, InventoryFailedV1)
        detail = ", ".join(payload.short_skus)
        reason = f"{payload.reason}: {detail}" if detail else payload.reason
        changes.append(OrderChange(payload.order_id, OrderStatus.REJECTED, reason, event.event_id))
    orders_apply_changes(changes=changes)


def _refund(events: Sequence[Event]) -> Answers:
    return payment_refunds_request(order_ids=[_order_id(e) for e in events])


def _record_refunds(events: Sequence[Event], refunds: Answers) -> None:
    payments_record_refunds(refunds=refunds, causes=_causes(events))


# orders.cancelled / orders.expired: give back any money taken.
on_orders_ended_unshipped = TwoPhaseHandler(
    name="on_orders_ended_unshipped", prepare=_refund, apply=_record_refunds
)

# A charge captured after its order ended (the cancel came in while it was in flight).
on_payments_refund_due = TwoPhaseHandler(
    name="on_payments_refund_due", prepare=_refund, apply=_record_refunds
)


CONSUMER = ConsumerSpec(
    name="orders",
    handlers={
        "inventory.reserved": on_inventory_reserved,
        "inventory.failed": on_inventory_failed,
        "payments.refund_due": on_payments_refund_due,
        "orders.cancelled": on_orders_ended_unshipped,
        "orders.expired": on_orders_ended_unshipped,
    },
)
