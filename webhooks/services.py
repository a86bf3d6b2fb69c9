"""Webhooks: endpoints staff register, one delivery per (endpoint, order event), and the
outcome of every attempt, with retries on a schedule and endpoints disabled after
persistent failure. The consumer records deliveries (`webhook_deliveries_record`); the
dispatcher (`webhooks.dispatcher`) claims them (`webhook_deliveries_claim`), sends them
(`webhooks.sending`) and records what came back (`webhook_attempts_record`).
"""

import base64
import logging
import random
import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from kafka_bridge.sql import rows_update
from webhooks.addresses import InvalidWebhookUrl, url_check
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.payloads import ALL_EVENTS, SUBSCRIBABLE_EVENT_TYPES, OrderEventMessage
from webhooks.selectors import webhook_deliveries_due, webhook_endpoints_active
from webhooks.sending import AttemptOutcome, DeliveryClaim
from webhooks.status import DeliveryStatus, EndpointStatus, delivery_statuses_from

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# A claimed delivery is another dispatcher's to take over this long after its attempt's
# timeout, if the dispatcher that claimed it never recorded an outcome (it crashed).
CLAIM_MARGIN_SECONDS = 30.0


# --- endpoints ------------------------------------------------------------------------
def webhook_event_types_normalise(event_types: Sequence[str]) -> list[str]:
    """`["*"]`, or the known event types named, each once, in the order of an order's
    life; a ValidationError on `event_types` otherwise."""
    names = list(event_types)
    if not names:
        raise ValidationError({"event_types": ['Name at least one event type, or "*".']})
    if ALL_EVENTS in names:
        if len(set(names)) > 1:
            raise ValidationError({"event_types": ['"*" (every order event) stands alone.']})
        return [ALL_EVENTS]
    unknown = sorted(set(names) - set(SUBSCRIBABLE_EVENT_TYPES))
    if unknown:
        raise ValidationError(
            {
                "event_types": [
                    f"Unknown event type: {name}. Known: {', '.join(SUBSCRIBABLE_EVENT_TYPES)}, "
                    'or "*" for all.'
                    for name in unknown
                ]
            }
        )
    return [name for name in SUBSCRIBABLE_EVENT_TYPES if name in names]


def webhook_url_check(*, url: str) -> None:
    """A ValidationError on `url` if no endpoint may have it (see webhooks.addresses)."""
    try:
        url_check(url, allow_private=settings.WEBHOOKS["ALLOW_PRIVATE"])
    except InvalidWebhookUrl as exc:
        raise ValidationError({"url": [str(exc)]}) from None


def webhook_secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@transaction.atomic
def webhook_endpoint_create(
    *, url: str, event_types: Sequence[str], created_by: AbstractBaseUser | None = None
) -> WebhookEndpoint:
    """Register an endpoint with a new secret (`endpoint.secret`: show it to the caller
    once). Raises ValidationError by field (`url`, `event_types`)."""
    errors: dict[str, list[str]] = {}
    try:
        webhook_url_check(url=url)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        types = webhook_event_types_normalise(event_types)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    endpoint = WebhookEndpoint.objects.create(
        url=url, event_types=types, secret=webhook_secret_generate(), created_by=created_by
    )
    logger.info("webhook endpoint %s registered for %s", endpoint.id, ", ".join(types))
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint_id: uuid.UUID) -> bool:
    """Remove an endpoint with its deliveries and their attempts; False if there was none."""
    deleted, _ = WebhookEndpoint.objects.filter(id=endpoint_id).delete()
    return bool(deleted)


@transaction.atomic
def webhook_endpoints_enable(*, endpoint_ids: Sequence[uuid.UUID]) -> int:
    """Staff: re-enable disabled endpoints. Their failure streak starts again, and what was
    pending when they were disabled is due at once. Returns how many were re-enabled."""
    now = timezone.now()
    ids = list(
        WebhookEndpoint.objects.select_for_update()
        .filter(id__in=endpoint_ids, status=EndpointStatus.DISABLED)
        .values_list("id", flat=True)
    )
    WebhookEndpoint.objects.filter(id__in=ids).update(
        status=EndpointStatus.ACTIVE,
        disabled_reason="",
        disabled_at=None,
        consecutive_failures=0,
        failing_since=None,
        updated_at=now,
    )
    WebhookDelivery.objects.filter(endpoint_id__in=ids, status=DeliveryStatus.PENDING).update(
        next_attempt_at=now
    )
    for endpoint_id in ids:
        logger.info("webhook endpoint %s re-enabled", endpoint_id)
    return len(ids)


