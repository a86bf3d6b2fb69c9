"""Dead letters: stored from the `<topic>.dlq` topics, inspected, replayed or discarded.

Replay goes back through the outbox with the original event id: consumer groups that had
already processed the event skip it as a duplicate; the group that failed processes it.
"""

import json
import uuid
from datetime import datetime
from typing import Any

from confluent_kafka import Message
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from kafka_bridge.contracts import EventDecodeError
from kafka_bridge.models import DeadLetter, OutboxEvent
from kafka_bridge.outbox import outbox_event_replay
from kafka_bridge.retention import retention_cutoff
from kafka_bridge.wire import envelope_json, message_decode


class DeadLetterNotReplayable(Exception):
    """The dead letter cannot be replayed (not an event we can decode, or already done)."""


def _header_text(headers: dict[str, str], name: str) -> str:
    return headers.get(f"dlq.{name}", "")


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


@transaction.atomic
def dead_letter_store(*, message: Message) -> DeadLetter:
    """Copy one DLQ message into the database, once per DLQ position."""
    headers = {
        name: (value or b"").decode("utf-8", errors="replace")
        for name, value in (message.headers() or [])
    }
    value = message.value() or b""
    try:
        event = message_decode(value, topic=message.topic())
        event_id, event_type = event.event_id, event.event_type
    except EventDecodeError:
        event_id, event_type = _envelope_identity(value)
        event_id = event_id or _uuid_or_none(headers.get("event_id", ""))
        event_type = event_type or headers.get("event_type", "")
    dead_letter, _created = DeadLetter.objects.get_or_create(
        dlq_topic=message.topic(),
        dlq_partition=message.partition(),
        dlq_offset=message.offset(),
        defaults={
            "original_topic": _header_text(headers, "original_topic"),
            "original_partition": _int_or_none(_header_text(headers, "original_partition")),
            "original_offset": _int_or_none(_header_text(headers, "original_offset")),
            "consumer_group": _header_text(headers, "consumer_group"),
            "error_class": _header_text(headers, "error_class")[:300],
            "error_message": _header_text(headers, "error_message"),
            "attempts": _int_or_none(_header_text(headers, "attempts")) or 1,
            "failed_at": parse_datetime(_header_text(headers, "failed_at") or "") or None,
            "key": (message.key() or b"").decode("utf-8", errors="replace"),
            "value": value,
            "headers": headers,
            "event_id": event_id,
            "event_type": event_type[:100],
        },
    )
    return dead_letter


def _uuid_or_none(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except (TypeError, ValueError, AttributeError):
        return None


def _envelope_identity(value: bytes) -> tuple[uuid.UUID | None, str]:
    """The event id and type a JSON envelope names, though it is no event we can decode (an
    unknown type or version, an invalid payload), so that staff see what it is."""
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None, ""
    if not isinstance(document, dict):
        return None, ""
    event_type = document.get("event_type")
    if not isinstance(event_type, str):
        event_type = ""
    return _uuid_or_none(document.get("event_id")), event_type


@transaction.atomic
def dead_letter_replay(*, dead_letter_id: int, actor: str) -> OutboxEvent:
    """Publish the dead letter's event again (same event id) through the outbox."""
    dead_letter = DeadLetter.objects.select_for_update().get(id=dead_letter_id)
    if dead_letter.status != DeadLetter.Status.NEW:
        raise DeadLetterNotReplayable(f"dead letter {dead_letter_id} is {dead_letter.status}")
    backstop_from = retention_cutoff(settings.RETENTION["PROCESSED_EVENT_DAYS"])
    if (
        backstop_from is not None
        and (dead_letter.failed_at or dead_letter.stored_at) < backstop_from
    ):
        # The groups that did process it may no longer recognise it: a replay could apply
        # it twice there (kafka_bridge.retention).
        raise DeadLetterNotReplayable(
            f"dead letter {dead_letter_id} is older than PROCESSED_EVENT_RETENTION_DAYS "
            f"({settings.RETENTION['PROCESSED_EVENT_DAYS']:g}): discard it instead"
        )
    value, topic = bytes(dead_letter.value), dead_letter.original_topic
    try:
        message_decode(value, topic=topic)
        # The outbox keeps plain JSON; the relay frames it again if a registry is in use.
        plain = envelope_json(value, topic=topic)
    except EventDecodeError as exc:
        raise DeadLetterNotReplayable(f"not a valid event, discard it instead: {exc}") from None
    row = outbox_event_replay(
        value=plain,
        key=dead_letter.key,
        replay_of=dead_letter,
    )
    _resolve(dead_letter, DeadLetter.Status.REPLAYED, actor)
    return row


@transaction.atomic
def dead_letter_discard(*, dead_letter_id: int, actor: str) -> DeadLetter:
    dead_letter = DeadLetter.objects.select_for_update().get(id=dead_letter_id)
    if dead_letter.status == DeadLetter.Status.NEW:
        _resolve(dead_letter, DeadLetter.Status.DISCARDED, actor)
    return dead_letter


def _resolve(dead_letter: DeadLetter, status: str, actor: str) -> None:
    dead_letter.status = status
    dead_letter.resolved_at = timezone.now()
    dead_letter.resolved_by = actor[:150]
    dead_letter.save(update_fields=["status", "resolved_at", "resolved_by"])


def dead_letter_list(
    *,
    status: str | None = DeadLetter.Status.NEW,
    original_topic: str | None = None,
    error_class: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[DeadLetter]:
    """Dead letters matching every given filter, oldest first (replay order)."""
    queryset = DeadLetter.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    if original_topic:
        queryset = queryset.filter(original_topic__endswith=original_topic)
    if error_class:
        queryset = queryset.filter(error_class__icontains=error_class)
    if event_type:
        queryset = queryset.filter(event_type=event_type)
    if since:
        queryset = queryset.filter(failed_at__gte=since)
    return queryset.order_by("failed_at", "id")
