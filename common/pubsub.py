"""Redis pub/sub for live updates: a publisher that never holds up whoever commits, and a
subscriber hub that fans one channel out to many waiting coroutines.

Pub/sub delivers at most once: a message published while a subscriber is disconnected is
gone. Both sides therefore treat it as a hint. Subscribers read the truth from the database
whenever the hub (re)connects and keep polling while it is down; the publisher drops
messages during an outage instead of queueing them without bound.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis
import redis.asyncio
from django.conf import settings

from common.redis_client import OutageBackoff, redis_client

logger = logging.getLogger(__name__)


class BackgroundPublisher:
    """Publishes messages from a thread of its own, in the order they were handed over.

    `publish()` only appends to a queue, so a request or a consumer batch that has just
    committed never waits for Redis (a frozen Redis would hold it for the socket timeout).
    The thread sends whatever has queued up in one pipeline. After a failure it drops what it
    holds and stays quiet for a while (`OutageBackoff`), logging once per outage. At most
    `max_pending` messages wait; beyond that the oldest are dropped.
    """

    def __init__(self, name: str, *, max_pending: int = 10_000) -> None:
        self.name = name
        self.backoff = OutageBackoff()
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: deque[tuple[str, bytes]] = deque()
        self._wake = threading.Condition()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None

    def publish(self, channel: str, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        with self._wake:
            self._pending.extend((channel, message) for message in messages)
            while len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():  # first use, or a fork
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._wake.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything handed over was published or dropped (tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._idle.set()
                    self._wake.wait()
                batch = list(self._pending)
                self._pending.clear()
            self._send(batch)

    def _send(self, batch: list[tuple[str, bytes]]) -> None:
        if not self.backoff.ready():
            self.dropped += len(batch)
            return
        try:
            pipe = redis_client().pipeline(transaction=False)
            for channel, message in batch:
                pipe.publish(channel, message)
            pipe.execute()
        except redis.RedisError as exc:
            self.dropped += len(batch)
            if self.backoff.failed():
                logger.warning("%s paused, Redis unavailable: %s", self.name, exc)
            return
        if self.backoff.succeeded():
            logger.info("%s resumed", self.name)


# What a watcher's queue receives besides messages: the hub is down (poll), or it is up
# again after being down or before its first subscription (read what may have been missed).
HUB_DOWN: Final = "down"
HUB_UP: Final = "up"


@dataclass(eq=False)
class Watch:
    """One watcher of one key: messages for that key, and the hub's ups and downs."""

    key: str
    hub: "ChannelHub"
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    @property
    def live(self) -> bool:
        """Whether messages arrive: the hub's subscription is confirmed and answering."""
        return self.hub.live


class ChannelHub:
    """One Redis subscription per process and event loop, shared by every watcher.

    The hub subscribes to `channel` once, parses each message once (`parse(message)`: its
    key and what watchers get, or None to drop it) and hands it to the watchers of its key.
    A process with thousands of watchers holds one Redis connection. The hub pings Redis
    when the channel is quiet and reconnects when an answer is overdue, so a silently dead
    connection is noticed within `ping_seconds` x 2.
    """

    def __init__(
        self,
        channel: str,
        *,
        parse: Callable[[bytes], tuple[str, Any] | None],
        url: str | None = None,
        ping_seconds: float = 5.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self.channel = channel
        self.parse = parse
        self.url = url or settings.REDIS_URL
        self.ping_seconds = ping_seconds
        self.retry_seconds = retry_seconds
        self.live = False
        self.loop = asyncio.get_running_loop()
        self._watchers: dict[str, set[Watch]] = {}
        self._became_live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = False

    @property
    def watcher_count(self) -> int:
        return sum(len(watchers) for watchers in self._watchers.values())

    @contextlib.asynccontextmanager
    async def watch(self, key: str, *, ready_timeout: float = 1.0) -> AsyncIterator[Watch]:
        """Watch `key` for the block. On entry the hub is subscribed, or known to be down
        (after waiting at most `ready_timeout` for its first subscription): a message
        published after entry reaches the watcher whenever `live` is true."""
        self._ensure_running()
        watch = Watch(key, self)
        self._watchers.setdefault(key, set()).add(watch)
        try:
            if not self.live:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._became_live.wait(), ready_timeout)
            # Ups and downs before entry say nothing the watcher needs: it reads after entry.
            waiting = [watch.queue.get_nowait() for _ in range(watch.queue.qsize())]
            for item in waiting:
                if item not in (HUB_UP, HUB_DOWN):
                    watch.queue.put_nowait(item)
            yield watch
        finally:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[key]

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run(), name=f"pubsub-hub {self.channel}")

    def _broadcast(self, item: str) -> None:
        for watchers in self._watchers.values():
            for watch in watchers:
                watch.queue.put_nowait(item)

    def _set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        if live:
            self._became_live.set()
            self._broadcast(HUB_UP)
        else:
            self._became_live.clear()
            self._broadcast(HUB_DOWN)

    async def _run(self) -> None:
        while True:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=self.ping_seconds * 2
            )
            pubsub = client.pubsub()
            try:
                await self._listen(pubsub)
            except (redis.RedisError, OSError, TimeoutError) as exc:
                if not self._outage:
                    self._outage = True
                    logger.warning(
                        "live updates on Redis channel %s lost, watchers poll: %s",
                        self.channel,
                        exc,
                    )
            finally:
                self._set_live(False)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(self.retry_seconds)

    async def _listen(self, pubsub: Any) -> None:
        await pubsub.subscribe(self.channel)
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_seconds)
            now = time.monotonic()
            if message is None:
                if now - heard < self.ping_seconds:
                    continue
                if pinged:
                    raise TimeoutError(f"no answer from Redis in {now - heard:.0f}s")
                await pubsub.ping()
                pinged = True
                continue
            heard, pinged = now, False
            kind = message["type"]
            if kind == "subscribe":
                if self._outage:
                    self._outage = False
                    logger.info("live updates on Redis channel %s back", self.channel)
                self._set_live(True)
            elif kind == "message" and (parsed := self.parse(message["data"])) is not None:
                key, item = parsed
                for watch in self._watchers.get(key, ()):
                    watch.queue.put_nowait(item)
