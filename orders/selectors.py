import functools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, DurationField, Q, QuerySet

from common.circuit_breaker import BreakerSnapshot
from common.time_series import counts_per_minute
from kafka_bridge.models import ArchivedEvent, OutboxEvent
from kafka_bridge.outbox import aggregate_events
from kafka_bridge.sql import Columns, in_list_param, in_list_sql, rows_where_in
from orders.breaker import payment_breaker
from orders.events import ORDER_TRANSITION_EVENTS, ShippingAddress
from orders.models import Order, Payment
from orders.status import TRANSITIONS, OrderStatus, status_replay
from orders.status_feed import OrderStatusMove


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


def order_get(*, order_id: uuid.UUID) -> Order | None:
    """Any order, for staff."""
    return (
        Order.objects.select_related("payment", "shipment")
        .prefetch_related("lines")
        .filter(id=order_id)
        .first()
    )


def order_list_held() -> QuerySet[Order]:
    """Orders the risk check held, waiting for staff, oldest hold first."""
    return (
        Order.objects.filter(status=OrderStatus.HELD)
        .select_related("payment", "shipment")
        .prefetch_related("lines")
        .order_by("status_changed_at", "id")
    )


def order_list_stale(*, now: datetime, reserved: bool = True) -> QuerySet[Order]:
    """Orders stuck too long: pending (stock never answered) or, unless `reserved` is
    False, reserved (payment never came), by the timeouts in settings.ORDERS. Held orders
    wait for staff and are never stale."""
    pending_cutoff = now - timedelta(seconds=settings.ORDERS["PENDING_TIMEOUT_SECONDS"])
    reserved_cutoff = now - timedelta(seconds=settings.ORDERS["RESERVED_TIMEOUT_SECONDS"])
    stuck = Q(status=OrderStatus.PENDING, status_changed_at__lt=pending_cutoff)
    if reserved:
        stuck |= Q(status=OrderStatus.RESERVED, status_changed_at__lt=reserved_cutoff)
    return Order.objects.filter(stuck).order_by("status_changed_at")


def order_timeline(*, order_id: uuid.UUID) -> list[OutboxEvent | ArchivedEvent]:
    """Every event recorded about an order, oldest first: the saga as it happened (also
    once retention has pruned the outbox)."""
    return aggregate_events(aggregate_id=str(order_id))


def order_shipping_addresses(*, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ShippingAddress]:
    """Where each of these orders ships, for those that ship somewhere (one statement,
    written once per process: every notifications batch reads it)."""
    return {
        order.id: ShippingAddress.model_validate(order.shipping_address)
        for order in rows_where_in(Order, "id", set(order_ids))
        if order.shipping_address is not None
    }


