"""Step 4a, trace (only while tracing is on; the runner decides once per batch): a CONSUMER
span per event, parented on the context its message's headers carry, open while the batch
is applied.

Handlers work on the whole batch, so no one span can be current while they run. Instead
each event's span context is made known by event id (`causing_event_contexts`): an event
recorded with that event as its cause stores that span's context in the outbox, and a
Celery task queued for it is published under it. So each order's trace goes on through
this consumer, whatever else shares the batch.
"""

import contextlib
import uuid
from collections.abc import Iterator, Sequence

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from common.tracing import causing_event_contexts
from kafka_bridge.contracts import Event
from kafka_bridge.tracing import message_context

from .received import Received

_tracer = trace.get_tracer(__name__)


@contextlib.contextmanager
def events_traced(
    *, group: str, items: Sequence[Received], events: Sequence[Event]
) -> Iterator[None]:
    """Spans for `events` (taken from `items`) while the block applies them; ended when it
    has committed, or with the error that failed it."""
    messages = {item.event.event_id: item.message for item in items if item.event is not None}
    spans: dict[uuid.UUID, Span] = {}
    for event in events:
        message = messages[event.event_id]
        spans[event.event_id] = _tracer.start_span(
            f"process {event.event_type}",
            context=message_context(message),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.topic() or "",
                "messaging.destination.partition.id": str(message.partition()),
                "messaging.kafka.offset": message.offset() or 0,
                "messaging.consumer.group.name": group,
                "messaging.message.id": str(event.event_id),
                "ecommerce.event_type": event.event_type,
                "ecommerce.correlation_id": event.correlation_id,
            },
        )
    contexts = {event_id: trace.set_span_in_context(span) for event_id, span in spans.items()}
    try:
        with causing_event_contexts(contexts):
            yield
    except BaseException as exc:
        # The batch is split and retried: each attempt is a span of its own.
        for span in spans.values():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        raise
    for span in spans.values():
        span.end()
