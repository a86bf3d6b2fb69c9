"""Gunicorn settings of the web service: the Docker image, docker-compose and the benchmark
(`python -m tools.bench`) all run `gunicorn ecommerce.wsgi:application` with this file
(gunicorn reads ./gunicorn.conf.py by itself; command-line flags override it).

    WEB_CONCURRENCY  worker processes; default: CPUs available + 1 (3 on 2 cores)
    WEB_THREADS      threads per worker; default 4
    WEB_BIND         address; default 0.0.0.0:8000
    PROMETHEUS_MULTIPROC_DIR  where workers keep their metrics; default a fresh directory
                     under the system's temporary directory
"""

import glob
import os
import tempfile
from typing import Any

from common.structured_logs import logging_config

# gthread, not the default sync worker: sync workers close the connection after every
# response (no keep-alive), and a request waiting on PostgreSQL would idle its whole process.
# Threads overlap those waits, so one process per core plus one (for a worker that is busy
# in pure Python or collecting garbage) keeps the cores busy; the classic 2 x cores + 1 is
# for sync workers. Each thread holds its own database connection (workers x threads).
# The worker is gthread's, except that the errors gunicorn answers itself (a request line over
# limit_request_line: 414; a malformed request line or header: 400; headers too large: 431)
# are JSON in the API's error format, as the OpenAPI schema declares (common/http_worker.py).
worker_class = "common.http_worker.JsonErrorThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", len(os.sched_getaffinity(0)) + 1))
threads = int(os.environ.get("WEB_THREADS", 4))
bind = [os.environ.get("WEB_BIND", "0.0.0.0:8000")]
# Idle keep-alive connections are closed after this; a reverse proxy should keep its own
# idle timeout below it.
keepalive = 5
# No control socket (gunicorn 25.1+, for `gunicornc`): nothing here uses it, its default path
# under $HOME is read-only in the image, and every gunicorn on one host would share it.
control_socket_disable = True
# Logs: gunicorn's own lines through the same structured formatter as the app's
# (LOG_FORMAT, common/structured_logs.py). No gunicorn access log: the app writes one
# line per request itself, with its correlation, user and order ids.
accesslog = None
logconfig_dict = logging_config(
    log_format=os.environ.get("LOG_FORMAT", "console"),
    level=os.environ.get("LOG_LEVEL", "INFO"),
    # gunicorn gives its loggers handlers of their own before reading this: replace them.
    loggers={
        name: {"level": "INFO", "handlers": ["console"], "propagate": False}
        for name in ("gunicorn.error", "gunicorn.access")
    },
)
# Compose's stop_grace_period is 30 s: requests in flight get 25 of them.
graceful_timeout = 25

# Metrics (common/metrics.py): each worker process writes its values to files in this
# directory, and /metrics adds up every worker's, so a scrape sees the whole server whichever
# worker answers it (prometheus-client's multiprocess mode). Set here, before any worker
# imports prometheus_client; emptied when the server starts, so counts start from zero.
# METRICS_ENABLED=false (only to measure what metrics cost) leaves multiprocess mode off.
metrics_enabled = os.environ.get("METRICS_ENABLED", "true").lower() not in ("false", "0", "off")
metrics_dir = (
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        os.path.join(tempfile.gettempdir(), f"ecommerce-prometheus-{os.getpid()}"),
    )
    if metrics_enabled
    else None
)


def _metrics_files_remove() -> None:
    if metrics_dir is not None:
        for path in glob.glob(os.path.join(metrics_dir, "*.db")):
            os.remove(path)


def on_starting(server: Any) -> None:
    if metrics_dir is not None:
        os.makedirs(metrics_dir, exist_ok=True)
    _metrics_files_remove()


def child_exit(server: Any, worker: Any) -> None:
    if metrics_dir is None:
        return
    # Drops the dead worker's live gauges; its counters and histograms stay counted.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    _metrics_files_remove()


# Tracing (common/tracing.py), configured in each worker: its exporter thread must live in
# the process that makes the spans, and Django's middleware is instrumented before the
# worker loads the application.
def post_fork(server: Any, worker: Any) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    from common.tracing import tracing_configure

    tracing_configure("web", http_server=True)


def worker_exit(server: Any, worker: Any) -> None:
    from common.tracing import tracing_shutdown

    tracing_shutdown()  # export the spans still buffered
