"""Risk reads: the assessment of an order (its admin page, the staff API), and what the
pipeline dashboard shows."""

import uuid
from collections.abc import Iterable

from django.db.models import Count

from risk.models import RiskAssessment
from risk.review import Decision


def risk_assessment_for_order(*, order_id: uuid.UUID) -> RiskAssessment | None:
    return RiskAssessment.objects.filter(order_id=order_id).first()


def risk_assessments_for_orders(
    *, order_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, RiskAssessment]:
    return {a.order_id: a for a in RiskAssessment.objects.filter(order_id__in=list(order_ids))}


def risk_decisions_count() -> list[tuple[str, str, int]]:
    """(decision, label, assessments) for every decision, zeros included."""
    counts = dict(RiskAssessment.objects.order_by().values_list("decision").annotate(n=Count("id")))
    return [(d.value, d.label, counts.get(d.value, 0)) for d in Decision]
