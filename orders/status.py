"""The order status machine: every status and every allowed move, in one place.

pending ──▶ reserved ──▶ paid ──▶ shipped ──▶ delivered
   │           │  │ ▲      │
   │           │  │ └── held ◀── (risk check: between its review and block scores)
   │           │  │      └─▶ cancelled (staff reject it; staff approve it: back to reserved)
   │           │  └─▶ payment_failed ──▶ cancelled
   ├─▶ rejected│
   ├─▶ cancelled ◀─ (customer or staff, until shipped; the risk check's block)
   └─▶ expired ◀── (beat task: pending or reserved for too long; never held)
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (awaiting stock)"
    RESERVED = "reserved", "Reserved (awaiting payment)"
    HELD = "held", "Held (awaiting risk review)"
    REJECTED = "rejected", "Rejected (out of stock)"
    PAID = "paid", "Paid"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


S = OrderStatus
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RESERVED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.RESERVED: frozenset({S.PAID, S.PAYMENT_FAILED, S.HELD, S.CANCELLED, S.EXPIRED}),
    # A hold waits for staff however long it takes: it never expires. Stock stays reserved.
    S.HELD: frozenset({S.RESERVED, S.CANCELLED}),
    S.PAID: frozenset({S.SHIPPED, S.CANCELLED}),
    S.PAYMENT_FAILED: frozenset({S.CANCELLED}),
    S.SHIPPED: frozenset({S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL: frozenset[str] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
CANCELLABLE: frozenset[str] = frozenset(s for s, t in TRANSITIONS.items() if S.CANCELLED in t)


class InvalidOrderTransition(Exception):
    """The order cannot move from its current status to the requested one."""

    def __init__(self, *, current: str, target: str) -> None:
        super().__init__(f"order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def status_transition_check(*, current: str, target: str) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidOrderTransition(current=current, target=target)


@dataclass(frozen=True)
class StatusReplay:
    status: str | None  # None: no orders.created among the events
    problem: str = ""  # a move the status machine forbids, or events out of place


def status_replay(event_types: Sequence[str]) -> StatusReplay:
    """An order's status rebuilt from its events' types (`orders.created`, then one
    `orders.<status>` per move), in the order they were recorded."""
    status: str | None = None
    for event_type in event_types:
        if event_type == "orders.created":
            if status is not None:
                return StatusReplay(status, "orders.created after the order was created")
            status = S.PENDING
            continue
        target = event_type.removeprefix("orders.")
        if status is None:
            return StatusReplay(None, f"{event_type} before orders.created")
        if target not in TRANSITIONS[status]:
            return StatusReplay(status, f"{event_type} would move it from {status} to {target}")
        status = target
    return StatusReplay(status)
