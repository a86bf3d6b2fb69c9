"""Correlation ids: taken from the HTTP request (or made), carried through every event."""

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Protocol

from django.http import HttpRequest, HttpResponse

CORRELATION_HEADER = "X-Correlation-ID"
_MAX_LENGTH = 100


class CorrelatedEvent(Protocol):
    """What `causing_events` needs of an event: its id and the chain it belongs to."""

    @property
    def event_id(self) -> uuid.UUID: ...

    @property
    def correlation_id(self) -> str: ...


_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# While a consumer applies a batch: event id → correlation id of every event in hand.
_causing_events: ContextVar[dict[uuid.UUID, str] | None] = ContextVar(
    "causing_events", default=None
)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def current_correlation_id() -> str:
    """The id of the request or event being handled; a fresh one outside any."""
    return _correlation_id.get() or new_correlation_id()


@contextlib.contextmanager
def correlation_scope(correlation_id: str) -> Iterator[None]:
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


def correlation_id_for(causation_id: uuid.UUID | None) -> str:
    """The correlation id for an event caused by `causation_id`: its cause's, when that
    event is in hand (a batch carries many chains at once), else the current one."""
    if causation_id is not None:
        found = (_causing_events.get() or {}).get(causation_id)
        if found is not None:
            return found
    return current_correlation_id()


@contextlib.contextmanager
def causing_events(events: Iterable[CorrelatedEvent]) -> Iterator[None]:
    """Make the events being applied known as causes (see `correlation_id_for`)."""
    token = _causing_events.set({event.event_id: event.correlation_id for event in events})
    try:
        yield
    finally:
        _causing_events.reset(token)


def _clean(raw: str | None) -> str | None:
    if not raw:
        return None
    raw = raw.strip()
    if not raw or len(raw) > _MAX_LENGTH or not raw.isprintable():
        return None
    return raw


class CorrelationIdMiddleware:
    """Adopt the caller's X-Correlation-ID (or make one) and echo it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = _clean(request.headers.get(CORRELATION_HEADER)) or new_correlation_id()
        with correlation_scope(correlation_id):
            response = self.get_response(request)
        response[CORRELATION_HEADER] = correlation_id
        return response