def order_list_awaiting_charge(*, order_ids: Sequence[uuid.UUID]) -> list[Order]:
    """Those of these orders that are reserved and have no payment yet, in primary-key
    order: one statement written once per process (the orders group asks before every
    charge, and compiling the queryset's join cost more CPU than running it)."""
    columns, sql = _awaiting_charge_statement(connection.vendor)
    params = [in_list_param(Order._meta.get_field("id"), order_ids), OrderStatus.RESERVED.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [columns.instance(Order, row) for row in cursor.fetchall()]


@functools.cache
def _awaiting_charge_statement(vendor: str) -> tuple[Columns, str]:
    quote = connection.ops.quote_name
    orders, payments = quote(Order._meta.db_table), quote(Payment._meta.db_table)
    columns = Columns("o", Order._meta.concrete_fields)
    sql = (
        f"SELECT {', '.join(columns.sql())} FROM {orders} o "
        f"WHERE o.id {in_list_sql('%s', vendor)} AND o.status = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {payments} p WHERE p.order_id = o.id) ORDER BY o.id"
    )
    return columns, sql


def order_list_charge_overdue(*, now: datetime, limit: int) -> list[uuid.UUID]:
    """Reserved orders that have waited longer than PAYMENTS_CHARGE_RETRY_AFTER_SECONDS for a
    charge (the circuit breaker held it back, or the provider did not answer), oldest first.
    A charge normally follows the reservation within the same batch."""
    cutoff = now - timedelta(seconds=settings.PAYMENTS["CHARGE_RETRY_AFTER_SECONDS"])
    return list(
        Order.objects.filter(
            status=OrderStatus.RESERVED, payment__isnull=True, status_changed_at__lt=cutoff
        )
        .order_by("status_changed_at")
        .values_list("id", flat=True)[:limit]
    )


@dataclass(frozen=True)
class PaymentCircuit:
    """The payment circuit breaker as Redis has it, and the orders waiting for a charge."""

    breaker: BreakerSnapshot
    fail_max: int
    reset_timeout_seconds: float
    orders_waiting: int  # reserved without a payment for longer than the sweep waits


def payment_circuit(*, now: datetime) -> PaymentCircuit:
    breaker = payment_breaker()
    cutoff = now - timedelta(seconds=settings.PAYMENTS["CHARGE_RETRY_AFTER_SECONDS"])
    waiting = Order.objects.filter(
        status=OrderStatus.RESERVED, payment__isnull=True, status_changed_at__lt=cutoff
    ).count()
    return PaymentCircuit(breaker.snapshot(), breaker.fail_max, breaker.reset_timeout, waiting)


def payment_list_refundable(*, order_ids: Sequence[uuid.UUID]) -> QuerySet[Payment]:
    """Captured payments of these orders."""
    return Payment.objects.filter(order_id__in=order_ids, status=Payment.Status.CAPTURED)


ORDER_EVENT_TYPES = ("orders.created", *ORDER_TRANSITION_EVENTS)


@dataclass(frozen=True)
class OrderHistoryDisagreement:
    order_id: uuid.UUID
    stored_status: str
    events_status: str | None
    event_types: tuple[str, ...]
    problem: str = ""

    def __str__(self) -> str:
        said = f"its events say {self.events_status}" if self.events_status else "no events"
        problem = f"; {self.problem}" if self.problem else ""
        events = ", ".join(self.event_types) or "-"
        return f"order {self.order_id}: stored {self.stored_status}, {said}{problem} ({events})"


def order_history_disagreements(
    *, batch_size: int = 1000, progress: Callable[[int], None] | None = None
) -> Iterator[OrderHistoryDisagreement]:
    """Every order whose stored status is not the one its events lead to (or whose events
    break the status machine), rebuilt from the order events the system recorded: the
    outbox, and what retention archived. `progress(n)` is told of each n orders checked."""
    batch: list[tuple[uuid.UUID, str]] = []
    for row in Order.objects.order_by("pk").values_list("id", "status").iterator(batch_size):
        batch.append(row)
        if len(batch) == batch_size:
            yield from _history_check(batch)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        yield from _history_check(batch)
        if progress:
            progress(len(batch))


def _history_check(orders: list[tuple[uuid.UUID, str]]) -> Iterator[OrderHistoryDisagreement]:
    ids = [str(order_id) for order_id, _ in orders]
    recorded = [
        *OutboxEvent.objects.filter(
            aggregate_id__in=ids, event_type__in=ORDER_EVENT_TYPES
        ).values_list("aggregate_id", "id", "event_id", "event_type"),
        *ArchivedEvent.objects.filter(
            aggregate_id__in=ids, event_type__in=ORDER_EVENT_TYPES
        ).values_list("aggregate_id", "outbox_id", "event_id", "event_type"),
    ]
    history: dict[str, list[str]] = {}
    seen: set[uuid.UUID] = set()
    for aggregate_id, _, event_id, event_type in sorted(recorded, key=lambda r: (r[0], r[1])):
        if event_id in seen:  # a replayed dead letter is recorded again, same event id
            continue
        seen.add(event_id)
        history.setdefault(aggregate_id, []).append(event_type)
    for order_id, stored in orders:
        event_types = tuple(history.get(str(order_id), ()))
        replay = status_replay(event_types)
        if replay.status != stored or replay.problem:
            yield OrderHistoryDisagreement(
                order_id, stored, replay.status, event_types, replay.problem
            )


def orders_count_by_status() -> list[tuple[str, str, int]]:
    """(status, label, orders) for every status, zeros included, in the saga's order."""
    counts = dict(Order.objects.order_by().values_list("status").annotate(n=Count("id")))
    return [(status.value, status.label, counts.get(status.value, 0)) for status in OrderStatus]


def orders_placed_per_minute(*, since: datetime) -> dict[datetime, int]:
    """Orders placed in each minute from `since` (UTC minutes; minutes without any absent)."""
    return counts_per_minute(Order.objects.all(), since=since)


def order_status_moves() -> dict[str, frozenset[str]]:
    """Every order status → the statuses it may move to (the machine in orders/status.py),
    for apps that follow orders through their events."""
    return TRANSITIONS


def order_status_now(
    *, order_id: uuid.UUID, customer: AbstractBaseUser | None = None
) -> OrderStatusMove | None:
    """The order's status as its latest move (None: no such order, or, with `customer`,
    none of theirs)."""
    orders = Order.objects.filter(id=order_id)
    if customer is not None:
        orders = orders.filter(customer=customer)
    row = orders.values_list("status", "status_reason", "status_seq", "status_changed_at").first()
    if row is None:
        return None
    status, reason, seq, at = row
    return OrderStatusMove(order_id=order_id, seq=seq, status=status, reason=reason, at=at)


def order_status_moves_after(*, order_id: uuid.UUID, seq: int) -> list[OrderStatusMove]:
    """The order's moves numbered above `seq`, oldest first, ending with its status now
    (empty if it has not moved past `seq`, or does not exist).

    The moves before the latest are rebuilt from the order's events (the outbox and its
    archive): the n-th of its `orders.created` / `orders.<status>` events is its n-th
    status. Reasons come from the events' payloads; retention keeps no payload, so an
    archived move has none. If the events do not add up to the order's number of moves,
    only the latest is returned: a gap, never a move told twice."""
    now = order_status_now(order_id=order_id)
    if now is None or now.seq <= seq:
        return []
    if now.seq == seq + 1:
        return [now]
    history = _order_status_history(order_id)
    if len(history) != now.seq or history[-1].status != now.status:
        return [now]
    return [*history[seq:-1], now]


def _order_status_history(order_id: uuid.UUID) -> list[OrderStatusMove]:
    aggregate_id = str(order_id)
    recorded = [
        (outbox_id, event_id, event_type, at, None)
        for outbox_id, event_id, event_type, at in ArchivedEvent.objects.filter(
            aggregate_id=aggregate_id, event_type__in=ORDER_EVENT_TYPES
        ).values_list("outbox_id", "event_id", "event_type", "created_at")
    ] + list(
        OutboxEvent.objects.filter(
            aggregate_id=aggregate_id, event_type__in=ORDER_EVENT_TYPES
        ).values_list("id", "event_id", "event_type", "created_at", "value")
    )
    moves: list[OrderStatusMove] = []
    seen: set[uuid.UUID] = set()
    for _, event_id, event_type, at, value in sorted(recorded, key=lambda row: row[0]):
        if event_id in seen:  # a replayed dead letter is recorded again, same event id
            continue
        seen.add(event_id)
        reason = ""
        if value is not None:
            reason = json.loads(bytes(value)).get("data", {}).get("reason", "")
        status = (
            OrderStatus.PENDING
            if event_type == "orders.created"
            else event_type.removeprefix("orders.")
        )
        moves.append(OrderStatusMove(order_id, len(moves) + 1, status, reason, at))
    return moves


# --- reads for the risk check (risk.services) ------------------------------------------------


@dataclass(frozen=True)
class OrderRiskFacts:
    """An order as the risk check and its rules see it (risk.rules)."""

    order_id: uuid.UUID
    customer_id: int
    total: Decimal
    created_at: datetime
    payment_token: str = ""
    country: str = ""  # ISO code of the shipping address; "" when the order ships nowhere


@dataclass(frozen=True)
class PaidOrder:
    created_at: datetime
    total: Decimal
    country: str


@dataclass(frozen=True)
class OrderRiskHistory:
    """What came before an order, as of its creation (the counts include the order)."""

    customer_orders: int  # its customer's, within the customer window
    token_orders: int  # with its payment token, anyone's, within the token window (0: no token)
    customer_declined: int  # its customer's declined charges since `declined_since`
    token_declined: int  # its payment token's declined charges since then (0: no token)
    paid: tuple[PaidOrder, ...]  # its customer's latest paid orders before it, newest first


def order_list_risk_facts(
    *,
    order_ids: Sequence[uuid.UUID],
    customer_window: timedelta,
    token_window: timedelta,
    declined_since: datetime,
    paid_orders: int,
) -> list[tuple[OrderRiskFacts, OrderRiskHistory]]:
    """Those of these orders that are reserved (so not yet charged), in the order asked, as
    the risk check sees them, each with what came before it; `paid_orders` is how many of
    its customer's earlier paid orders to read (the latest; a charge captured and not
    refunded).

    The orders consumer runs this for every batch, however small, so it is one statement
    written once per process: the six querysets it replaces cost over ten times its CPU
    for a batch of one."""
    if not order_ids:
        return []
    statement = _risk_read_statement(connection.vendor)
    prepare = Order._meta.get_field("created_at").get_db_prep_value
    params: dict[str, Any] = {
        "reserved": OrderStatus.RESERVED.value,
        "captured": Payment.Status.CAPTURED.value,
        "failed": Payment.Status.FAILED.value,
        "customer_window": _DURATION.get_db_prep_value(customer_window, connection),
        "token_window": _DURATION.get_db_prep_value(token_window, connection),
        "declined_since": prepare(declined_since, connection),
        # How many earlier paid orders come before the oldest one to read, newest first
        # (orders placed at the same instant as that one come too, and are cut below).
        "paid_offset": max(paid_orders, 1) - 1,
    }
    params["ids"] = in_list_param(Order._meta.get_field("id"), order_ids)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        rows = cursor.fetchall()
    facts: dict[uuid.UUID, OrderRiskFacts] = {}
    counts: dict[uuid.UUID, tuple[int, int, int, int]] = {}
    paid: dict[int, list[PaidOrder]] = {}  # by customer, newest first
    for row in rows:
        order_id, customer_id, total, created_at, token, address = statement.order.values(row[:6])
        if row[6] is None:  # a paid order of a customer of the batch (before one of its orders)
            paid.setdefault(customer_id, []).append(PaidOrder(created_at, total, row[10] or ""))
        else:
            country = (address or {}).get("country") or ""
            facts[order_id] = OrderRiskFacts(
                order_id, customer_id, total, created_at, token or "", country
            )
            counts[order_id] = row[6:10]
    for history in paid.values():
        history.sort(key=lambda p: p.created_at, reverse=True)
    read = []
    for order_id in dict.fromkeys(order_ids):
        if order_id in facts:
            order = facts[order_id]
            customer_paid = paid.get(order.customer_id, ())
            earlier = [p for p in customer_paid if p.created_at < order.created_at]
            history = OrderRiskHistory(*counts[order_id], paid=tuple(earlier[:paid_orders]))
            read.append((order, history))
    return read


_DURATION = DurationField()


@dataclass(frozen=True)
class _RiskRead:
    sql: str
    # Every row's first six columns: an order asked about (a facts row, its four counts
    # after them), or a paid order of one of their customers (customer, total and
    # creation; its country in the last column).
    order: Columns


@functools.cache
def _risk_read_statement(vendor: str) -> _RiskRead:
    """The orders' facts with their counts, then their customers' earlier paid orders.

    Every count and every paid order is relative to the order's own creation, so that a
    redelivered or reordered event counts the same. The paid orders are bounded by each
    order's `paid_from`: the creation of the last one to read (OFFSET), or of the
    customer's first order when there are fewer; so an index range on (customer,
    created_at) reads them, however long the customer's history. They are read once per
    customer of the batch (from its orders' earliest `paid_from` to its latest order), not
    once per order: a batch holding many orders of one customer reads its history once."""
    quote = connection.ops.quote_name
    orders, payments = quote(Order._meta.db_table), quote(Payment._meta.db_table)
    ids = in_list_sql("%(ids)s", vendor)
    # Of a paid order only its country is read, never its whole address document.
    country = (
        "h.shipping_address ->> 'country'"
        if vendor == "postgresql"
        else "json_extract(h.shipping_address, '$.country')"
    )
    customer_from = _minus("f.created_at", "%(customer_window)s")
    token_from = _minus("f.created_at", "%(token_window)s")
    sql = f"""
        WITH f AS (
            SELECT o.id, o.customer_id, o.total, o.created_at, o.payment_token,
                o.shipping_address,
                COALESCE(
                    (SELECT h.created_at FROM {orders} h JOIN {payments} p ON p.order_id = h.id
                     WHERE h.customer_id = o.customer_id AND h.created_at < o.created_at
                        AND p.status = %(captured)s
                     ORDER BY h.created_at DESC LIMIT 1 OFFSET %(paid_offset)s),
                    (SELECT MIN(h.created_at) FROM {orders} h WHERE h.customer_id = o.customer_id)
                ) AS paid_from
            FROM {orders} o WHERE o.id {ids} AND o.status = %(reserved)s
        )
        SELECT f.id, f.customer_id, f.total, f.created_at, f.payment_token, f.shipping_address,
            (SELECT COUNT(*) FROM {orders} h
             WHERE h.customer_id = f.customer_id
                AND h.created_at > {customer_from} AND h.created_at <= f.created_at),
            (SELECT COUNT(*) FROM {orders} h
             WHERE h.payment_token = f.payment_token AND h.payment_token <> ''
                AND h.created_at > {token_from} AND h.created_at <= f.created_at),
            (SELECT COUNT(*) FROM {orders} h JOIN {payments} p ON p.order_id = h.id
             WHERE h.customer_id = f.customer_id
                AND p.status = %(failed)s AND p.created_at >= %(declined_since)s),
            (SELECT COUNT(*) FROM {orders} h JOIN {payments} p ON p.order_id = h.id
             WHERE h.payment_token = f.payment_token AND h.payment_token <> ''
                AND p.status = %(failed)s AND p.created_at >= %(declined_since)s),
            NULL
        FROM f
        UNION ALL
        SELECT NULL, c.customer_id, h.total, h.created_at, NULL, NULL,
            NULL, NULL, NULL, NULL, {country}
        FROM (
            SELECT customer_id, MIN(paid_from) AS paid_from, MAX(created_at) AS until
            FROM f GROUP BY customer_id
        ) c
        JOIN {orders} h ON h.customer_id = c.customer_id
            AND h.created_at >= c.paid_from AND h.created_at < c.until
        JOIN {payments} p ON p.order_id = h.id AND p.status = %(captured)s
    """
    fields = ["id", "customer", "total", "created_at", "payment_token", "shipping_address"]
    return _RiskRead(
        sql=" ".join(sql.split()),
        order=Columns("o", [Order._meta.get_field(name) for name in fields]),
    )


def _minus(column: str, duration: str) -> str:
    """`column - duration` in the backend's SQL (SQLite has no interval type: Django gives it
    a function, and the duration as microseconds)."""
    if connection.features.has_native_duration_field:
        return f"{column} - {duration}"
    duration = connection.ops.format_for_duration_arithmetic(duration)
    return connection.ops.combine_duration_expression("-", [column, duration])
