"""Readiness: can this process serve? The database, Redis and every check an app adds
(`readiness_check_register`; kafka_bridge adds the broker) each have to answer within
`READINESS_TIMEOUT_SECONDS`.

Each check runs on a thread of its own kind, so a dependency that hangs (a frozen server
answers nothing and times nothing out) costs /readyz/ its deadline, not a stuck request
thread; checks queued behind a hung one are cancelled. The checks of one request run at
the same time, so the answer comes within one deadline however many are down.
"""

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connection

from common.redis_client import redis_client

logger = logging.getLogger(__name__)

OK = "ok"


def _database() -> None:
    # A fresh connection each time, closed at once: it proves a connection can be made, and
    # none lingers on this thread.
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _redis() -> None:
    redis_client().ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "redis": _redis,
}


def readiness_check_register(name: str, check: Callable[[], None]) -> None:
    """Add a dependency /readyz/ waits for: `check()` returns if it answers, raises if not.
    Called from an app's `ready()`."""
    CHECKS[name] = check


@functools.cache
def _thread(name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"readyz-{name}")


def readiness_check(timeout: float | None = None) -> dict[str, str]:
    """Each dependency → "ok", or why it is not ready: a timeout or the error's class. The
    error's message, which may name internal hosts, goes to the log only."""
    timeout = settings.READINESS_TIMEOUT_SECONDS if timeout is None else timeout
    futures: dict[str, Future[None]] = {
        name: _thread(name).submit(check) for name, check in CHECKS.items()
    }
    deadline = time.monotonic() + timeout
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = OK
        except FutureTimeout:
            future.cancel()
            logger.warning("readiness: %s did not answer within %gs", name, timeout)
            results[name] = f"no answer within {timeout:g}s"
        except Exception as exc:
            logger.warning("readiness: %s is down: %s: %s", name, type(exc).__name__, exc)
            results[name] = type(exc).__name__
    return results
