"""Prometheus metrics of the webhook dispatcher (served on METRICS_PORT, as every worker's;
docs/operations.md lists them). Counters move once per recorded batch of outcomes."""

import logging
from collections.abc import Iterable

from django.db import DatabaseError, connection
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhooks.models import WebhookAttempt

logger = logging.getLogger(__name__)

DELIVERY_OUTCOMES = ("delivered", "failed")

DELIVERIES = Counter(
    "webhook_deliveries",
    "Deliveries finished: delivered (a 2xx answer) or failed (every retry used up).",
    ["outcome"],
)
ATTEMPTS = Counter(
    "webhook_attempts",
    "HTTP attempts by outcome: success, http_error (non-2xx), timeout, refused (address "
    "not allowed), connection_error.",
    ["outcome"],
)
ATTEMPT_DURATION = Histogram(
    "webhook_attempt_duration_seconds",
    "Time of one attempt: resolve, connect, send, and the answer's status line.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENDPOINTS_DISABLED = Counter(
    "webhook_endpoints_disabled",
    "Endpoints disabled after persistent failure.",
)


def metrics_start_at_zero() -> None:
    """Every series exists from the first scrape, so a rate over it sees the first event."""
    for outcome in DELIVERY_OUTCOMES:
        DELIVERIES.labels(outcome)
    for outcome in WebhookAttempt.Outcome.values:
        ATTEMPTS.labels(outcome)


class PendingDeliveriesCollector(Collector):
    """Pending deliveries and disabled endpoints, counted when Prometheus scrapes (on the
    metrics server's thread, with a connection of its own, closed at once)."""

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        from webhooks.models import WebhookEndpoint
        from webhooks.selectors import webhook_deliveries_pending_count
        from webhooks.status import EndpointStatus

        try:
            pending = webhook_deliveries_pending_count()
            disabled = WebhookEndpoint.objects.filter(status=EndpointStatus.DISABLED).count()
        except DatabaseError as exc:
            logger.warning("webhook metrics unavailable: %s", exc)
            return []
        finally:
            connection.close()
        return self._families(pending, disabled)

    @staticmethod
    def _families(pending: float | None = None, disabled: float | None = None) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "webhook_deliveries_pending",
                "Deliveries not yet delivered or failed (due, waiting for a retry, or held "
                "behind an earlier event of their order).",
                value=pending,
            ),
            GaugeMetricFamily(
                "webhook_endpoints_disabled_now",
                "Endpoints disabled now, waiting for staff to re-enable them.",
                value=disabled,
            ),
        ]
