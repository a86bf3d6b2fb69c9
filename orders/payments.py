"""The payment step of the order saga: a gateway interface, a deterministic fake
provider for development and tests, and the charge/refund services.

A charge is idempotent per order twice over: we never create a second Payment for an
order, and the gateway call carries an idempotency key (`order-<id>-charge`) so that a
retry after a crash between the provider's answer and our commit moves no money twice.

Charges go through a circuit breaker shared by every process (orders/breaker.py): once the
provider has failed FAIL_MAX times in a row, charges are not attempted and their orders
wait in `reserved` until the charge sweep (`payment_charges_retry`, Celery beat) finds the
breaker closed again.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, partial
from typing import Protocol, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from common.circuit_breaker import CircuitOpen
from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.sql import rows_where_in
from orders.breaker import payment_breaker
from orders.events import (
    PaymentFailedV1,
    PaymentProcessedV1,
    PaymentRefundDueV1,
    PaymentRefundedV1,
)
from orders.metrics import payment_charges_count_on_commit
from orders.models import FakeGatewayTransaction, Order, Payment
from orders.selectors import (
    order_list_awaiting_charge,
    order_list_charge_overdue,
    payment_list_refundable,
)
from orders.services import OrderChange, orders_apply_changes
from orders.status import OrderStatus

K = TypeVar("K")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayResult:
    succeeded: bool
    reference: str
    decline_reason: str = ""


class GatewayUnavailable(Exception):
    """The provider did not answer; the call is safe to retry with the same key."""


# What the circuit breaker counts as the provider failing: no answer, or none in time (a
# real provider's client raises TimeoutError or ConnectionError). A decline is an answer.
GATEWAY_OUTAGES: tuple[type[Exception], ...] = (GatewayUnavailable, TimeoutError, ConnectionError)


def _gateway_failed(answer: object) -> bool:
    return isinstance(answer, GATEWAY_OUTAGES)


class PaymentGateway(Protocol):
    name: str

    def charge(
        self, *, amount: Decimal, currency: str, token: str, idempotency_key: str
    ) -> GatewayResult: ...

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayResult: ...


class FakePaymentGateway:
    """Deterministic provider: declines marked tokens and amounts above a limit.

    Rules come from settings.PAYMENTS["OPTIONS"]: `decline_above` (amount), and the
    tokens `decline_token` (card declined) and `unavailable_token` (provider down: raises
    GatewayUnavailable, a transient error). While a file exists at `outage_file` the
    provider is down for every charge (an outage drill: create it, delete it to recover).
    `latency_ms` makes every call take that long, as a real provider's network round trip
    does. Its ledger is FakeGatewayTransaction.
    """

    name = "fake"

    def __init__(
        self,
        *,
        decline_above: str | None = None,
        decline_token: str = "tok_decline",
        unavailable_token: str = "tok_unavailable",
        latency_ms: int = 0,
        outage_file: str = "",
    ) -> None:
        self.decline_above = Decimal(decline_above) if decline_above else None
        self.decline_token = decline_token
        self.unavailable_token = unavailable_token
        self.latency_seconds = latency_ms / 1000
        self.outage_file = outage_file

    def _record(
        self, *, key: str, kind: str, amount: Decimal, currency: str, decline_reason: str
    ) -> GatewayResult:
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        # One statement, in autocommit: the first call with a key writes the ledger row, a
        # repeat gets that row back (a no-op `DO UPDATE`, so RETURNING sees it). The
        # get_or_create it replaces cost four round trips and a transaction per call.
        ledger = FakeGatewayTransaction._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ledger} (idempotency_key, kind, reference, amount, currency,"
                " succeeded, decline_reason, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (idempotency_key)"
                " DO UPDATE SET idempotency_key = excluded.idempotency_key"
                " RETURNING succeeded, reference, decline_reason",
                [
                    key,
                    kind,
                    f"fake_{kind}_{uuid.uuid4().hex[:12]}",
                    connection.ops.adapt_decimalfield_value(amount, 18, 2),
                    currency,
                    not decline_reason,
                    decline_reason,
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                ],
            )
            succeeded, reference, recorded_reason = cursor.fetchone()
        return GatewayResult(
            succeeded=bool(succeeded), reference=reference, decline_reason=recorded_reason
        )

    def charge(
        self, *, amount: Decimal, currency: str, token: str, idempotency_key: str
    ) -> GatewayResult:
        if token == self.unavailable_token:
            raise GatewayUnavailable("fake provider is unavailable for this token")
        if self.outage_file and os.path.exists(self.outage_file):
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            raise GatewayUnavailable(f"fake provider is down ({self.outage_file} exists)")
        reason = ""
        if token == self.decline_token:
            reason = "card_declined"
        elif self.decline_above is not None and amount > self.decline_above:
            reason = "amount_above_limit"
        return self._record(
            key=idempotency_key,
            kind=FakeGatewayTransaction.Kind.CHARGE,
            amount=amount,
            currency=currency,
            decline_reason=reason,
        )

    def refund(
        self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> GatewayResult:
        return self._record(
            key=idempotency_key,
            kind=FakeGatewayTransaction.Kind.REFUND,
            amount=amount,
            currency=currency,
            decline_reason="",
        )


@cache
def payment_gateway() -> PaymentGateway:
    """The configured provider (settings.PAYMENTS["GATEWAY"], dotted path + OPTIONS)."""
    gateway_class = import_string(settings.PAYMENTS["GATEWAY"])
    return gateway_class(**settings.PAYMENTS["OPTIONS"])


# --- calling the provider: concurrent, and never inside a database transaction -----------

GatewayAnswer = GatewayResult | Exception
_pool: ThreadPoolExecutor | None = None


def _gateway_pool() -> ThreadPoolExecutor:
    # One pool per process, reused: its threads (and the database connections the fake
    # provider's ledger uses in them) live as long as the process.
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=settings.PAYMENTS["MAX_CONCURRENCY"], thread_name_prefix="gateway"
        )
    return _pool


def gateway_pool_shutdown() -> None:
    """Stop the pool's threads (their database connections close with them)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _gateway_call(call: Callable[[], GatewayResult]) -> GatewayAnswer:
    try:
        return call()
    except Exception as exc:  # an answer like any other: the recording step decides
        return exc


