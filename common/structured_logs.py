"""Structured logs: every line of every process through one structlog formatter.

Our code, Django, Celery, gunicorn and librdkafka's callbacks all log through the standard
library; `formatter` renders their records with structlog's `ProcessorFormatter`, adding
the ids bound in context (`structlog.contextvars`) to every line:

    web request     correlation_id, http_method, http_path, user_id, order_id (when the URL
                    or the view names one)
    consumer batch  consumer_group, batch_size; topic, partition, offset, event_id,
                    event_type, correlation_id, order_id when one event is in hand (a batch
                    of one, a retry, a dead letter)
    Celery task     notification_id, order_id, event_id, correlation_id

`LOG_FORMAT=json` (docker-compose) writes one JSON object per line; `console` (the default,
`make run`) readable lines. Binding costs a few context-variable writes per batch, nothing
per line that is not emitted.
"""

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog
from structlog.contextvars import (
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    merge_contextvars,
)

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

LOG_FORMATS = ("console", "json")

__all__ = [
    "LOG_FORMATS",
    "bind_contextvars",
    "clear_contextvars",
    "formatter",
    "log_context",
    "logging_config",
]


def _uvicorn_colour_dropped(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """uvicorn passes a coloured copy of some messages as the extra `color_message`."""
    event.pop("color_message", None)
    return event


def formatter(log_format: str = "console") -> logging.Formatter:
    """The formatter of every handler (Django's LOGGING and gunicorn's logconfig_dict)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    pre_chain = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _uvicorn_colour_dropped,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        # "event" is structlog's key for the message; ours names domain events.
        final = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(default=str),
        ]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=False, pad_event_to=40)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )


def logging_config(
    *, log_format: str, level: str, loggers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: one stream handler on the root logger."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {"()": "common.structured_logs.formatter", "log_format": log_format}
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": dict(loggers or {}),
    }


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Bind `ids` (None values left out) to every line logged inside the block."""
    with bound_contextvars(**{name: value for name, value in ids.items() if value is not None}):
        yield


request_logger = logging.getLogger("ecommerce.requests")


class RequestLogMiddleware:
    """Binds the request's ids to every line logged while it is served, and writes one
    line per request (method, route, status, duration): the access log, with the ids that
    gunicorn's own access log cannot know. Place it after CorrelationIdMiddleware."""

    def __init__(self, get_response: Callable[["HttpRequest"], "HttpResponse"]) -> None:
        self.get_response = get_response

    def __call__(self, request: "HttpRequest") -> "HttpResponse":
        from common.correlation import current_correlation_id

        started = time.perf_counter()
        # A fresh context: gunicorn's threads serve one request after another.
        clear_contextvars()
        bind_contextvars(
            correlation_id=current_correlation_id(),
            http_method=request.method,
            http_path=request.path,
        )
        try:
            response = self.get_response(request)
            user = getattr(request, "user", None)
            match = request.resolver_match
            request_logger.info(
                "request",
                extra={
                    "status": response.status_code,
                    "route": match.route if match is not None else None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "user_id": user.pk if user is not None and user.is_authenticated else None,
                },
            )
        finally:
            clear_contextvars()
        return response

    def process_view(
        self, request: "HttpRequest", view: object, args: object, kwargs: dict[str, Any]
    ) -> None:
        if "order_id" in kwargs:
            bind_contextvars(order_id=str(kwargs["order_id"]))
