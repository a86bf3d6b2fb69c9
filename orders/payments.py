"""The payment step of the order saga: a gateway interface, a deterministic fake
provider for development and tests, and the charge/refund services.

A charge is idempotent per order twice over: we never create a second Payment for an
order, and the gateway call carries an idempotency key (`order-<id>-charge`) so that a
retry after a crash between the provider's answer and our commit moves no money twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from kafka_bridge.contracts import PaymentFailedV1, PaymentProcessedV1, PaymentRefundedV1
from kafka_bridge.outbox import outbox_event_record
from orders.models import FakeGatewayTransaction, Order, Payment
from orders.status import OrderStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayResult:
    succeeded: bool
    reference: str
    decline_reason: str = ""


class GatewayUnavailable(Exception):
    """The provider did not answer; the call is safe to retry with the same key."""


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
    GatewayUnavailable, a transient error). Its ledger is FakeGatewayTransaction.
    """

    name = "fake"

    def __init__(
        self,
        *,
        decline_above: str | None = None,
        decline_token: str = "tok_decline",
        unavailable_token: str = "tok_unavailable",
    ) -> None:
        self.decline_above = Decimal(decline_above) if decline_above else None
        self.decline_token = decline_token
        self.unavailable_token = unavailable_token

    def _record(
        self, *, key: str, kind: str, amount: Decimal, currency: str, decline_reason: str
    ) -> GatewayResult:
        transaction_row, _ = FakeGatewayTransaction.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "kind": kind,
                "reference": f"fake_{kind}_{uuid.uuid4().hex[:12]}",
                "amount": amount,
                "currency": currency,
                "succeeded": not decline_reason,
                "decline_reason": decline_reason,
            },
        )
        return GatewayResult(
            succeeded=transaction_row.succeeded,
            reference=transaction_row.reference,
            decline_reason=transaction_row.decline_reason,
        )

    def charge(
        self, *, amount: Decimal, currency: str, token: str, idempotency_key: str
    ) -> GatewayResult:
        if token == self.unavailable_token:
            raise GatewayUnavailable("fake provider is unavailable for this token")
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


@transaction.atomic
def payment_charge_for_order(
    *, order_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Payment | None:
    """Charge a reserved order once and record `payments.processed` or `payments.failed`.

    Runs under the order's row lock, so a concurrent cancellation either comes first (no
    charge) or after (and refunds). An order that already has a payment gets it back
    unchanged; an order no longer awaiting payment is not charged.
    """
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        logger.warning("order %s not found: not charged", order_id)
        return None
    existing = Payment.objects.filter(order=order).first()
    if existing is not None:
        return existing
    if order.status != OrderStatus.RESERVED:
        logger.warning("order %s is %s: not charged", order.id, order.status)
        return None
    gateway = payment_gateway()
    result = gateway.charge(
        amount=order.total,
        currency=order.currency,
        token=order.payment_token,
        idempotency_key=f"order-{order.id}-charge",
    )
    payment = Payment.objects.create(
        order=order,
        amount=order.total,
        currency=order.currency,
        provider=gateway.name,
        provider_reference=result.reference,
        status=Payment.Status.CAPTURED if result.succeeded else Payment.Status.FAILED,
        failure_reason=result.decline_reason,
    )
    common = {"order_id": order.id, "customer_id": order.customer_id}
    if result.succeeded:
        data: PaymentProcessedV1 | PaymentFailedV1 = PaymentProcessedV1(
            **common,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=payment.provider_reference,
        )
    else:
        data = PaymentFailedV1(
            **common, amount=payment.amount, currency=payment.currency, reason=result.decline_reason
        )
    outbox_event_record(
        event_type="payments.processed" if result.succeeded else "payments.failed",
        aggregate_id=str(order.id),
        key=str(order.customer_id),
        causation_id=causation_id,
        data=data,
    )
    return payment


@transaction.atomic
def payment_refund_for_order(
    *, order_id: uuid.UUID, causation_id: uuid.UUID | None = None
) -> Payment | None:
    """Refund a captured payment once and record `payments.refunded`; else do nothing."""
    payment = Payment.objects.select_for_update().filter(order_id=order_id).first()
    if payment is None or payment.status != Payment.Status.CAPTURED:
        return payment
    gateway = payment_gateway()
    result = gateway.refund(
        charge_reference=payment.provider_reference,
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=f"order-{order_id}-refund",
    )
    payment.status = Payment.Status.REFUNDED
    payment.refund_reference = result.reference
    payment.save(update_fields=["status", "refund_reference", "updated_at"])
    outbox_event_record(
        event_type="payments.refunded",
        aggregate_id=str(order_id),
        key=str(payment.order.customer_id),
        causation_id=causation_id,
        data=PaymentRefundedV1(
            order_id=order_id,
            customer_id=payment.order.customer_id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=result.reference,
        ),
    )
    return payment
