"""Correlation ids: taken from the HTTP request (or made), carried through every event."""

import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

CORRELATION_HEADER = "X-Correlation-ID"
_MAX_LENGTH = 100

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


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
