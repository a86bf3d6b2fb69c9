"""Prometheus metrics of the orders app: the outcome of every charge the saga records.

The orders consumer serves them with the rest of its worker metrics
(`kafka_bridge.metrics.metrics_serve`); the payment failure alert
(deploy/prometheus/rules/pipeline.rules.yml) divides the failed by all.
"""

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from prometheus_client import Counter, disable_created_metrics

from orders.models import Payment

# As in kafka_bridge.metrics: no `_created` series (must run before the counter is made).
disable_created_metrics()

PAYMENT_CHARGES = Counter(
    "payment_charges",
    "Charges recorded, by outcome: captured, or failed (declined by the provider).",
    ["outcome"],
)
CHARGE_OUTCOMES = (Payment.Status.CAPTURED.value, Payment.Status.FAILED.value)
# Both series exist from the start at 0, so that a rate or a ratio over them is defined
# before the first charge of either kind (a series born at 1 has no increase to show).
_charges = {outcome: PAYMENT_CHARGES.labels(outcome) for outcome in CHARGE_OUTCOMES}


def _count(outcomes: Tally[str]) -> None:
    for outcome, count in outcomes.items():
        _charges[outcome].inc(count)


def payment_charges_count_on_commit(statuses: Iterable[str]) -> None:
    """Count these recorded charges once the transaction that records them commits: a batch
    that rolls back is retried and would otherwise be counted twice."""
    outcomes = Tally(status for status in statuses if status in _charges)
    if outcomes:
        transaction.on_commit(partial(_count, outcomes))
