"""Sales per product per day and per-customer summaries, from the order events alone:
`read_models_apply` (consumer read_models, and the rebuild)."""

import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connection, models, transaction

from kafka_bridge.client import group_name
from kafka_bridge.contracts import Event
from kafka_bridge.services import processed_events_mark
from kafka_bridge.sql import rows_update
from orders.events import OrderCreatedV2, OrderStatusChangedV1
from orders.selectors import OrderStatus, order_status_moves
from reporting.models import (
    CustomerOrderSummary,
    OrderFacts,
    ProductDailySales,
    ReadModelState,
)

logger = logging.getLogger(__name__)


READ_MODELS_CONSUMER = "read_models"


def read_models_dedupe_prefix() -> str:
    return group_name(f"{READ_MODELS_CONSUMER}#g")


def read_models_dedupe_group(generation: int) -> str:
    """The ProcessedEvent group of one generation: an event is applied once per generation,
    by the live consumer or by the rebuild that filled it, never by both."""
    return f"{read_models_dedupe_prefix()}{generation}"


def read_models_generation_live(*, lock: bool = False) -> int:
    """The live generation. With `lock` (inside a transaction), a shared lock on it is held
    until the transaction ends: a swap waits for the batches that hold it, and they for it."""
    for _ in range(2):
        generation = _live_generation_select(lock=lock)
        if generation is not None:
            return generation
        ReadModelState.objects.bulk_create([ReadModelState(pk=1)], ignore_conflicts=True)
    raise ReadModelState.DoesNotExist("the read-model state row vanished")


