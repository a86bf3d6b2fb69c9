"""Order writes. Each one changes the order and records its domain event in one
transaction; the relay publishes the event only after that transaction commits."""

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from inventory.selectors import products_by_sku
from kafka_bridge.contracts import OrderCreatedV1, OrderItem
from kafka_bridge.outbox import outbox_event_record
from orders.models import Order, OrderLine
from orders.status import InvalidOrderTransition, OrderStatus, status_transition_check

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderItemInput:
    sku: str
    quantity: int


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different request body."""


def _fingerprint(items: Sequence[OrderItemInput]) -> str:
    canonical = sorted((item.sku, item.quantity) for item in items)
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def _order_for_key(*, customer: AbstractBaseUser, key: str, fingerprint: str) -> Order | None:
    order = Order.objects.filter(customer=customer, idempotency_key=key).first()
    if order is not None and order.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(key)
    return order


@transaction.atomic
def order_create(
    *,
    customer: AbstractBaseUser,
    items: Sequence[OrderItemInput],
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """Create a pending order and its `orders.created` event; return (order, created).

    With an idempotency key already used by this customer for the same items, the earlier
    order is returned and nothing is created.
    """
    fingerprint = _fingerprint(items)
    if idempotency_key:
        existing = _order_for_key(customer=customer, key=idempotency_key, fingerprint=fingerprint)
        if existing is not None:
            return existing, False

    products = products_by_sku(item.sku for item in items)
    unavailable = [
        item.sku for item in items if item.sku not in products or not products[item.sku].active
    ]
    if unavailable:
        raise ValidationError({"items": [f"Unknown or inactive SKU: {sku}" for sku in unavailable]})

    total = sum((products[i.sku].price * i.quantity for i in items), Decimal("0"))
    try:
        with transaction.atomic():
            order = Order.objects.create(
                customer=customer,
                total=total,
                currency=settings.ORDERS["CURRENCY"],
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
            )
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its order.
        if not idempotency_key:
            raise
        existing = _order_for_key(customer=customer, key=idempotency_key, fingerprint=fingerprint)
        if existing is None:
            raise
        return existing, False

    lines = OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            sku=item.sku,
            product_name=products[item.sku].name,
            quantity=item.quantity,
            unit_price=products[item.sku].price,
        )
        for item in items
    )
    outbox_event_record(
        event_type="orders.created",
        aggregate_id=str(order.id),
        key=str(customer.pk),
        data=OrderCreatedV1(
            order_id=order.id,
            customer_id=customer.pk,
            currency=order.currency,
            total=order.total,
            items=[
                OrderItem(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price)
                for line in lines
            ],
        ),
    )
    return order, True


def _order_transition(*, order_id: uuid.UUID, target: str, reason: str = "") -> Order | None:
    """Move an order to `target` under a row lock. An event that no longer applies (the
    order moved on) is logged and ignored: redelivery and reordering are normal."""
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        logger.warning("order %s not found; %s ignored", order_id, target)
        return None
    if order.status == target:
        return order
    try:
        status_transition_check(current=order.status, target=target)
    except InvalidOrderTransition as exc:
        logger.warning("order %s: %s; event ignored", order_id, exc)
        return order
    order.status = target
    order.status_reason = reason
    order.save(update_fields=["status", "status_reason", "updated_at"])
    return order


@transaction.atomic
def order_mark_reserved(*, order_id: uuid.UUID) -> Order | None:
    return _order_transition(order_id=order_id, target=OrderStatus.RESERVED)


@transaction.atomic
def order_mark_rejected(*, order_id: uuid.UUID, reason: str) -> Order | None:
    return _order_transition(order_id=order_id, target=OrderStatus.REJECTED, reason=reason)
