"""Distributed tracing (OpenTelemetry): one trace per order, across every process it passes.

Each entry point calls `tracing_configure(<its name>)` once: gunicorn's `post_fork` ("web"),
`run_relay` ("relay"), `run_consumer <name>` ("consumer-<name>"), Celery's
`worker_process_init` ("celery-worker") and `beat_init` ("celery-beat"). It reads the
standard OpenTelemetry environment only (docs/tracing.md). Unless an OTLP endpoint is set
(and neither `OTEL_SDK_DISABLED` nor `OTEL_TRACES_EXPORTER=none` says otherwise) it does
nothing: no SDK is imported, no instrumentation installed, no exporter thread started; the
OpenTelemetry API stays its no-op self, and `enabled` stays False. The hot paths (relay
batches, consumer batches, outbox writes) read `enabled` once per batch and skip every
per-event step when it is False.

The trace context (W3C `traceparent`, `tracestate`) travels with the work:

    HTTP request: Django server span (opentelemetry-instrumentation-django)
    → each event recorded meanwhile: its outbox row's `trace_context`
    → the relay: a PRODUCER span per event, parented on that; its context in the Kafka headers
    → each consumer: a CONSUMER span per event, parented on the headers
    → the events its handlers record (the outbox again) and the Celery tasks they queue,
      each parented on the span of the event that caused it (`causing_event_contexts`)

Handlers work on whole batches, so "the current span" cannot say which event caused a
write: causes are looked up by causation id, as correlation ids are
(`common.correlation`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import CarrierT, Getter, default_getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

T = TypeVar("T")

# True once `tracing_configure` installed the SDK in this process.
enabled = False
_provider: TracerProvider | None = None

# Our own propagation (outbox rows, Kafka headers) is always W3C trace context, whatever
# OTEL_PROPAGATORS says for HTTP and Celery: those are the two fields we store and send.
_propagator = TraceContextTextMapPropagator()

# Health checks and scrapes would each be a trace of their own: left out unless the
# instrumentation's own variables say which URLs to leave out.
_DJANGO_EXCLUDED_URLS = "/healthz/,/readyz/,/metrics"
_EXPORTERS = ("otlp", "console", "none")


def _exporter_names(environ: Mapping[str, str]) -> list[str] | None:
    """The exporters the environment asks for; None (with the reason logged) when traces
    are not to be exported at all, which is the default: no endpoint, no tracing."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [
        name.strip().lower()
        for name in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")
        if name.strip()
    ]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        logger.warning("tracing off: OTEL_TRACES_EXPORTER %s not supported", ",".join(unknown))
        return None
    names = [name for name in names if name != "none"]
    if "otlp" in names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if not endpoint:
            names.remove("otlp")  # the usual case: nowhere to send spans to
        elif protocol != "http/protobuf":
            # Only the OTLP/HTTP exporter is installed; gRPC would need its own client.
            logger.warning(
                "tracing off: OTLP protocol %r not supported, use http/protobuf", protocol
            )
            return None
    return names or None


def tracing_configure(service_name: str, *, http_server: bool = False) -> bool:
    """Install the SDK, the exporter and the instrumentations in this process, if the
    environment asks for traces; once per process. `service_name` is `service.name` unless
    OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) names the service.
    `http_server`: also trace Django's requests (call it before the WSGI app loads).
    Returns whether tracing is on."""
    global enabled, _provider
    if _provider is not None:
        return True
    names = _exporter_names(os.environ)
    if names is None:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = SERVICE_NAME in OTELResourceDetector().detect().attributes
    # The sampler comes from OTEL_TRACES_SAMPLER / _ARG, batching from OTEL_BSP_*.
    provider = TracerProvider(
        resource=Resource.create({} if named else {SERVICE_NAME: service_name})
    )
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _provider = provider
    enabled = True
    _celery_instrument()
    if http_server:
        _django_instrument()
    return True


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION itself.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _celery_instrument() -> None:
    # Every process may queue tasks (consumers, the admin), and the worker runs them: the
    # publish injects the current context into the task's headers, the run continues it.
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument()


