"""Celery entry points of the orders app: thin calls into services."""

from celery import shared_task

from orders.services import order_expire_stale


@shared_task
def orders_expire_stale() -> int:
    """Beat task: expire orders stuck in pending or reserved beyond their timeouts."""
    return len(order_expire_stale())