def gateway_calls(calls: Mapping[K, Callable[[], GatewayResult]]) -> dict[K, GatewayAnswer]:
    """Make provider calls, at most PAYMENTS_MAX_CONCURRENCY at once, and return each
    answer (a result, or the exception it raised).

    Provider calls take 100 to 500 ms: made while a transaction is open they would hold row
    locks and a connection across the network, so that is refused outright."""
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("payment provider calls must not run inside a database transaction")
    if len(calls) <= 1:
        return {key: _gateway_call(call) for key, call in calls.items()}
    answers = _gateway_pool().map(_gateway_call, calls.values())
    return dict(zip(calls.keys(), answers, strict=True))


def _raise_if_failed(answer: GatewayAnswer) -> GatewayResult:
    if isinstance(answer, Exception):
        raise answer
    return answer


# --- charge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentCause:
    order_id: uuid.UUID
    causation_id: uuid.UUID | None = None


def _charge_key(order_id: uuid.UUID) -> str:
    return f"order-{order_id}-charge"


def payment_charges_request(*, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, GatewayAnswer]:
    """Ask the provider to charge every order among these that is reserved and has no
    payment yet, through the circuit breaker; no transaction may be open. Safe to repeat:
    each charge carries the order's idempotency key, so a retry after a crash never moves
    money twice. A charge the breaker holds back answers `CircuitOpen` (its order waits)."""
    orders = order_list_awaiting_charge(order_ids=order_ids)
    if not orders:
        return {}
    logger.info("charging %d order(s)", len(orders))
    gateway = payment_gateway()
    answers = payment_breaker().calls(
        {
            order.id: partial(
                gateway.charge,
                amount=order.total,
                currency=order.currency,
                token=order.payment_token,
                idempotency_key=_charge_key(order.id),
            )
            for order in orders
        },
        run=gateway_calls,
        failed=_gateway_failed,
    )
    waiting = sum(isinstance(answer, CircuitOpen) for answer in answers.values())
    if waiting:
        logger.warning(
            "%d order(s) wait for the payment provider (circuit open); the charge sweep "
            "retries them",
            waiting,
        )
    return answers


