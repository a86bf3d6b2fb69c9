"""Prometheus metrics of the risk check: how many orders each decision took.

The orders consumer, which runs the check, serves them with its worker metrics; the
Grafana dashboard charts them beside the payments (deploy/grafana/dashboards/).
"""

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from prometheus_client import Counter, disable_created_metrics

from risk.review import Decision

disable_created_metrics()

RISK_ASSESSMENTS = Counter(
    "risk_assessments",
    "Orders assessed before their charge, by decision: approve, hold or block.",
    ["decision"],
)
# Every decision's series exists from the start at 0: a rate or a share of holds is then
# defined before the first hold.
_decisions = {decision.value: RISK_ASSESSMENTS.labels(decision.value) for decision in Decision}


def _count(decisions: Tally[str]) -> None:
    for decision, count in decisions.items():
        _decisions[decision].inc(count)


def risk_assessments_count_on_commit(decisions: Iterable[str]) -> None:
    """Count these decisions once the transaction recording them commits (a batch that rolls
    back is retried and would otherwise be counted twice)."""
    tally = Tally(decision for decision in decisions if decision in _decisions)
    if tally:
        transaction.on_commit(partial(_count, tally))