def _django_instrument() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    options: dict[str, Any] = {}
    if not (
        os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS")
        or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
    ):
        options["excluded_urls"] = _DJANGO_EXCLUDED_URLS
    DjangoInstrumentor().instrument(**options)


def tracing_shutdown() -> None:
    """Export what is buffered and stop the exporter: on a graceful stop. Safe to call
    when tracing is off or already shut down."""
    global _provider
    if _provider is not None:
        provider, _provider = _provider, None
        provider.shutdown()


# --- carrying the context -------------------------------------------------------------


def context_inject(context: Context | None = None) -> dict[str, str]:
    """The W3C headers (`traceparent`, `tracestate` if any) of `context` (default: the
    current one); empty when it holds no valid span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier


def context_extract(carrier: CarrierT, getter: Getter[CarrierT] = default_getter) -> Context:
    """The context whose remote parent is the span the carrier's headers name (an empty
    context when they name none)."""
    return _propagator.extract(carrier, getter=getter)


# While a consumer applies a batch: event id → the context of that event's span.
_cause_contexts: ContextVar[dict[uuid.UUID, Context] | None] = ContextVar(
    "cause_contexts", default=None
)


@contextlib.contextmanager
def causing_event_contexts(contexts: dict[uuid.UUID, Context]) -> Iterator[None]:
    """Make the events being applied known as causes, each with its span's context: what
    they cause continues their trace (see `context_for_cause`)."""
    token = _cause_contexts.set(contexts)
    try:
        yield
    finally:
        _cause_contexts.reset(token)


def context_for_cause(causation_id: uuid.UUID | None) -> Context:
    """The context to continue for work caused by `causation_id`: that event's span while
    it is in hand, else the current context (a request's, a task's)."""
    if causation_id is not None:
        found = (_cause_contexts.get() or {}).get(causation_id)
        if found is not None:
            return found
    return otel_context.get_current()


def stored_context(causation_id: uuid.UUID | None) -> str:
    """What an outbox row keeps of its trace: the W3C headers of its cause's context as
    JSON, or "" when there is no trace to continue."""
    carrier = context_inject(context_for_cause(causation_id))
    return json.dumps(carrier, separators=(",", ":")) if carrier else ""


def stored_context_headers(stored: str) -> dict[str, str]:
    """The headers `stored_context` kept ("" → none)."""
    return json.loads(stored) if stored else {}


def grouped_by_cause(
    items: Sequence[T], causes: Sequence[uuid.UUID | None] = ()
) -> list[tuple[Context | None, list[T]]]:
    """`items` grouped by the trace each continues: (context, items) pairs, in order of
    first appearance; `causes[i]` is the event that caused `items[i]` (none: the current
    context). Work queued per group is then parented on its cause's span, such as one
    Celery task per traced event of a consumer batch. With tracing off: one group, no
    context, and no per-item work. Unsampled causes share one group: nothing of theirs is
    recorded, so nothing is gained by splitting them."""
    if not enabled:
        return [(None, list(items))]
    padded = [*causes, *([None] * (len(items) - len(causes)))]
    groups: dict[object, tuple[Context, list[T]]] = {}
    for item, cause in zip(items, padded, strict=False):
        context = context_for_cause(cause)
        span_context = trace.get_current_span(context).get_span_context()
        key = (
            (span_context.trace_id, span_context.span_id)
            if span_context.trace_flags.sampled
            else "unsampled"
        )
        groups.setdefault(key, (context, []))[1].append(item)
    return list(groups.values())


@contextlib.contextmanager
def context_attached(context: Context | None) -> Iterator[None]:
    """Make `context` current inside the block (nothing when None): what an instrumented
    call (a Celery publish) then does is parented on it."""
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)