def _waits(answer: GatewayAnswer, *, outages_wait: bool) -> bool:
    return isinstance(answer, CircuitOpen) or (outages_wait and _gateway_failed(answer))


# An order that ended while its charge was in flight: a captured charge goes back.
_ENDED = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED})


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def payments_record_charges(
    *,
    charges: Mapping[uuid.UUID, GatewayAnswer],
    causes: Sequence[PaymentCause],
    outages_wait: bool = False,
) -> dict[uuid.UUID, Payment]:
    """Record what the provider answered and move each order on, in one transaction: a
    Payment per charged order (captured or failed) with `payments.processed` or
    `payments.failed`, and the order, still reserved, `paid`, or `payment_failed` then
    `cancelled` (inventory releases the stock on the cancel). Raises the provider's error
    for a charge that did not get an answer (the event is retried), unless `outages_wait`.
    A charge the circuit breaker held back (`CircuitOpen`) records nothing: its order
    waits, reserved, for the charge sweep.

    Recorded whatever the order's status is now: money may have moved while a
    cancellation came in. A charge captured for an order that ended meanwhile also records
    `payments.refund_due`, on which the orders consumer refunds it. An order that already
    has a payment keeps it."""
    answered = [
        cause
        for cause in causes
        if cause.order_id in charges
        and not _waits(charges[cause.order_id], outages_wait=outages_wait)
    ]
    if not answered:  # nothing to record: nothing to lock
        return {
            p.order_id: p for p in rows_where_in(Payment, "order", [c.order_id for c in causes])
        }
    ids = [cause.order_id for cause in answered]
    orders = {order.id: order for order in rows_where_in(Order, "id", ids, lock=True)}
    existing = {p.order_id: p for p in rows_where_in(Payment, "order", orders)}
    gateway_name = payment_gateway().name
    payments: list[Payment] = []
    events: list[NewEvent] = []
    changes: list[OrderChange] = []
    for cause in answered:
        order = orders.get(cause.order_id)
        if order is None or order.id in existing:
            continue
        result = _raise_if_failed(charges[order.id])
        payment = Payment(
            order=order,
            amount=order.total,
            currency=order.currency,
            provider=gateway_name,
            provider_reference=result.reference,
            status=Payment.Status.CAPTURED if result.succeeded else Payment.Status.FAILED,
            failure_reason=result.decline_reason,
        )
        existing[order.id] = payment
        payments.append(payment)
        events.append(_payment_event(payment, causation_id=cause.causation_id))
        if order.status == OrderStatus.RESERVED:
            target = OrderStatus.PAID if result.succeeded else OrderStatus.PAYMENT_FAILED
            changes.append(OrderChange(order.id, target, result.decline_reason, cause.causation_id))
        elif result.succeeded and order.status in _ENDED:
            events.append(_refund_due_event(payment, causation_id=cause.causation_id))
    Payment.objects.bulk_create(payments)
    outbox_events_record(events)
    orders_apply_changes(changes=changes, locked=orders)
    payment_charges_count_on_commit(payment.status for payment in payments)
    return existing


def _payment_event(payment: Payment, *, causation_id: uuid.UUID | None) -> NewEvent:
    order = payment.order
    common = {"order_id": order.id, "customer_id": order.customer_id}
    if payment.status == Payment.Status.CAPTURED:
        data: PaymentProcessedV1 | PaymentFailedV1 = PaymentProcessedV1(
            **common,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=payment.provider_reference,
        )
    else:
        data = PaymentFailedV1(
            **common,
            amount=payment.amount,
            currency=payment.currency,
            reason=payment.failure_reason,
        )
    return NewEvent(
        event_type=(
            "payments.processed" if payment.status == Payment.Status.CAPTURED else "payments.failed"
        ),
        aggregate_id=str(order.id),
        key=str(order.customer_id),
        causation_id=causation_id,
        data=data,
    )


