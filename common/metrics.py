"""Prometheus metrics of the web tier: request count and latency by route, method and status,
served at /metrics.

gunicorn runs several worker processes, each with its own counters: gunicorn.conf.py sets
`PROMETHEUS_MULTIPROC_DIR`, every worker then writes its values to files there, and
/metrics, whichever worker answers, adds up those of all workers (prometheus-client's
multiprocess mode). Without it (`make run` and the stream process: one uvicorn process)
/metrics serves the process's own registry.

One histogram, no separate counter: its `_count` series is the request count.
"""

import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

disable_created_metrics()

REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP requests by route pattern, method and status: latency, and request count (_count).",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Anything else a client sends is counted as "other": label values must stay few.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetricsMiddleware:
    """Times every request; labels it with the URL pattern that matched
    (`api/things/<uuid:thing_id>/`, never the path itself, which would make a series per
    object) or `unmatched`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        method = request.method if request.method in KNOWN_METHODS else "other"
        REQUEST_DURATION.labels(
            match.route if match is not None else "unmatched", method, str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: every gunicorn worker's metrics, added up."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
