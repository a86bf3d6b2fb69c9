"""The order status machine: every status and every allowed move, in one place.

pending ──▶ reserved ──▶ paid ──▶ shipped ──▶ delivered
   │           │  │        │
   │           │  └─▶ payment_failed ──▶ cancelled
   ├─▶ rejected│
   ├─▶ cancelled ◀─ (customer or staff, until shipped)
   └─▶ expired ◀── (beat task: pending or reserved for too long)
"""

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (awaiting stock)"
    RESERVED = "reserved", "Reserved (awaiting payment)"
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
    S.RESERVED: frozenset({S.PAID, S.PAYMENT_FAILED, S.CANCELLED, S.EXPIRED}),
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