def webhook_endpoint_enable(*, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    """Re-enable one endpoint (a no-op if it is active); None if there is no such one."""
    webhook_endpoints_enable(endpoint_ids=[endpoint_id])
    return WebhookEndpoint.objects.filter(id=endpoint_id).first()


# --- deliveries -----------------------------------------------------------------------
@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def webhook_deliveries_record(*, messages: Sequence[OrderEventMessage]) -> int:
    """One pending delivery per active endpoint subscribed to each message's event, in one
    INSERT; a redelivered event adds nothing (one delivery per endpoint and event).
    Returns how many rows were asked for (duplicates included)."""
    endpoints = webhook_endpoints_active()
    if not endpoints or not messages:
        return 0
    now = timezone.now()
    rows = []
    for message in messages:
        body = None
        for endpoint_id, event_types in endpoints:
            if ALL_EVENTS not in event_types and message.event_type not in event_types:
                continue
            body = body if body is not None else message.body()
            rows.append(
                WebhookDelivery(
                    endpoint_id=endpoint_id,
                    event_id=message.event_id,
                    event_type=message.event_type,
                    order_id=message.order_id,
                    message_id=message.message_id,
                    body=body,
                    next_attempt_at=now,
                )
            )
    # Rows are inserted in event order, so ids (which order an order's deliveries to one
    # endpoint) follow it.
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def webhook_deliveries_claim(
    *, limit: int, in_flight: Mapping[uuid.UUID, int], lease_seconds: float
) -> list[DeliveryClaim]:
    """Take up to `limit` due deliveries to send now (see `webhook_deliveries_due`), at most
    MAX_IN_FLIGHT_PER_ENDPOINT per endpoint counting `in_flight` (this dispatcher's sends
    per endpoint). Each is leased for `lease_seconds`: other dispatchers skip it meanwhile
    (rows another dispatcher is claiming are skipped, not waited for)."""
    if limit <= 0:
        return []
    cap = settings.WEBHOOKS["MAX_IN_FLIGHT_PER_ENDPOINT"]
    now = timezone.now()
    free = {endpoint_id: cap - count for endpoint_id, count in in_flight.items()}
    chosen: list[int] = []
    due = webhook_deliveries_due(now=now, per_endpoint=cap).values_list("id", "endpoint_id")
    for delivery_id, endpoint_id in due[: max(limit * 4, 100)]:
        if free.get(endpoint_id, cap) <= 0:
            continue
        free[endpoint_id] = free.get(endpoint_id, cap) - 1
        chosen.append(delivery_id)
        if len(chosen) == limit:
            break
    if not chosen:
        return []
    with transaction.atomic():
        rows = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(id__in=chosen, status=DeliveryStatus.PENDING)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("id")
        )
        WebhookDelivery.objects.filter(id__in=[row.id for row in rows]).update(
            claimed_until=now + timedelta(seconds=lease_seconds)
        )
    return [
        DeliveryClaim(
            delivery_id=row.id,
            endpoint_id=row.endpoint_id,
            url=row.endpoint.url,
            secret=row.endpoint.secret,
            message_id=row.message_id,
            body=row.body,
            attempt=row.attempts + 1,
        )
        for row in rows
    ]


def webhook_retry_delay(*, attempts: int) -> float | None:
    """Seconds to wait after `attempts` failed attempts (with jitter), or None: give up."""
    schedule = settings.WEBHOOKS["RETRY_SCHEDULE_SECONDS"]
    if attempts > len(schedule):
        return None
    jitter = settings.WEBHOOKS["RETRY_JITTER"]
    return schedule[attempts - 1] * random.uniform(1 - jitter, 1 + jitter)


@dataclass
class AttemptsRecorded:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0  # gave up: the schedule ran out
    disabled_endpoints: list[uuid.UUID] = field(default_factory=list)


@dataclass
class _Streak:
    """What a batch of outcomes did to one endpoint's failure streak."""

    succeeded_at: datetime | None = None
    failures_after: int = 0  # failures after the last success (or all, if none)
    first_failure_after: datetime | None = None