def _live_generation_select(*, lock: bool) -> int | None:
    if lock and connection.vendor == "postgresql":
        table = connection.ops.quote_name(ReadModelState._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT live_generation FROM {table} WHERE id = 1 FOR SHARE")
            row = cursor.fetchone()
            return int(row[0]) if row else None
    # SQLite (make run) serialises every write transaction anyway.
    return ReadModelState.objects.filter(pk=1).values_list("live_generation", flat=True).first()


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def read_models_apply(*, events: Sequence[Event], generation: int | None = None) -> int:
    """Apply order events (orders.created and every orders.<status>), in the order given, to
    the read models of `generation` (default: the live one, locked shared). Each event is
    applied once per generation. Returns how many were new to it."""
    if generation is None:
        generation = read_models_generation_live(lock=True)
    new_ids = processed_events_mark(group=read_models_dedupe_group(generation), events=events)
    fresh = [event for event in events if event.event_id in new_ids]
    if fresh:
        _OrderEventsApplication(generation).apply(fresh)
    return len(fresh)


@dataclass
class _SalesChange:
    units_sold: int = 0
    revenue: Decimal = Decimal("0")
    units_refunded: int = 0
    refunds: Decimal = Decimal("0")


@dataclass
class _CustomerChange:
    currency: str = ""
    orders_placed: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    lifetime_value: Decimal = Decimal("0")
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None


SalesKey = tuple[date, str, str]  # day, sku, currency


class _OrderEventsApplication:
    """One batch of order events against one generation, in a constant number of queries:
    the orders' facts are locked and read once, the changes to sales and customer rows are
    summed in memory and written once.

    An order counts as sold on the day it is paid, and as refunded on the day a paid order
    is cancelled (cancelling a paid order refunds it). An event the order status machine
    does not allow from the status the read models know (a replayed dead letter arriving out
    of order, say) is ignored with a warning, as the orders consumer would."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.sales: dict[SalesKey, _SalesChange] = defaultdict(_SalesChange)
        self.customers: dict[int, _CustomerChange] = defaultdict(_CustomerChange)

    def apply(self, events: Sequence[Event]) -> None:
        order_ids = {event.payload.order_id for event in events}  # type: ignore[attr-defined]
        facts = {
            fact.order_id: fact
            for fact in OrderFacts.objects.select_for_update()
            .filter(generation=self.generation, order_id__in=order_ids)
            .order_by("pk")
        }
        created: dict[uuid.UUID, OrderFacts] = {}
        moved: dict[uuid.UUID, OrderFacts] = {}
        for event in events:
            payload = event.payload
            if isinstance(payload, OrderCreatedV2):
                if payload.order_id in facts:
                    logger.warning("read models: order %s created twice; ignored", payload.order_id)
                    continue
                fact = self._placed(payload, at=event.envelope.occurred_at)
                facts[fact.order_id] = created[fact.order_id] = fact
            elif isinstance(payload, OrderStatusChangedV1):
                fact = facts.get(payload.order_id)
                if fact is None:
                    logger.warning(
                        "read models: %s for order %s, whose orders.created was never seen; "
                        "ignored",
                        event.event_type,
                        payload.order_id,
                    )
                    continue
                if self._moved(fact, payload.status, at=event.envelope.occurred_at):
                    moved.setdefault(fact.order_id, fact)
        OrderFacts.objects.bulk_create(created.values())
        rows_update(
            OrderFacts,
            [fact for order_id, fact in moved.items() if order_id not in created],
            ["status", "status_changed_at"],
        )
        self._sales_write()
        self._customers_write()

    def _placed(self, payload: OrderCreatedV2, *, at: datetime) -> OrderFacts:
        customer = self.customers[payload.customer_id]
        customer.currency = payload.currency
        customer.orders_placed += 1
        customer.by_status[OrderStatus.PENDING] += 1
        customer.first_order_at = _earliest(customer.first_order_at, at)
        customer.last_order_at = _latest(customer.last_order_at, at)
        return OrderFacts(
            generation=self.generation,
            order_id=payload.order_id,
            customer_id=payload.customer_id,
            currency=payload.currency,
            total=payload.total,
            lines=[item.model_dump(mode="json") for item in payload.items],
            status=OrderStatus.PENDING,
            placed_at=at,
            status_changed_at=at,
        )

    def _moved(self, fact: OrderFacts, target: str, *, at: datetime) -> bool:
        previous = fact.status
        if target not in order_status_moves().get(previous, ()):
            logger.warning(
                "read models: order %s cannot go from %s to %s; event ignored",
                fact.order_id,
                previous,
                target,
            )
            return False
        fact.status, fact.status_changed_at = target, at
        customer = self.customers[fact.customer_id]
        customer.currency = fact.currency
        customer.by_status[previous] -= 1
        customer.by_status[target] += 1
        day = at.astimezone(UTC).date()
        if target == OrderStatus.PAID:
            customer.lifetime_value += fact.total
            for sku, quantity, amount in _line_amounts(fact):
                change = self.sales[(day, sku, fact.currency)]
                change.units_sold += quantity
                change.revenue += amount
        elif target == OrderStatus.CANCELLED and previous == OrderStatus.PAID:
            customer.lifetime_value -= fact.total
            for sku, quantity, amount in _line_amounts(fact):
                change = self.sales[(day, sku, fact.currency)]
                change.units_refunded += quantity
                change.refunds += amount
        return True

    def _sales_write(self) -> None:
        keys = sorted(self.sales)
        rows = _rows_for_update(
            ProductDailySales,
            [
                {"generation": self.generation, "day": day, "sku": sku, "currency": currency}
                for day, sku, currency in keys
            ],
        )
        for row in rows:
            change = self.sales[(row.day, row.sku, row.currency)]
            row.units_sold += change.units_sold
            row.revenue += change.revenue
            row.units_refunded += change.units_refunded
            row.refunds += change.refunds
        rows_update(ProductDailySales, rows, ["units_sold", "revenue", "units_refunded", "refunds"])

    def _customers_write(self) -> None:
        rows = _rows_for_update(
            CustomerOrderSummary,
            [
                {"generation": self.generation, "customer_id": customer_id}
                for customer_id in sorted(self.customers)
            ],
            defaults={"currency": ""},
        )
        for row in rows:
            change = self.customers[row.customer_id]
            row.currency = row.currency or change.currency
            row.orders_placed += change.orders_placed
            by_status = Counter(row.orders_by_status)
            by_status.update(change.by_status)
            row.orders_by_status = {s: n for s, n in sorted(by_status.items()) if n}
            row.lifetime_value += change.lifetime_value
            row.first_order_at = _earliest(row.first_order_at, change.first_order_at)
            row.last_order_at = _latest(row.last_order_at, change.last_order_at)
        rows_update(
            CustomerOrderSummary,
            rows,
            [
                "currency",
                "orders_placed",
                "orders_by_status",
                "lifetime_value",
                "first_order_at",
                "last_order_at",
            ],
        )


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


def _latest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


def _line_amounts(fact: OrderFacts) -> Iterable[tuple[str, int, Decimal]]:
    for line in fact.lines:
        quantity = int(line["quantity"])
        yield line["sku"], quantity, Decimal(line["unit_price"]) * quantity


Row = TypeVar("Row", bound=models.Model)


def _rows_for_update(
    model: type[Row], lookups: Sequence[dict[str, Any]], *, defaults: dict[str, Any] | None = None
) -> list[Row]:
    """The rows with these unique lookups, created (with defaults) where missing, locked in
    primary-key order. Missing rows are inserted in the order given (sort the lookups), so
    concurrent batches never wait on each other in a cycle.

    The lock takes the rows matching every column's set of values: the rows wanted, plus,
    when lookups differ in more than one column, a few neighbours (a batch's sales rows
    mostly share their day and currency). One `IN` per column instead of an OR of a filter
    per row, whose construction cost more CPU than the query."""
    if not lookups:
        return []
    model.objects.bulk_create(
        [model(**lookup, **(defaults or {})) for lookup in lookups], ignore_conflicts=True
    )
    names = list(lookups[0])
    wanted = {tuple(lookup[name] for name in names) for lookup in lookups}
    locked = model.objects.select_for_update().filter(
        **{f"{name}__in": {lookup[name] for lookup in lookups} for name in names}
    )
    return [row for row in locked.order_by("pk") if tuple(getattr(row, n) for n in names) in wanted]
