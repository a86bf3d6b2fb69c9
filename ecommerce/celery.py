"""Celery app: Redis broker, tasks autodiscovered from each app's `tasks.py`.

Database connections of a worker live as long as Django says, as in web requests and
consumers. Celery's Django fix-up would close them before and after every task
(`CELERY_DB_REUSE_MAX` unset): with PostgreSQL each task then paid for a new server process
and a login. Instead `close_old_connections()` runs around each task, as Django's request
handler does around each request: it closes a connection that failed or outlived
`CONN_MAX_AGE`, and `CONN_HEALTH_CHECKS` makes the next query check it first.
"""

import os
from typing import Any

from celery import Celery, Task
from celery.signals import (
    beat_init,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")

app = Celery("ecommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Task | None = None, **kwargs: Any) -> None:
    # An eager task runs inside its caller (a test's transaction, say): its connection is
    # the caller's to manage, as the fix-up also leaves it alone.
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections  # Django is set up by the time a task runs

    close_old_connections()


@worker_ready.connect
def _metrics_serve(sender: Any = None, **kwargs: Any) -> None:
    """The worker's metrics (notification sends by channel and outcome) on METRICS_PORT,
    when it is set. The counters live where the tasks run: in this process with the solo
    and threads pools. Prefork children each count their own, so with that pool the
    worker serves them only in prometheus-client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR
    set, to an existing empty directory, in the worker's environment."""
    import logging

    from django.conf import settings

    if settings.METRICS_PORT is None:
        return
    from celery.concurrency.prefork import TaskPool
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    logger = logging.getLogger(__name__)
    pool_cls = getattr(getattr(sender, "controller", None), "pool_cls", None)
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    elif isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool):
        logger.warning(
            "no metrics served: the prefork pool needs PROMETHEUS_MULTIPROC_DIR "
            "(or run the worker with --pool=threads or --pool=solo)"
        )
        return
    start_http_server(settings.METRICS_PORT, addr=settings.METRICS_ADDR, registry=registry)
    logger.info("metrics at http://%s:%d/metrics", settings.METRICS_ADDR, settings.METRICS_PORT)


@worker_ready.connect
def _started_objects_freeze(**kwargs: Any) -> None:
    # As the relay and the consumers do: start-up's objects out of the collector's sight.
    from kafka_bridge.lifecycle import started_objects_freeze

    started_objects_freeze()


# Tracing (common/tracing.py): configured in the process that runs the tasks, so that the
# exporter's thread lives there (a prefork child, or the worker itself with the solo pool,
# which sends worker_process_init too), and flushed when it stops.
@worker_process_init.connect
def _tracing_configure_worker(**kwargs: Any) -> None:
    from common.tracing import tracing_configure

    tracing_configure("celery-worker")


@beat_init.connect
def _tracing_configure_beat(**kwargs: Any) -> None:
    from common.tracing import tracing_configure

    tracing_configure("celery-beat")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _tracing_shutdown(**kwargs: Any) -> None:
    from common.tracing import tracing_shutdown

    tracing_shutdown()
