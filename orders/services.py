"""Order writes. Each one changes the order and records its domain event in one
transaction; the relay publishes the event only after that transaction commits."""

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.circuit_breaker import BreakerState
from inventory.selectors import products_by_sku
from kafka_bridge.outbox import NewEvent, outbox_event_record, outbox_events_record
from kafka_bridge.sql import rows_update, rows_where_in
from orders.breaker import payment_breaker
from orders.events import OrderCreatedV2, OrderItem, OrderStatusChangedV1, ShippingAddress
from orders.models import Order, OrderLine, SalesChannel, Shipment
from orders.selectors import order_list_stale
from orders.status import InvalidOrderTransition, OrderStatus, status_transition_check
from orders.status_feed import OrderStatusMove, status_moves_publish_on_commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderItemInput:
    sku: str
    quantity: int


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different request body."""


def _fingerprint(
    items: Sequence[OrderItemInput], *, sales_channel: str, shipping_address: dict | None
) -> str:
    canonical: list = sorted((item.sku, item.quantity) for item in items)
    # Orders without the V2 fields keep the fingerprint they had before those fields existed,
    # so a client's retry across the deploy still matches its first request.
    if sales_channel != SalesChannel.WEB or shipping_address is not None:
        canonical = [canonical, sales_channel, shipping_address]
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _order_for_key(*, customer: AbstractBaseUser, key: str, fingerprint: str) -> Order | None:
    # Payment and shipment joined: the caller answers with the whole order, and a replayed
    # order may have either by now.
    order = (
        Order.objects.filter(customer=customer, idempotency_key=key)
        .select_related("payment", "shipment")
        .first()
    )
    if order is not None and order.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(key)
    return order


@transaction.atomic
def order_create(
    *,
    customer: AbstractBaseUser,
    items: Sequence[OrderItemInput],
    idempotency_key: str | None = None,
    payment_token: str = "",
    sales_channel: str = SalesChannel.WEB,
    shipping_address: ShippingAddress | None = None,
) -> tuple[Order, bool]:
    """Create a pending order and its `orders.created` event; return (order, created).

    With an idempotency key already used by this customer for the same request, the earlier
    order is returned and nothing is created.
    """
    address = shipping_address.model_dump() if shipping_address else None
    fingerprint = _fingerprint(items, sales_channel=sales_channel, shipping_address=address)
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
        # The savepoint only matters when a key can collide: it keeps the transaction usable
        # to look up the winner. Without a key, any IntegrityError is a bug and may abort all.
        with transaction.atomic() if idempotency_key else nullcontext():
            order = Order.objects.create(
                customer=customer,
                total=total,
                currency=settings.ORDERS["CURRENCY"],
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
                payment_token=payment_token,
                sales_channel=sales_channel,
                shipping_address=address,
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
        data=OrderCreatedV2(
            order_id=order.id,
            customer_id=customer.pk,
            currency=order.currency,
            total=order.total,
            items=[
                OrderItem(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price)
                for line in lines
            ],
            sales_channel=order.sales_channel,
            shipping_address=shipping_address,
        ),
    )
    _relations_of_new_order_set(order, lines=lines)
    return order, True


def _relations_of_new_order_set(order: Order, *, lines: list[OrderLine]) -> None:
    """Fill the relation caches of a just-created order, as select_related/prefetch_related
    would: it has exactly these lines and no payment or shipment yet, so whoever renders it
    (the API answers with the whole order) needs no query for them."""
    # The prefetch cache is what `order.lines.all()` reads; DRF's own update view resets it
    # the same way.
    order._prefetched_objects_cache = {"lines": lines}  # type: ignore[attr-defined]
    # A cached None makes `order.payment` raise DoesNotExist without asking the database.
    Order.payment.related.set_cached_value(order, None)
    Order.shipment.related.set_cached_value(order, None)


def _order_move(
    order: Order,
    *,
    target: str,
    reason: str = "",
    actor: str = "system",
    causation_id: uuid.UUID | None = None,
    shipment: Shipment | None = None,
) -> NewEvent:
    """Move a locked order to `target` in memory and return its `orders.<target>` event
    (the caller saves and records both); raise InvalidOrderTransition if the status
    machine forbids the move."""
    status_transition_check(current=order.status, target=target)
    previous = order.status
    order.status = target
    order.status_seq += 1
    order.status_reason = reason[:200]
    order.status_changed_at = order.updated_at = timezone.now()
    return NewEvent(
        event_type=f"orders.{target}",
        aggregate_id=str(order.id),
        key=str(order.customer_id),
        causation_id=causation_id,
        data=OrderStatusChangedV1(
            order_id=order.id,
            customer_id=order.customer_id,
            previous_status=previous,
            status=target,
            reason=order.status_reason,
            actor=actor,
            tracking_number=shipment.tracking_number if shipment else "",
            carrier=shipment.carrier if shipment else "",
        ),
    )


_MOVED_FIELDS = ["status", "status_reason", "status_seq", "status_changed_at", "updated_at"]


def _status_moves(
    events: Sequence[NewEvent], orders: Mapping[uuid.UUID, Order]
) -> list[OrderStatusMove]:
    """The moves these `orders.<status>` events record, numbered: an order's last one here
    has the number its row holds now, the ones before it count down from there. All of an
    order's moves in one transaction share its row's `status_changed_at`."""
    left = Counter(event.aggregate_id for event in events)
    moves = []
    for event in events:
        data = cast(OrderStatusChangedV1, event.data)
        order = orders[data.order_id]
        moves.append(
            OrderStatusMove(
                order_id=order.id,
                seq=order.status_seq - left[event.aggregate_id] + 1,
                status=data.status,
                reason=data.reason,
                at=order.status_changed_at,
            )
        )
        left[event.aggregate_id] -= 1
    return moves


def _order_transition(
    order: Order,
    *,
    target: str,
    reason: str = "",
    actor: str = "system",
    shipment: Shipment | None = None,
) -> Order:
    """Move one locked order, save it and record its event (staff and customer actions)."""
    event = _order_move(order, target=target, reason=reason, actor=actor, shipment=shipment)
    order.save(update_fields=_MOVED_FIELDS)
    outbox_events_record([event])
    status_moves_publish_on_commit(_status_moves([event], {order.id: order}))
    return order


@dataclass(frozen=True)
class OrderChange:
    """A saga event's effect on an order: move it to `target`; with `expected`, only from
    that status (`inventory.reserved` moves a pending order, never a held one back)."""

    order_id: uuid.UUID
    target: str
    reason: str = ""
    causation_id: uuid.UUID | None = None
    expected: str = ""


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def orders_apply_changes(
    *, changes: Sequence[OrderChange], locked: Mapping[uuid.UUID, Order] | None = None
) -> dict[uuid.UUID, Order]:
    """Apply saga events to orders, in the given order, in a constant number of queries:
    every order locked in one statement (primary-key order), one UPDATE, one INSERT of
    events. A change that no longer applies (the order moved on, e.g. a payment result for
    a cancelled order) is logged and changes nothing: redelivery and reordering are normal.
    A payment failure is followed by the order's cancellation (compensation: inventory
    releases the stock on `orders.cancelled`). `locked`: the orders, already read with
    `select_for_update` in this transaction (not read again). Returns the orders found, as
    they are now."""
    if not changes:
        return dict(locked or {})
    if locked is not None:
        orders = dict(locked)
    else:
        ids = {change.order_id for change in changes}
        orders = {order.id: order for order in rows_where_in(Order, "id", ids, lock=True)}
    moved: dict[uuid.UUID, Order] = {}
    events: list[NewEvent] = []
    for change in changes:
        order = orders.get(change.order_id)
        if order is None:
            logger.warning("order %s not found; %s ignored", change.order_id, change.target)
            continue
        if order.status == change.target:
            continue
        if change.expected and order.status != change.expected:
            logger.info(
                "order %s is %s, not %s; %s ignored",
                order.id,
                order.status,
                change.expected,
                change.target,
            )
            continue
        try:
            events.append(
                _order_move(
                    order,
                    target=change.target,
                    reason=change.reason,
                    causation_id=change.causation_id,
                )
            )
        except InvalidOrderTransition as exc:
            logger.warning("order %s: %s; event ignored", order.id, exc)
            continue
        if change.target == OrderStatus.PAYMENT_FAILED:
            events.append(
                _order_move(
                    order,
                    target=OrderStatus.CANCELLED,
                    reason=f"payment failed: {change.reason}",
                    causation_id=change.causation_id,
                )
            )
        moved[order.id] = order
    _orders_save_moved(moved.values())
    outbox_events_record(events)
    # Watchers of the live status stream hear of each move once the batch has committed.
    status_moves_publish_on_commit(_status_moves(events, orders))
    return orders


def _orders_save_moved(orders: Iterable[Order]) -> None:
    """Write the moved orders' status fields as `_order_move` left them, in one statement
    (`rows_update`): the rows are locked, so the `status_seq` read and counted on in memory
    is what the database holds."""
    rows_update(Order, list(orders), _MOVED_FIELDS)


def _order_apply_change(change: OrderChange) -> Order | None:
    return orders_apply_changes(changes=[change]).get(change.order_id)


def order_mark_reserved(
    *, order_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Order | None:
    return _order_apply_change(OrderChange(order_id, OrderStatus.RESERVED, "", causation_id))


def order_mark_rejected(
    *, order_id: uuid.UUID, reason: str, causation_id: uuid.UUID | None = None
) -> Order | None:
    return _order_apply_change(OrderChange(order_id, OrderStatus.REJECTED, reason, causation_id))


def order_mark_paid(*, order_id: uuid.UUID, causation_id: uuid.UUID | None = None) -> Order | None:
    return _order_apply_change(OrderChange(order_id, OrderStatus.PAID, "", causation_id))


def order_mark_payment_failed(
    *, order_id: uuid.UUID, reason: str, causation_id: uuid.UUID | None = None
) -> Order | None:
    """payment_failed, then cancelled (compensation: inventory releases on the cancel)."""
    return _order_apply_change(
        OrderChange(order_id, OrderStatus.PAYMENT_FAILED, reason, causation_id)
    )


@transaction.atomic
def order_cancel(*, order_id: uuid.UUID, actor: str, reason: str = "") -> Order:
    """Cancel an order before it ships (customer, staff or system). Raises
    Order.DoesNotExist or InvalidOrderTransition (e.g. already shipped)."""
    order = Order.objects.select_for_update().get(id=order_id)
    return _order_transition(
        order, target=OrderStatus.CANCELLED, reason=reason or f"cancelled by {actor}", actor=actor
    )


@transaction.atomic
def order_hold_approve(*, order_id: uuid.UUID, reason: str) -> Order:
    """Staff approved a held order (risk review): back to `reserved`, and its charge queued
    once this commits (the charge sweep picks it up if the queue is down). Raises
    Order.DoesNotExist, or InvalidOrderTransition when it is not held."""
    order = Order.objects.select_for_update().get(id=order_id)
    if order.status != OrderStatus.HELD:
        raise InvalidOrderTransition(current=order.status, target=OrderStatus.RESERVED)
    _order_transition(order, target=OrderStatus.RESERVED, reason=reason, actor="staff")
    _charge_when_committed([order.id])
    return order


@transaction.atomic
def order_hold_reject(*, order_id: uuid.UUID, reason: str) -> Order:
    """Staff rejected a held order (risk review): cancelled; inventory releases its stock on
    `orders.cancelled`. Raises as `order_hold_approve`."""
    order = Order.objects.select_for_update().get(id=order_id)
    if order.status != OrderStatus.HELD:
        raise InvalidOrderTransition(current=order.status, target=OrderStatus.CANCELLED)
    return _order_transition(order, target=OrderStatus.CANCELLED, reason=reason, actor="staff")


def _charge_when_committed(order_ids: Sequence[uuid.UUID]) -> None:
    ids = [str(order_id) for order_id in order_ids]

    def enqueue() -> None:
        # Imported here: the tasks module imports this one.
        from orders.tasks import orders_charge_awaiting

        try:
            orders_charge_awaiting.delay(ids)
        except Exception as exc:  # the broker is down: the periodic charge sweep gets them
            logger.warning("charge of %d order(s) not queued (the sweep will): %s", len(ids), exc)

    transaction.on_commit(enqueue)


@transaction.atomic
def order_ship(*, order_id: uuid.UUID, carrier: str = "") -> Order:
    """Staff: hand a paid order to the carrier; stock leaves on-hand when inventory sees
    `orders.shipped`."""
    order = Order.objects.select_for_update().get(id=order_id)
    status_transition_check(current=order.status, target=OrderStatus.SHIPPED)
    shipment = Shipment.objects.create(
        order=order,
        carrier=carrier or settings.ORDERS["DEFAULT_CARRIER"],
        tracking_number=f"TRK{uuid.uuid4().hex[:12].upper()}",
    )
    return _order_transition(order, target=OrderStatus.SHIPPED, actor="staff", shipment=shipment)


@transaction.atomic
def order_deliver(*, order_id: uuid.UUID) -> Order:
    """Staff: the carrier confirmed delivery."""
    order = Order.objects.select_for_update().get(id=order_id)
    status_transition_check(current=order.status, target=OrderStatus.DELIVERED)
    shipment = Shipment.objects.get(order=order)
    shipment.delivered_at = timezone.now()
    shipment.save(update_fields=["delivered_at"])
    return _order_transition(order, target=OrderStatus.DELIVERED, actor="staff", shipment=shipment)


def _reserved_may_expire(now: datetime) -> bool:
    """Reserved orders wait for their charge while the payment provider is out (the circuit
    breaker is not closed), and for one reserved timeout after it closed, while the charge
    sweep catches up: they are not stuck then, and do not expire."""
    breaker = payment_breaker().snapshot()
    if breaker.state is None:  # Redis unreadable: the breaker guards nothing either
        return True
    if breaker.state != BreakerState.CLOSED:
        return False
    grace = timedelta(seconds=settings.ORDERS["RESERVED_TIMEOUT_SECONDS"])
    return breaker.changed_at is None or breaker.changed_at < now - grace


def order_expire_stale(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Expire orders stuck in pending or reserved beyond their timeouts; each in its own
    transaction, re-checked under its row lock. Reserved orders are left alone while the
    payment provider is out (see `_reserved_may_expire`). Returns the expired order ids."""
    now = now or timezone.now()
    reserved = _reserved_may_expire(now)
    expired = []
    for order_id in list(order_list_stale(now=now, reserved=reserved).values_list("id", flat=True)):
        with transaction.atomic():
            # Re-checked under the lock: the order may have moved on since the scan.
            order = (
                order_list_stale(now=now, reserved=reserved)
                .select_for_update(of=("self",))
                .filter(id=order_id)
                .first()
            )
            if order is None:
                continue
            _order_transition(
                order,
                target=OrderStatus.EXPIRED,
                reason=f"no progress while {order.status}",
            )
            expired.append(order.id)
    return expired