def _refund_due_event(payment: Payment, *, causation_id: uuid.UUID | None) -> NewEvent:
    order = payment.order
    logger.warning(
        "order %s was %s when its charge was captured: refund due", order.id, order.status
    )
    return NewEvent(
        event_type="payments.refund_due",
        aggregate_id=str(order.id),
        key=str(order.customer_id),
        causation_id=causation_id,
        data=PaymentRefundDueV1(
            order_id=order.id,
            customer_id=order.customer_id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=payment.provider_reference,
            order_status=order.status,
        ),
    )


def payment_charges_retry(
    *, order_ids: Sequence[uuid.UUID] | None = None, now: datetime | None = None
) -> int:
    """Charge reserved orders still waiting for their charge, and record the outcomes:
    these orders (staff approved them after a risk hold), or else every order overdue (the
    circuit breaker held its charge back, or the provider did not answer). The breaker
    decides as for the consumer: closed, all are charged; half-open, one probe first; open,
    none, and they wait for the next sweep. Returns how many charges were recorded."""
    if order_ids is None:
        order_ids = order_list_charge_overdue(
            now=now or timezone.now(), limit=settings.PAYMENTS["CHARGE_SWEEP_BATCH"]
        )
    if not order_ids:
        return 0
    charges = payment_charges_request(order_ids=order_ids)
    recorded = payments_record_charges(
        charges=charges,
        causes=[PaymentCause(order_id) for order_id in order_ids],
        outages_wait=True,
    )
    return sum(1 for order_id in charges if order_id in recorded)


def payment_charge_for_order(
    *, order_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Payment | None:
    """Charge one reserved order once (the provider call outside any transaction) and
    record the outcome; None if the order is not awaiting a charge."""
    charges = payment_charges_request(order_ids=[order_id])
    payments = payments_record_charges(
        charges=charges, causes=[PaymentCause(order_id, causation_id)]
    )
    return payments.get(order_id)


# --- refund ------------------------------------------------------------------------------


def payment_refunds_request(*, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, GatewayAnswer]:
    """Ask the provider to refund the captured payments of these orders; no transaction
    may be open. Idempotent per order, like charges."""
    payments = payment_list_refundable(order_ids=order_ids)
    gateway = payment_gateway()
    return gateway_calls(
        {
            payment.order_id: partial(
                gateway.refund,
                charge_reference=payment.provider_reference,
                amount=payment.amount,
                currency=payment.currency,
                idempotency_key=f"order-{payment.order_id}-refund",
            )
            for payment in payments
        }
    )


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def payments_record_refunds(
    *, refunds: Mapping[uuid.UUID, GatewayAnswer], causes: Sequence[PaymentCause]
) -> dict[uuid.UUID, Payment]:
    """Mark refunded payments and record `payments.refunded`, once per payment."""
    causation = {cause.order_id: cause.causation_id for cause in causes}
    payments = {
        payment.order_id: payment
        for payment in Payment.objects.select_for_update(of=("self",))
        .select_related("order")
        .filter(order_id__in=causation)
        .order_by("pk")
    }
    refunded: list[Payment] = []
    events: list[NewEvent] = []
    for order_id, answer in refunds.items():
        payment = payments.get(order_id)
        if payment is None or payment.status != Payment.Status.CAPTURED:
            continue
        result = _raise_if_failed(answer)
        payment.status = Payment.Status.REFUNDED
        payment.refund_reference = result.reference
        payment.updated_at = timezone.now()
        refunded.append(payment)
        events.append(
            NewEvent(
                event_type="payments.refunded",
                aggregate_id=str(order_id),
                key=str(payment.order.customer_id),
                causation_id=causation.get(order_id),
                data=PaymentRefundedV1(
                    order_id=order_id,
                    customer_id=payment.order.customer_id,
                    payment_id=payment.id,
                    amount=payment.amount,
                    currency=payment.currency,
                    provider_reference=result.reference,
                ),
            )
        )
    Payment.objects.bulk_update(refunded, ["status", "refund_reference", "updated_at"])
    outbox_events_record(events)
    return payments


def payment_refund_for_order(
    *, order_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Payment | None:
    """Refund an order's captured payment once (the provider call outside any
    transaction); returns the payment, if any, as it is afterwards."""
    refunds = payment_refunds_request(order_ids=[order_id])
    payments = payments_record_refunds(
        refunds=refunds, causes=[PaymentCause(order_id, causation_id)]
    )
    return payments.get(order_id)
