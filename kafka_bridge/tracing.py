"""Trace context through Kafka: the relay's spans, and reading the headers back.

Used only while tracing is on (`common.tracing.enabled`, read once per batch): with it off
the relay and the consumers never reach this module's work. The context travels as the W3C
`traceparent` and `tracestate` headers, beside our own (`relay.message_headers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, Message
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.tracing import context_extract, context_inject, stored_context_headers

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

KafkaHeaders = Sequence[tuple[str, bytes | None]]
Delivered = Callable[[int, KafkaError | None, Message], None]


class _HeadersGetter(Getter[KafkaHeaders]):
    """Reads W3C fields from confluent-kafka's headers: (name, bytes) pairs."""

    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        values = [value.decode() for name, value in carrier if name == key and value is not None]
        return values or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [name for name, _ in carrier]


_getter = _HeadersGetter()


def message_context(message: Message) -> Context:
    """The context a message's headers carry (empty if none: a message from before
    tracing, or from a producer that does not trace)."""
    return context_extract(message.headers() or [], _getter)


class PublishSpans:
    """The spans of one relay batch.

    Each event gets a PRODUCER span, parented on the context stored with its outbox row,
    from its produce until the broker acknowledges it (or refuses it); that span's context
    goes out in the message's headers, for consumers to continue. The batch is one span
    too, the root of a trace of its own since it carries events of many traces, linked to
    each event's span.
    """

    def __init__(self, rows: Sequence[tuple]) -> None:
        # A traced read has the row's stored trace context last: kept here, and the rows
        # handed back without it, as the untraced read gives them.
        self.rows = [row[:-1] for row in rows]
        self._stored = {row[0]: row[-1] for row in rows}
        self._tracer = trace.get_tracer(__name__)
        self._spans: dict[int, Span] = {}
        self._batch = self._tracer.start_span(
            "outbox publish",
            kind=SpanKind.INTERNAL,
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(rows)},
        )

    def start(
        self, row_id: int, *, topic: str, event_id: object, event_type: str, correlation_id: str
    ) -> list[tuple[str, str]]:
        """Start the span of one event about to be produced; its W3C headers."""
        parent = context_extract(stored_context_headers(self._stored.get(row_id, "")))
        span = self._tracer.start_span(
            f"send {event_type}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.message.id": str(event_id),
                "ecommerce.event_type": event_type,
                "ecommerce.correlation_id": correlation_id,
                "ecommerce.outbox_id": row_id,
            },
        )
        self._spans[row_id] = span
        self._batch.add_link(span.get_span_context())
        return list(context_inject(trace.set_span_in_context(span)).items())

    def delivered(self, on_delivery: Delivered) -> Delivered:
        """`on_delivery` that first ends the event's span with the broker's answer."""

        def traced(row_id: int, error: KafkaError | None, message: Message) -> None:
            span = self._spans.pop(row_id, None)
            if span is not None:
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, str(error)))
                span.end()
            on_delivery(row_id, error, message)

        return traced

    def produced(self, failed: dict[int, str]) -> None:
        """Every row of the batch was handed to the producer, or `failed` says why not:
        end the spans of those that never left, and the batch's span."""
        for row_id, error in failed.items():
            span = self._spans.pop(row_id, None)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, error))
                span.end()
        self._batch.end()
