"""Stock changes. Every write locks the stock rows it touches in primary-key order, so
concurrent orders queue instead of overselling or deadlocking; the check constraints on
StockLevel catch anything that slips past."""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inventory.events import InventoryFailedV1, InventoryReservedV1, StockItem
from inventory.models import Product, Reservation, StockLevel
from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.sql import rows_update, rows_where_in


@dataclass(frozen=True)
class StockRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderStockRequest:
    """The stock one order asks for; `customer_id` and `causation_id` go into its report."""

    order_id: uuid.UUID
    items: Sequence[StockRequest]
    customer_id: int = 0
    causation_id: uuid.UUID | None = None

    def wanted(self) -> dict[str, int]:
        wanted: dict[str, int] = {}
        for item in self.items:
            wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
        return wanted


@dataclass(frozen=True)
class ReservationOutcome:
    reserved: bool
    reason: str = ""
    short_skus: tuple[str, ...] = ()


def _locked_stock(product_ids: Iterable[int]) -> dict[int, StockLevel]:
    # Ordered locking, all rows in one statement: two batches touching the same products
    # always lock them in the same sequence, so they queue instead of deadlocking.
    rows = rows_where_in(StockLevel, "product", product_ids, lock=True)
    return {row.product_id: row for row in rows}


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def stock_reserve_for_orders(*, orders: Sequence[OrderStockRequest]) -> list[ReservationOutcome]:
    """Reserve every line of each order, or nothing of it, deciding order by order in the
    given order (offset order): a constant number of queries however many orders.

    An order that already has reservations is reported reserved again without reserving
    twice (a replayed event)."""
    order_ids = [order.order_id for order in orders]
    already = {row.order_id for row in rows_where_in(Reservation, "order_id", order_ids)}
    skus = {sku for order in orders for sku in order.wanted()}
    products = {p.sku: p for p in rows_where_in(Product, "sku", skus)}
    stock = _locked_stock(sorted(p.pk for p in products.values() if p.active))
    outcomes: list[ReservationOutcome] = []
    reservations: list[Reservation] = []
    touched: dict[int, StockLevel] = {}
    for order in orders:
        if order.order_id in already:
            outcomes.append(ReservationOutcome(reserved=True))
            continue
        wanted = order.wanted()
        unknown = sorted(sku for sku in wanted if sku not in products or not products[sku].active)
        if unknown:
            outcomes.append(
                ReservationOutcome(
                    reserved=False, reason="unknown_or_inactive", short_skus=tuple(unknown)
                )
            )
            continue
        short = sorted(
            sku
            for sku, quantity in wanted.items()
            if products[sku].pk not in stock or stock[products[sku].pk].available < quantity
        )
        if short:
            outcomes.append(
                ReservationOutcome(reserved=False, reason="out_of_stock", short_skus=tuple(short))
            )
            continue
        for sku, quantity in wanted.items():
            row = stock[products[sku].pk]
            row.reserved += quantity
            touched[row.pk] = row
            reservations.append(
                Reservation(order_id=order.order_id, product=products[sku], quantity=quantity)
            )
        already.add(order.order_id)  # the same order twice in a batch reserves once
        outcomes.append(ReservationOutcome(reserved=True))
    _stock_save(touched.values())
    Reservation.objects.bulk_create(reservations)
    return outcomes


def stock_reserve_for_order(
    *, order_id: uuid.UUID, items: Sequence[StockRequest]
) -> ReservationOutcome:
    """Reserve one order's stock: see `stock_reserve_for_orders`."""
    (outcome,) = stock_reserve_for_orders(orders=[OrderStockRequest(order_id, items)])
    return outcome


def _stock_save(rows: Iterable[StockLevel]) -> None:
    """Write locked rows back in one UPDATE (absolute values are safe: we hold the locks;
    the check constraints still catch any mistake)."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    for row in rows:
        row.updated_at = now
    rows_update(StockLevel, rows, ["on_hand", "reserved", "updated_at"])


def _reservations_settle(*, order_ids: Sequence[uuid.UUID], status: str, consume: bool) -> int:
    """Close the active reservations of these orders: units go back to available (release)
    or leave on-hand stock (consume, at shipping). Idempotent: closed ones are skipped."""
    reservations = list(
        Reservation.objects.select_for_update()
        .filter(order_id__in=order_ids, status=Reservation.Status.ACTIVE)
        .order_by("pk")
    )
    if not reservations:
        return 0
    stock = _locked_stock(sorted({r.product_id for r in reservations}))
    for reservation in reservations:
        row = stock[reservation.product_id]
        row.reserved -= reservation.quantity
        if consume:
            row.on_hand -= reservation.quantity
    _stock_save(stock.values())
    Reservation.objects.filter(pk__in=[r.pk for r in reservations]).update(
        status=status, updated_at=timezone.now()
    )
    return len(reservations)


@transaction.atomic
def stock_release_for_orders(*, order_ids: Sequence[uuid.UUID]) -> int:
    """Give back the active reservations of these orders; return how many were released."""
    return _reservations_settle(
        order_ids=order_ids, status=Reservation.Status.RELEASED, consume=False
    )


@transaction.atomic
def stock_commit_for_orders(*, order_ids: Sequence[uuid.UUID]) -> int:
    """Shipping consumes the reservations: on-hand and reserved both drop."""
    return _reservations_settle(
        order_ids=order_ids, status=Reservation.Status.COMMITTED, consume=True
    )


def stock_release_for_order(*, order_id: uuid.UUID) -> int:
    return stock_release_for_orders(order_ids=[order_id])


def stock_commit_for_order(*, order_id: uuid.UUID) -> int:
    return stock_commit_for_orders(order_ids=[order_id])


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


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def stock_reserve_for_orders_and_report(
    *, orders: Sequence[OrderStockRequest]
) -> list[ReservationOutcome]:
    """Reserve orders' stock and record `inventory.reserved` or `inventory.failed` for each."""
    outcomes = stock_reserve_for_orders(orders=orders)
    events = []
    for order, outcome in zip(orders, outcomes, strict=True):
        data: InventoryReservedV1 | InventoryFailedV1
        if outcome.reserved:
            data = InventoryReservedV1(
                order_id=order.order_id,
                customer_id=order.customer_id,
                items=[StockItem(sku=i.sku, quantity=i.quantity) for i in order.items],
            )
        else:
            data = InventoryFailedV1(
                order_id=order.order_id,
                customer_id=order.customer_id,
                reason=outcome.reason,
                short_skus=list(outcome.short_skus),
            )
        events.append(
            NewEvent(
                event_type="inventory.reserved" if outcome.reserved else "inventory.failed",
                aggregate_id=str(order.order_id),
                key=str(order.customer_id),
                causation_id=order.causation_id,
                data=data,
            )
        )
    outbox_events_record(events)
    return outcomes


def stock_reserve_for_order_and_report(
    *, order_id: uuid.UUID, customer_id: int, items: Sequence[StockRequest], causation_id: uuid.UUID
) -> ReservationOutcome:
    (outcome,) = stock_reserve_for_orders_and_report(
        orders=[OrderStockRequest(order_id, items, customer_id, causation_id)]
    )
    return outcome
