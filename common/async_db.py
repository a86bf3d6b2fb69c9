"""Database work for async code (the ASGI stream process), on a few threads of its own.

Under ASGI, Django runs each request's synchronous code on a thread of that request, with a
connection of that request: a burst of requests is a burst of connections, and a
long-lived response (a stream) that reads the database now and then would hold one for its
whole life. `DatabaseThreads` instead runs such work on a small pool: at most `size`
connections, each kept across calls and checked before each one as a request or a worker
checks its own (`DATABASE_CONN_MAX_AGE`, health checks).

It runs callables with `loop.run_in_executor`, not `sync_to_async`: the call does not carry
the caller's context along, so each pool thread has its own connection rather than sharing
the request's (Django keeps connections per context).
"""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseThreads:
    def __init__(self, name: str, *, size: Callable[[], int]) -> None:
        self.name = name
        self._size = size
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._size(), thread_name_prefix=self.name)
        return self._pool

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(_with_fresh_connection, functools.partial(fn, *args, **kwargs))
        return await loop.run_in_executor(self._executor(), call)


def _with_fresh_connection(call: Callable[[], T]) -> T:
    # What a request does at its start: drop a connection that is too old or broken.
    close_old_connections()
    return call()


def view_on_database_threads(
    view: Callable[..., HttpResponseBase], threads: DatabaseThreads
) -> Callable[..., Awaitable[HttpResponseBase]]:
    """An async view that runs the synchronous `view` (e.g. a DRF `APIView.as_view()`:
    authentication, throttles, lookups) on `threads` under an ASGI server. Under WSGI (or
    Django's test client) it runs it as Django runs any view there, on the request's thread.
    It keeps what the CSRF middleware and the schema generator read from the view (`cls`,
    `initkwargs`, `csrf_exempt`)."""

    async def run(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if isinstance(request, ASGIRequest):
            return await threads.run(view, request, *args, **kwargs)
        return await sync_to_async(view)(request, *args, **kwargs)

    for name in ("cls", "initkwargs", "csrf_exempt", "__doc__", "__name__", "__qualname__"):
        if hasattr(view, name):
            setattr(run, name, getattr(view, name))
    return run
