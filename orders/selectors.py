import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from kafka_bridge.models import ArchivedEvent, OutboxEvent
from kafka_bridge.outbox import aggregate_events
from orders.models import Order, Payment
from orders.status import OrderStatus


def order_list_for_customer(*, customer: AbstractBaseUser) -> QuerySet[Order]:
    """A customer's own orders, newest first; nobody else's are ever in it."""
    return (
        Order.objects.filter(customer=customer)
        .select_related("payment", "shipment")
        .prefetch_related("lines")
        .order_by("-created_at")
    )


def order_get_for_customer(*, customer: AbstractBaseUser, order_id: uuid.UUID) -> Order | None:
    return order_list_for_customer(customer=customer).filter(id=order_id).first()


def order_list_stale(*, now: datetime) -> QuerySet[Order]:
    """Orders stuck too long: pending (stock never answered) or reserved (payment never
    came), by the timeouts in settings.ORDERS."""
    pending_cutoff = now - timedelta(seconds=settings.ORDERS["PENDING_TIMEOUT_SECONDS"])
    reserved_cutoff = now - timedelta(seconds=settings.ORDERS["RESERVED_TIMEOUT_SECONDS"])
    return (
        Order.objects.filter(
            Q(status=OrderStatus.PENDING, status_changed_at__lt=pending_cutoff)
            | Q(status=OrderStatus.RESERVED, status_changed_at__lt=reserved_cutoff)
        )
        # A captured charge means `paid` is on its way: not stuck, just behind.
        .exclude(payment__status=Payment.Status.CAPTURED)
        .order_by("status_changed_at")
    )


def order_timeline(*, order_id: uuid.UUID) -> list[OutboxEvent | ArchivedEvent]:
    """Every event recorded about an order, oldest first: the saga as it happened (also
    once retention has pruned the outbox)."""
    return aggregate_events(aggregate_id=str(order_id))


def order_list_awaiting_charge(*, order_ids: Sequence[uuid.UUID]) -> QuerySet[Order]:
    """Those of these orders that are reserved and have no payment yet."""
    return Order.objects.filter(
        id__in=order_ids, status=OrderStatus.RESERVED, payment__isnull=True
    ).only("id", "total", "currency", "payment_token")


def payment_list_refundable(
    *, order_ids: Sequence[uuid.UUID], only_ended_orders: bool = False
) -> QuerySet[Payment]:
    """Captured payments of these orders; with `only_ended_orders`, only where the order
    was cancelled or expired (a charge that landed after the order ended)."""
    payments = Payment.objects.filter(order_id__in=order_ids, status=Payment.Status.CAPTURED)
    if only_ended_orders:
        payments = payments.filter(order__status__in=[OrderStatus.CANCELLED, OrderStatus.EXPIRED])
    return payments
