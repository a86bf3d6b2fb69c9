"""Stock changes. Every write locks the stock rows it touches in primary-key order, so
concurrent orders queue instead of overselling or deadlocking; the check constraints on
StockLevel catch anything that slips past."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from inventory.models import Product, Reservation, StockLevel
from kafka_bridge.contracts import InventoryFailedV1, InventoryReservedV1, StockItem
from kafka_bridge.outbox import outbox_event_record


@dataclass(frozen=True)
class StockRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ReservationOutcome:
    reserved: bool
    reason: str = ""
    short_skus: tuple[str, ...] = ()


def _locked_stock(product_ids: Sequence[int]) -> dict[int, StockLevel]:
    # Ordered locking: two orders for the same products always lock in the same sequence.
    rows = StockLevel.objects.select_for_update().filter(product_id__in=product_ids).order_by("pk")
    return {row.product_id: row for row in rows}


@transaction.atomic
def stock_reserve_for_order(
    *, order_id: uuid.UUID, items: Sequence[StockRequest]
) -> ReservationOutcome:
    """Reserve every line of an order, or nothing. Calling it again for the same order
    returns the earlier outcome without reserving twice."""
    if Reservation.objects.filter(order_id=order_id).exists():
        return ReservationOutcome(reserved=True)
    wanted: dict[str, int] = {}
    for item in items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    products = {p.sku: p for p in Product.objects.filter(sku__in=wanted)}
    unknown = sorted(sku for sku in wanted if sku not in products or not products[sku].active)
    if unknown:
        return ReservationOutcome(
            reserved=False, reason="unknown_or_inactive", short_skus=tuple(unknown)
        )
    stock = _locked_stock([p.pk for p in products.values()])
    short = sorted(
        sku
        for sku, quantity in wanted.items()
        if products[sku].pk not in stock or stock[products[sku].pk].available < quantity
    )
    if short:
        return ReservationOutcome(reserved=False, reason="out_of_stock", short_skus=tuple(short))
    for sku, quantity in wanted.items():
        product = products[sku]
        StockLevel.objects.filter(pk=stock[product.pk].pk).update(reserved=F("reserved") + quantity)
        Reservation.objects.create(order_id=order_id, product=product, quantity=quantity)
    return ReservationOutcome(reserved=True)


def _reservations_settle(*, order_id: uuid.UUID, status: str, consume: bool) -> int:
    """Close an order's active reservations: units go back to available (release) or
    leave on-hand stock (consume, at shipping). Idempotent: closed ones are skipped."""
    reservations = list(
        Reservation.objects.select_for_update()
        .filter(order_id=order_id, status=Reservation.Status.ACTIVE)
        .order_by("product_id")
    )
    if not reservations:
        return 0
    _locked_stock([r.product_id for r in reservations])
    for reservation in reservations:
        quantity = reservation.quantity
        StockLevel.objects.filter(product_id=reservation.product_id).update(
            reserved=F("reserved") - quantity,
            on_hand=F("on_hand") - quantity if consume else F("on_hand"),
        )
        reservation.status = status
        reservation.save(update_fields=["status", "updated_at"])
    return len(reservations)


@transaction.atomic
def stock_release_for_order(*, order_id: uuid.UUID) -> int:
    """Give back the active reservations of an order; return how many were released."""
    return _reservations_settle(
        order_id=order_id, status=Reservation.Status.RELEASED, consume=False
    )


@transaction.atomic
def stock_commit_for_order(*, order_id: uuid.UUID) -> int:
    """Shipping consumes the reservation: on-hand and reserved both drop."""
    return _reservations_settle(
        order_id=order_id, status=Reservation.Status.COMMITTED, consume=True
    )


@transaction.atomic
def stock_restock(*, product: Product, quantity: int) -> StockLevel:
    """Add units to on-hand stock (a delivery from a supplier)."""
    if quantity <= 0:
        raise ValueError("restock quantity must be positive")
    StockLevel.objects.get_or_create(product=product)
    StockLevel.objects.filter(product=product).update(on_hand=F("on_hand") + quantity)
    return StockLevel.objects.get(product=product)


@transaction.atomic
def product_create(
    *, sku: str, name: str, price: object, on_hand: int = 0, active: bool = True
) -> Product:
    product = Product.objects.create(sku=sku, name=name, price=price, active=active)
    StockLevel.objects.create(product=product, on_hand=on_hand)
    return product


@transaction.atomic
def stock_reserve_for_order_and_report(
    *, order_id: uuid.UUID, customer_id: int, items: Sequence[StockRequest], causation_id: uuid.UUID
) -> ReservationOutcome:
    """Reserve an order's stock and record `inventory.reserved` or `inventory.failed`."""
    outcome = stock_reserve_for_order(order_id=order_id, items=items)
    if outcome.reserved:
        outbox_event_record(
            event_type="inventory.reserved",
            aggregate_id=str(order_id),
            key=str(customer_id),
            causation_id=causation_id,
            data=InventoryReservedV1(
                order_id=order_id,
                customer_id=customer_id,
                items=[StockItem(sku=i.sku, quantity=i.quantity) for i in items],
            ),
        )
    else:
        outbox_event_record(
            event_type="inventory.failed",
            aggregate_id=str(order_id),
            key=str(customer_id),
            causation_id=causation_id,
            data=InventoryFailedV1(
                order_id=order_id,
                customer_id=customer_id,
                reason=outcome.reason,
                short_skus=list(outcome.short_skus),
            ),
        )
    return outcome
