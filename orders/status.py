"""The order status machine: every status and every allowed move, in one place."""

from django.db import models


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending (awaiting stock)"
    RESERVED = "reserved", "Reserved"
    REJECTED = "rejected", "Rejected (out of stock)"


TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.RESERVED, OrderStatus.REJECTED}),
    OrderStatus.RESERVED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class InvalidOrderTransition(Exception):
    """The order cannot move from its current status to the requested one."""

    def __init__(self, *, current: str, target: str) -> None:
        super().__init__(f"order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def status_transition_check(*, current: str, target: str) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidOrderTransition(current=current, target=target)
