"""Kafka handlers of the orders consumer: the saga's coordinator.

Each takes a batch of events and calls services. Payment provider calls are slow network
I/O, so the handlers that need them are two-phase: the provider is called with no database
transaction open, then the outcome is recorded in the consumer's batch transaction together
with the status changes and the next events (a charge's order is paid, or its payment
failed, in the transaction that records the charge). Before an order is charged, the risk
check (risk.services) approves, holds or blocks it.
"""

import uuid
from collections.abc import Sequence

from django.db import transaction

from common.circuit_breaker import CircuitOpen
from inventory.events import InventoryFailedV1, InventoryReservedV1
from kafka_bridge.contracts import Event
from kafka_bridge.outbox import relay_wake, relay_wake_deferred
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
from risk.services import RiskCheck, risk_orders_assess

Answers = dict[uuid.UUID, GatewayAnswer]


def _order_id(event: Event) -> uuid.UUID:
    assert isinstance(event.payload, OrderRef | InventoryReservedV1 | InventoryFailedV1)
    return event.payload.order_id


def _causes(events: Sequence[Event]) -> list[PaymentCause]:
    return [PaymentCause(_order_id(e), e.event_id) for e in events]


def _reserve_assess_and_charge(events: Sequence[Event]) -> Answers:
    """Mark the orders reserved and assess their risk, committed together (the customer
    sees it, a cancel may now race the charge; held and blocked orders leave `reserved`
    in the same transaction), then charge those still reserved, with no transaction open.

    The commit does not wake the relay: the charges' record does, moments later, so an
    order's `orders.reserved` and `orders.paid` are published in one relay batch and read
    together by the groups that follow both."""
    with relay_wake_deferred(), transaction.atomic():
        orders_apply_changes(
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
        risk_orders_assess(checks=[RiskCheck(_order_id(e), e.event_id) for e in events])
    charges = payment_charges_request(order_ids=[_order_id(e) for e in events])
    if all(isinstance(answer, CircuitOpen) for answer in charges.values()):
        relay_wake()  # no charge to record: the reservation's events go out now
    return charges


def _record_charges(events: Sequence[Event], charges: Answers) -> None:
    payments_record_charges(charges=charges, causes=_causes(events))


on_inventory_reserved = TwoPhaseHandler(
    name="on_inventory_reserved", prepare=_reserve_assess_and_charge, apply=_record_charges
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