@transaction.atomic
def webhook_attempts_record(*, outcomes: Sequence[AttemptOutcome]) -> AttemptsRecorded:
    """Log each attempt and move its delivery: delivered on a 2xx; otherwise due again after
    the schedule's next delay, or failed once the schedule ran out. Endpoints' failure
    streaks follow; an endpoint whose every attempt failed for DISABLE_AFTER_SECONDS, at
    least DISABLE_AFTER_FAILURES times in a row, is disabled. Outcomes of deliveries that
    no longer exist (their endpoint was deleted) are dropped."""
    recorded = AttemptsRecorded()
    if not outcomes:
        return recorded
    now = timezone.now()
    deliveries = WebhookDelivery.objects.select_for_update().in_bulk(
        [outcome.delivery_id for outcome in outcomes]
    )
    attempts, changed = [], []
    streaks: dict[uuid.UUID, _Streak] = defaultdict(_Streak)
    for outcome in sorted(outcomes, key=lambda o: o.finished_at):
        delivery = deliveries.get(outcome.delivery_id)
        if delivery is None:
            continue
        attempts.append(
            WebhookAttempt(
                delivery_id=delivery.id,
                number=outcome.attempt,
                started_at=outcome.started_at,
                outcome=outcome.outcome,
                status_code=outcome.status_code,
                duration_ms=outcome.duration_ms,
                error=outcome.error,
            )
        )
        delivery.attempts = max(delivery.attempts, outcome.attempt)
        delivery.claimed_until = None
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        streak = streaks[delivery.endpoint_id]
        if outcome.ok:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = outcome.finished_at
            recorded.delivered += 1
            streak.succeeded_at = outcome.finished_at
            streak.failures_after, streak.first_failure_after = 0, None
        else:
            streak.failures_after += 1
            streak.first_failure_after = streak.first_failure_after or outcome.finished_at
            delay = webhook_retry_delay(attempts=delivery.attempts)
            if delay is None:
                delivery.status = DeliveryStatus.FAILED
                recorded.failed += 1
            else:
                delivery.next_attempt_at = outcome.finished_at + timedelta(seconds=delay)
                recorded.retrying += 1
        changed.append(delivery)
    WebhookAttempt.objects.bulk_create(attempts)
    rows_update(
        WebhookDelivery,
        changed,
        [
            "status",
            "attempts",
            "claimed_until",
            "last_status_code",
            "last_error",
            "delivered_at",
            "next_attempt_at",
        ],
    )
    recorded.disabled_endpoints = _streaks_apply(streaks, now=now)
    return recorded


def _streaks_apply(streaks: Mapping[uuid.UUID, _Streak], *, now: datetime) -> list[uuid.UUID]:
    """Move each endpoint's failure streak; disable the endpoints failing long enough."""
    failing = []
    for endpoint_id, streak in streaks.items():
        endpoint = WebhookEndpoint.objects.filter(id=endpoint_id)
        if streak.succeeded_at is not None:
            endpoint.update(
                consecutive_failures=streak.failures_after,
                failing_since=streak.first_failure_after,
            )
        else:
            endpoint.update(
                consecutive_failures=F("consecutive_failures") + streak.failures_after,
                failing_since=Coalesce(F("failing_since"), Value(streak.first_failure_after)),
            )
        if streak.failures_after:
            failing.append(endpoint_id)
    if not failing:
        return []
    config = settings.WEBHOOKS
    disable = WebhookEndpoint.objects.filter(
        id__in=failing,
        status=EndpointStatus.ACTIVE,
        consecutive_failures__gte=config["DISABLE_AFTER_FAILURES"],
        failing_since__lte=now - timedelta(seconds=config["DISABLE_AFTER_SECONDS"]),
    )
    disabled = list(disable.values_list("id", flat=True))
    if disabled:
        WebhookEndpoint.objects.filter(id__in=disabled).update(
            status=EndpointStatus.DISABLED,
            disabled_at=now,
            disabled_reason=(
                f"every attempt failed for at least {config['DISABLE_AFTER_SECONDS']:g}s, "
                f"{config['DISABLE_AFTER_FAILURES']} or more in a row"
            ),
            updated_at=now,
        )
        for endpoint_id in disabled:
            logger.warning("webhook endpoint %s disabled after persistent failure", endpoint_id)
    return disabled


@transaction.atomic
def webhook_deliveries_redeliver(*, delivery_ids: Sequence[int]) -> int:
    """Staff: send delivered or failed deliveries again, now (same `webhook-id`, so a
    receiver that keeps ids can tell). Pending ones are left alone: they go out anyway.
    A disabled endpoint's deliveries wait until it is re-enabled. Returns how many."""
    return WebhookDelivery.objects.filter(
        id__in=delivery_ids, status__in=delivery_statuses_from(DeliveryStatus.PENDING)
    ).update(
        status=DeliveryStatus.PENDING,
        next_attempt_at=timezone.now(),
        claimed_until=None,
        delivered_at=None,
    )


@transaction.atomic
def webhook_endpoints_redeliver_failed(*, endpoint_ids: Sequence[uuid.UUID]) -> int:
    """Staff: send every failed delivery of these endpoints again (see
    `webhook_deliveries_redeliver`)."""
    ids = WebhookDelivery.objects.filter(
        endpoint_id__in=endpoint_ids, status=DeliveryStatus.FAILED
    ).values_list("id", flat=True)
    return webhook_deliveries_redeliver(delivery_ids=list(ids))
