"""Celery entry points of the orders app: thin calls into services."""

import uuid

from celery import shared_task

from orders.payments import payment_charges_retry
from orders.services import order_expire_stale


@shared_task
def orders_expire_stale() -> int:
    """Beat task: expire orders stuck in pending or reserved beyond their timeouts."""
    return len(order_expire_stale())


@shared_task(acks_late=True)
def orders_charge_awaiting(order_ids: list[str] | None = None) -> int:
    """Charge reserved orders waiting for their charge: these (queued when staff approve a
    held order), or, as the beat sweep, every overdue one (held back by the payment circuit
    breaker). Idempotent: each charge carries its order's idempotency key."""
    ids = [uuid.UUID(order_id) for order_id in order_ids] if order_ids is not None else None
    return payment_charges_retry(order_ids=ids)
