"""Prometheus metrics of the notification channels.

The notifications consumer counts what it creates; the Celery worker counts every call to a
channel backend by its outcome, how long it took, and the notifications it gave up on. The
worker serves them on METRICS_PORT (ecommerce/celery.py). docs/operations.md lists them.
"""

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from prometheus_client import Counter, Histogram, disable_created_metrics

from notifications.channels import CHANNELS, DeliveryOutcome

# As in kafka_bridge.metrics: no `_created` series (must run before the counters are made).
disable_created_metrics()

# A send that raised: the provider failed for now (retried).
ERROR = "error"
SEND_OUTCOMES = (*(outcome.value for outcome in DeliveryOutcome), ERROR)

NOTIFICATIONS_CREATED = Counter(
    "notifications_created",
    "Notifications created, one per customer-visible order transition and channel.",
    ["channel"],
)
NOTIFICATION_SENDS = Counter(
    "notification_sends",
    "Calls to a channel backend, by outcome: sent, gone (push subscription removed), "
    "rejected (refused for good), error (failed for now: retried).",
    ["channel", "outcome"],
)
NOTIFICATION_SEND_DURATION = Histogram(
    "notification_send_duration_seconds",
    "Time one call to a channel backend took (the provider's round trip).",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
NOTIFICATIONS_FAILED = Counter(
    "notifications_failed",
    "Notifications given up on: retries exhausted, rejected, or nowhere to send them.",
    ["channel"],
)
# Every series exists from the start at 0, so rates and ratios are defined before the
# first event of each kind; children are bound once.
_created = {channel: NOTIFICATIONS_CREATED.labels(channel) for channel in CHANNELS}
_sends = {
    (channel, outcome): NOTIFICATION_SENDS.labels(channel, outcome)
    for channel in CHANNELS
    for outcome in SEND_OUTCOMES
}
_durations = {channel: NOTIFICATION_SEND_DURATION.labels(channel) for channel in CHANNELS}
_failed = {channel: NOTIFICATIONS_FAILED.labels(channel) for channel in CHANNELS}


def _created_count(channels: Tally[str]) -> None:
    for channel, count in channels.items():
        _created[channel].inc(count)


def notifications_created_count_on_commit(channels: Iterable[str]) -> None:
    """Count notifications created, once the transaction that creates them commits (a
    consumer batch that rolls back is retried and would be counted twice)."""
    tally = Tally(channels)
    if tally:
        transaction.on_commit(partial(_created_count, tally))


def notification_send_observe(*, channel: str, outcome: str, seconds: float) -> None:
    _sends[channel, outcome].inc()
    _durations[channel].observe(seconds)


def notification_failed_count(*, channel: str) -> None:
    _failed[channel].inc()
