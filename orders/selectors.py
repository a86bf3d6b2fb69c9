import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from common.circuit_breaker import BreakerSnapshot
from common.time_series import counts_per_minute
from kafka_bridge.models import ArchivedEvent, OutboxEvent
from kafka_bridge.outbox import aggregate_events
from orders.breaker import payment_breaker
from orders.events import ORDER_TRANSITION_EVENTS
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


def order_list_awaiting_charge(*, order_ids: Sequence[uuid.UUID]) -> QuerySet[Order]:
    """Those of these orders that are reserved and have no payment yet."""
    return Order.objects.filter(
        id__in=order_ids, status=OrderStatus.RESERVED, payment__isnull=True
    ).only("id", "total", "currency", "payment_token")


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


def order_list_risk_facts(*, order_ids: Sequence[uuid.UUID]) -> list[OrderRiskFacts]:
    """Those of these orders that are reserved (so not yet charged), as the risk check
    sees them."""
    rows = Order.objects.filter(id__in=order_ids, status=OrderStatus.RESERVED).values_list(
        "id", "customer_id", "total", "created_at", "payment_token", "shipping_address__country"
    )
    return [
        OrderRiskFacts(order_id, customer_id, total, created_at, token or "", country or "")
        for order_id, customer_id, total, created_at, token, country in rows
    ]


def order_times_by_customer(
    *, customer_ids: Iterable[int], since: datetime
) -> dict[int, list[datetime]]:
    """When each of these customers placed orders, from `since` on, oldest first."""
    times: dict[int, list[datetime]] = {}
    rows = (
        Order.objects.filter(customer_id__in=set(customer_ids), created_at__gte=since)
        .order_by("created_at")
        .values_list("customer_id", "created_at")
    )
    for customer_id, created_at in rows:
        times.setdefault(customer_id, []).append(created_at)
    return times


def order_times_by_payment_token(
    *, tokens: Iterable[str], since: datetime
) -> dict[str, list[datetime]]:
    """When orders paid with each of these tokens were placed, from `since` on, by anyone,
    oldest first."""
    wanted = {token for token in tokens if token}
    times: dict[str, list[datetime]] = {}
    if not wanted:
        return times
    rows = (
        Order.objects.filter(payment_token__in=wanted, created_at__gte=since)
        .order_by("created_at")
        .values_list("payment_token", "created_at")
    )
    for token, created_at in rows:
        times.setdefault(token, []).append(created_at)
    return times


@dataclass(frozen=True)
class DeclinedCharges:
    by_customer: dict[int, int]
    by_token: dict[str, int]


def declined_charges_since(
    *, customer_ids: Iterable[int], tokens: Iterable[str], since: datetime
) -> DeclinedCharges:
    """How many charges the provider declined from `since` on, for each of these customers
    and each of these payment tokens (one query)."""
    customers, wanted = set(customer_ids), {token for token in tokens if token}
    rows = (
        Payment.objects.filter(status=Payment.Status.FAILED, created_at__gte=since)
        .filter(Q(order__customer_id__in=customers) | Q(order__payment_token__in=wanted))
        .values_list("order__customer_id", "order__payment_token")
    )
    by_customer: dict[int, int] = {}
    by_token: dict[str, int] = {}
    for customer_id, token in rows:
        if customer_id in customers:
            by_customer[customer_id] = by_customer.get(customer_id, 0) + 1
        if token in wanted:
            by_token[token] = by_token.get(token, 0) + 1
    return DeclinedCharges(by_customer, by_token)


@dataclass(frozen=True)
class PaidOrder:
    created_at: datetime
    total: Decimal
    country: str


def paid_orders_by_customer(
    *, customer_ids: Iterable[int], latest: int
) -> dict[int, list[PaidOrder]]:
    """The latest `latest` orders of each of these customers whose charge was captured (and
    not refunded), newest first: one query, however long their histories."""
    rows = (
        Payment.objects.filter(
            status=Payment.Status.CAPTURED, order__customer_id__in=set(customer_ids)
        )
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("order__customer_id")],
                order_by=F("order__created_at").desc(),
            )
        )
        .filter(rank__lte=latest)
        .values_list(
            "order__customer_id",
            "order__created_at",
            "order__total",
            "order__shipping_address__country",
        )
    )
    paid: dict[int, list[PaidOrder]] = {}
    for customer_id, created_at, total, country in rows:
        paid.setdefault(customer_id, []).append(PaidOrder(created_at, total, country or ""))
    for orders in paid.values():
        orders.sort(key=lambda order: order.created_at, reverse=True)
    return paid
