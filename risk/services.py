"""Risk writes: assess reserved orders before their charge (run by the orders consumer), and
the staff review of a hold.

The assessment of a batch costs a constant number of queries: one read of the orders' facts
with their history (orders per customer and per payment token in their windows, declined
charges, earlier paid orders), then one INSERT of assessments, one of events and one locked
update of the orders held or blocked; and one read of assessments made before, only when an
order was not assessed now (a redelivered event, or an order no longer reserved).

**Velocity without counters.** Counts are read from the facts themselves (the orders and
payments tables), each relative to the order's own creation time: an order is committed by
the API before its first event exists, so every process assessing orders of one token sees
the same orders, and a redelivered event, which finds the assessment already made, counts
nothing twice. docs/risk.md explains the choice.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kafka_bridge.outbox import NewEvent, outbox_events_record
from kafka_bridge.sql import rows_insert
from orders.selectors import OrderRiskFacts, OrderRiskHistory, OrderStatus, order_list_risk_facts
from orders.services import OrderChange, order_hold_approve, order_hold_reject, orders_apply_changes
from risk.events import RiskAssessedV1, RuleScoreV1
from risk.metrics import risk_assessments_count_on_commit
from risk.models import RiskAssessment
from risk.review import Decision, Review, review_check
from risk.review import ReviewRefused as ReviewRefused  # callers of the reviews catch it
from risk.rules import Assessment, History, RiskSettings, assess
from risk.selectors import risk_assessments_for_orders

if TYPE_CHECKING:
    from orders.models import Order

logger = logging.getLogger(__name__)

HELD_REASON = "held for risk review (score {score})"
BLOCKED_REASON = "did not pass the payment risk check"
REJECTED_REASON = "rejected in the payment risk review"
APPROVED_REASON = "approved in the payment risk review"


@dataclass(frozen=True)
class RiskCheck:
    """An order to assess, and the event that asked for it (the cause of what follows)."""

    order_id: uuid.UUID
    causation_id: uuid.UUID | None = None


def _history(read: OrderRiskHistory) -> History:
    return History(
        customer_orders=read.customer_orders,
        token_orders=read.token_orders,
        customer_failed_payments=read.customer_declined,
        token_failed_payments=read.token_declined,
        paid_totals=tuple(p.total for p in read.paid),
        paid_countries=frozenset(p.country for p in read.paid if p.country),
    )


def _rules_document(assessment: Assessment) -> list[dict[str, object]]:
    return [{"rule": r.rule, "points": r.points, "reason": r.reason} for r in assessment.rules]


_INSERTED = (
    "order_id",
    "customer_id",
    "score",
    "decision",
    "rules",
    "review_score",
    "block_score",
    "assessed_at",
    "review",
    "reviewed_by",
)


def risk_orders_assess(
    *, checks: Sequence[RiskCheck], now: datetime | None = None
) -> dict[uuid.UUID, RiskAssessment]:
    """Assess each of these orders that is reserved and not assessed yet, and act on its
    decision, in one transaction: its RiskAssessment, its `risk.assessed` event, and for a
    hold `orders.held`, for a block `orders.cancelled` (inventory then releases the stock).
    Approved orders stay reserved: the caller charges them.

    Returns the assessments of these orders, new or made before (a redelivered event finds
    its assessment and changes nothing). With RISK_ENABLED off: nothing, and {}."""
    if not settings.RISK["ENABLED"] or not checks:
        return {}
    now = now or timezone.now()
    config = RiskSettings.from_settings(settings.RISK)
    causes = {check.order_id: check.causation_id for check in checks}
    read = order_list_risk_facts(
        order_ids=list(causes),
        customer_window=config.customer_window,
        token_window=config.token_window,
        declined_since=now - config.failed_payments_window,
        paid_orders=config.history_orders,
    )
    made = {
        order.order_id: (order, assess(order, _history(history), config)) for order, history in read
    }
    assessed = _assessments_record(made, causes=causes, config=config, now=now) if made else {}
    # An order assessed before (a redelivered event) is skipped by the insert, and one no
    # longer reserved was not read: their assessments, if any, are read only then, so a batch
    # of new orders costs a single read.
    others = [order_id for order_id in causes if order_id not in assessed]
    if others:
        assessed.update(risk_assessments_for_orders(order_ids=others))
    return assessed


@transaction.atomic(savepoint=False)  # joins the reservation's transaction
def _assessments_record(
    made: dict[uuid.UUID, tuple[OrderRiskFacts, Assessment]],
    *,
    causes: dict[uuid.UUID, uuid.UUID | None],
    config: RiskSettings,
    now: datetime,
) -> dict[uuid.UUID, RiskAssessment]:
    """Record the assessments made (the reads before it need no transaction), their events,
    and the holds and blocks; return those this call recorded."""
    recorded: dict[uuid.UUID, RiskAssessment] = {}
    inserted = rows_insert(
        RiskAssessment,
        _INSERTED,
        [
            (
                order.order_id,
                order.customer_id,
                result.score,
                result.decision.value,
                _rules_document(result),
                config.review_score,
                config.block_score,
                now,
                Review.NONE.value,
                "",
            )
            for order, result in made.values()
        ],
        # Assessed once: a concurrent assessment of the same order (two processes during a
        # rebalance) keeps the first, and only the first records events.
        suffix="ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
    )
    new = [made[_as_uuid(value)] for (value,) in inserted]
    events: list[NewEvent] = []
    changes: list[OrderChange] = []
    for order, result in new:
        cause = causes.get(order.order_id)
        events.append(_assessed_event(order, result, config, causation_id=cause))
        # Only from `reserved`: an order the customer cancelled meanwhile stays cancelled.
        if result.decision == Decision.HOLD:
            reason = HELD_REASON.format(score=result.score)
            changes.append(
                OrderChange(order.order_id, OrderStatus.HELD, reason, cause, OrderStatus.RESERVED)
            )
        elif result.decision == Decision.BLOCK:
            changes.append(
                OrderChange(
                    order.order_id,
                    OrderStatus.CANCELLED,
                    BLOCKED_REASON,
                    cause,
                    OrderStatus.RESERVED,
                )
            )
        recorded[order.order_id] = RiskAssessment(
            order_id=order.order_id,
            customer_id=order.customer_id,
            score=result.score,
            decision=result.decision,
            rules=_rules_document(result),
            review_score=config.review_score,
            block_score=config.block_score,
            assessed_at=now,
        )
    outbox_events_record(events)
    orders_apply_changes(changes=changes)
    decisions = Counter(result.decision.value for _, result in new)
    risk_assessments_count_on_commit(decisions.elements())
    if decisions:
        logger.info("risk: %s", ", ".join(f"{n} {d}" for d, n in sorted(decisions.items())))
    return recorded


def _as_uuid(value: object) -> uuid.UUID:
    # PostgreSQL returns UUIDs, SQLite the 32-character hex Django stores.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _assessed_event(
    order: OrderRiskFacts,
    result: Assessment,
    config: RiskSettings,
    *,
    causation_id: uuid.UUID | None,
) -> NewEvent:
    return NewEvent(
        event_type="risk.assessed",
        aggregate_id=str(order.order_id),
        key=str(order.customer_id),
        causation_id=causation_id,
        data=RiskAssessedV1(
            order_id=order.order_id,
            customer_id=order.customer_id,
            score=result.score,
            decision=result.decision.value,
            reasons=result.reasons,
            rules=[
                RuleScoreV1(rule=r.rule, points=r.points, reason=r.reason) for r in result.rules
            ],
            review_score=config.review_score,
            block_score=config.block_score,
        ),
    )


# --- staff review of a hold ------------------------------------------------------------------


def _review_record(order_id: uuid.UUID, *, review: str, reviewer: str) -> None:
    assessment = RiskAssessment.objects.select_for_update().filter(order_id=order_id).first()
    if assessment is None:  # held before the check was turned off, or by hand: nothing to note
        return
    review_check(decision=assessment.decision, review=assessment.review, target=review)
    assessment.review = review
    assessment.reviewed_by = reviewer[:150]
    assessment.reviewed_at = timezone.now()
    assessment.save(update_fields=["review", "reviewed_by", "reviewed_at"])


@transaction.atomic
def risk_review_approve(*, order_id: uuid.UUID, reviewer: str) -> Order:
    """Staff approve a held order: it goes back to `reserved` and is charged (queued once
    this commits). Raises the order's DoesNotExist, or InvalidOrderTransition when it is
    not held (already reviewed, or cancelled by the customer meanwhile)."""
    order = order_hold_approve(order_id=order_id, reason=APPROVED_REASON)
    _review_record(order_id, review=Review.APPROVED, reviewer=reviewer)
    return order


@transaction.atomic
def risk_review_reject(*, order_id: uuid.UUID, reviewer: str) -> Order:
    """Staff reject a held order: it is cancelled and its stock released (the saga's
    compensation, on `orders.cancelled`). Raises as `risk_review_approve`."""
    order = order_hold_reject(order_id=order_id, reason=REJECTED_REASON)
    _review_record(order_id, review=Review.REJECTED, reviewer=reviewer)
    return order
