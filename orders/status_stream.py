"""The live status of one order as Server-Sent Events (`GET /api/orders/{id}/events/`).

Each event is one status move: `id:` its number among the order's statuses (1 is `pending`),
`event: status`, and JSON data (order_id, status, reason, at). The stream starts with the
status now (or, resuming after `Last-Event-ID: n`, with every move after the n-th), sends
each move as the saga makes it, a comment every `LIVE_KEEPALIVE_SECONDS` while nothing
happens, and ends after a final status.

How nothing is lost or told twice:
1. the stream starts watching the order on the status feed (Redis pub/sub, one subscription
   per process: `orders.status_feed`) *before* it reads the order, so a move committed after
   that read is announced after the watch began, and is heard;
2. every move carries its number: a number already sent is dropped, the next one is sent
   as it came, and a gap (a message lost, or overtaken) is filled from the database;
3. while the feed is down (Redis unavailable), the stream reads the database every
   `LIVE_POLL_SECONDS` instead; when the feed is back it reads once more, then listens.
   While the feed is up it still reads every `LIVE_RESYNC_SECONDS`, in case an announcement
   was lost (pub/sub delivers at most once).

The database is read on a small pool of threads (`LIVE_DB_THREADS`, `common.async_db`),
each with one connection kept across reads; the view's authentication and lookup run there
too. An open stream holds no connection and no thread.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError

from common.async_db import DatabaseThreads
from common.pubsub import HUB_UP
from orders.selectors import order_status_moves_after, order_status_now
from orders.status import TERMINAL
from orders.status_feed import OrderStatusMove, status_hub

logger = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"
T = TypeVar("T")


def sse_status_event(move: OrderStatusMove) -> bytes:
    data = json.dumps(move.as_json(), separators=(",", ":"))
    return f"id: {move.seq}\nevent: status\ndata: {data}\n\n".encode()


class StatusCursor:
    """What a stream has sent: the number of the last move. `take` keeps the moves after
    it, in order, once each."""

    def __init__(self, after: int) -> None:
        self.seq = after
        self.final = False

    def take(self, moves: Sequence[OrderStatusMove]) -> bytes:
        chunk = b""
        for move in moves:
            if move.seq > self.seq and not self.final:
                chunk += sse_status_event(move)
                self.seq = move.seq
                self.final = move.status in TERMINAL
        return chunk


# The database threads of a process's streams: the view's authentication and lookup, then
# each stream's reads.
database_threads = DatabaseThreads(
    "status-stream-db", size=lambda: settings.ORDERS["LIVE_DB_THREADS"]
)


async def _db(read: Callable[..., T], **kwargs: Any) -> T | None:
    """`read(**kwargs)` on the database threads; None if the database failed (the stream
    tries again at its next read)."""
    try:
        return await database_threads.run(read, **kwargs)
    except DatabaseError as exc:
        logger.warning("live status stream: database read failed: %s", exc)
        return None


async def order_status_events(*, order_id: uuid.UUID, after: int | None) -> AsyncIterator[bytes]:
    """The order's status events; `after`: the number of the last move the client has
    (Last-Event-ID), None for a fresh start. See the module's docstring."""
    options = settings.ORDERS
    keepalive = options["LIVE_KEEPALIVE_SECONDS"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    cursor = StatusCursor(after or 0)

    async def read_moves() -> list[OrderStatusMove]:
        moves = await _db(order_status_moves_after, order_id=order_id, seq=cursor.seq)
        return moves or []

    async with status_hub().watch(str(order_id)) as watch:
        # Watching first, then reading: see the module's docstring.
        if after is None:
            now = await _db(order_status_now, order_id=order_id)
            moves = [now] if now is not None else []
        else:
            moves = await read_moves()
        last_read = last_sent = loop.time()
        yield b"retry: %d\n\n" % options["LIVE_RETRY_MS"] + cursor.take(moves)
        while not cursor.final:
            read_every = (
                options["LIVE_RESYNC_SECONDS"] if watch.live else options["LIVE_POLL_SECONDS"]
            )
            wake_at = min(
                last_sent + keepalive, last_read + read_every, started + options["LIVE_MAX_SECONDS"]
            )
            item: object = None
            try:
                async with asyncio.timeout(max(0.0, wake_at - loop.time())):
                    item = await watch.queue.get()
            except TimeoutError:
                pass
            moves = []
            if isinstance(item, OrderStatusMove):
                if item.seq == cursor.seq + 1:
                    moves = [item]
                elif item.seq > cursor.seq:  # a gap: some move was not heard
                    moves, last_read = await read_moves(), loop.time()
            elif item == HUB_UP or (item is None and loop.time() >= last_read + read_every):
                moves, last_read = await read_moves(), loop.time()
            chunk = cursor.take(moves)
            if not chunk and loop.time() >= last_sent + keepalive:
                chunk = KEEPALIVE
            if chunk:
                yield chunk
                last_sent = loop.time()
            if loop.time() - started >= options["LIVE_MAX_SECONDS"]:
                return  # the client reconnects with Last-Event-ID, maybe to another process
