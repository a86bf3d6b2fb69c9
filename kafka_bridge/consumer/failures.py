"""What happens to an event that fails: which errors are permanent, how long transient ones
are retried, and the dead-letter topic that receives those given up on."""

import random
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist, ValidationError
from django.utils import timezone

from kafka_bridge.client import dead_letter_topic_name, producer_config
from kafka_bridge.contracts import EventDecodeError


class PermanentEventError(Exception):
    """Raised by a handler for an event that can never succeed; it goes to the DLQ at once."""


# Errors that no retry can fix: the message goes to the DLQ at once. Everything else
# (database or Redis unavailable, timeouts, a provider outage, a bug) is retried first.
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    EventDecodeError,  # undecodable bytes, unknown type or version, invalid payload
    PermanentEventError,
    ObjectDoesNotExist,  # the event refers to something that does not exist
    ValidationError,  # a domain rule refused the event
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float

    @classmethod
    def from_settings(cls, kafka: dict[str, Any]) -> "RetryPolicy":
        policy = cls(
            max_attempts=kafka["HANDLER_MAX_ATTEMPTS"],
            backoff_base_seconds=kafka["HANDLER_BACKOFF_BASE_SECONDS"],
            backoff_max_seconds=kafka["HANDLER_BACKOFF_MAX_SECONDS"],
        )
        policy.check_fits(max_poll_interval_ms=kafka["MAX_POLL_INTERVAL_MS"])
        return policy

    def gives_up(self, exc: BaseException, attempts: int) -> bool:
        return isinstance(exc, PERMANENT_ERRORS) or attempts >= self.max_attempts

    def _capped(self, attempts: int) -> float:
        return min(self.backoff_base_seconds * 2 ** (attempts - 1), self.backoff_max_seconds)

    def delay(self, attempts: int) -> float:
        capped = self._capped(attempts)
        return capped / 2 + random.uniform(0, capped / 2)  # jitter: spread retries apart

    def check_fits(self, *, max_poll_interval_ms: int) -> None:
        """Retries wait in place, between polls: their total must stay well inside
        max.poll.interval.ms, or the group would evict us mid-retry."""
        worst = sum(self._capped(n) for n in range(1, self.max_attempts))
        limit = max_poll_interval_ms / 1000 / 2
        if worst > limit:
            raise ImproperlyConfigured(
                f"handler retries may wait {worst:.0f}s, more than half of "
                f"KAFKA_MAX_POLL_INTERVAL_MS ({limit * 2:.0f}s): lower KAFKA_HANDLER_MAX_ATTEMPTS "
                "or the backoff, or raise the poll interval"
            )


class DeadLetterWriter:
    """Copies a message to `<logical topic>.dlq` with the reason in its headers, and waits
    for the broker's ack: the offset is only stored once the dead letter is safe."""

    def __init__(self, *, group: str, consumer_name: str, logical_topics: dict[str, str]) -> None:
        self.group = group
        self.consumer_name = consumer_name
        self._logical = logical_topics  # physical → logical topic name
        self._producer: Producer | None = None

    def topic_for(self, message: Message) -> str:
        return dead_letter_topic_name(self._logical.get(message.topic(), message.topic()))

    def write(self, message: Message, exc: BaseException, attempts: int) -> str:
        dlq_topic = self.topic_for(message)
        headers = [
            *(message.headers() or []),
            ("dlq.original_topic", message.topic().encode()),
            ("dlq.original_partition", str(message.partition()).encode()),
            ("dlq.original_offset", str(message.offset()).encode()),
            ("dlq.consumer_group", self.group.encode()),
            ("dlq.error_class", f"{type(exc).__module__}.{type(exc).__qualname__}".encode()),
            ("dlq.error_message", str(exc)[:4000].encode(errors="replace")),
            ("dlq.attempts", str(attempts).encode()),
            ("dlq.failed_at", timezone.now().isoformat().encode()),
        ]
        if self._producer is None:
            self._producer = Producer(producer_config(f"dlq-{self.consumer_name}"))
        delivery_errors: list[KafkaError] = []
        self._producer.produce(
            dlq_topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            on_delivery=lambda err, _msg: delivery_errors.append(err) if err else None,
        )
        remaining = self._producer.flush(30)
        if remaining or delivery_errors:
            raise KafkaException(f"could not write dead letter to {dlq_topic}: {delivery_errors}")
        return dlq_topic

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
