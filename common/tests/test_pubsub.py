"""Redis pub/sub for live updates against a redis-server of the test's own, which it stops,
freezes and starts again: the hub tells its watchers when it is down and when it is back,
and the publisher drops messages during an outage without raising or blocking."""

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.pubsub import HUB_DOWN, HUB_UP, BackgroundPublisher, ChannelHub
from tools.localservices import LocalService, start_redis

CHANNEL = "test:pubsub"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalService]:
    service = start_redis(tmp_path)
    yield service
    service.stop()


def _parse(raw: bytes) -> tuple[str, str]:
    key, _, body = raw.decode().partition(":")
    return key, body


async def _next(queue: asyncio.Queue, timeout: float = 10.0) -> object:
    async with asyncio.timeout(timeout):
        return await queue.get()


def test_the_hub_hands_messages_to_the_watchers_of_their_key_and_survives_an_outage(
    own_redis: LocalService, tmp_path: Path
):
    publisher = redis.Redis.from_url(own_redis.url)
    port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])

    async def scenario() -> None:
        hub = ChannelHub(
            CHANNEL, parse=_parse, url=own_redis.url, ping_seconds=0.5, retry_seconds=0.2
        )
        async with hub.watch("a") as a, hub.watch("b") as b:
            # subscribed on entry
            assert a.live and b.live
            publisher.publish(CHANNEL, b"a:first")
            publisher.publish(CHANNEL, b"b:other")
            assert await _next(a.queue) == "first"
            assert await _next(b.queue) == "other"

            # Redis stops: every watcher is told, and `live` is false
            own_redis.stop()
            assert await _next(a.queue) == HUB_DOWN
            assert not a.live

            # Redis is back: every watcher is told (to catch up), then messages flow again
            restarted = start_redis(tmp_path / "again", port=port)
            try:
                assert await _next(a.queue, timeout=15) == HUB_UP
                assert a.live
                publisher.publish(CHANNEL, b"a:second")
                assert await _next(a.queue) == "second"
            finally:
                restarted.stop()
        assert hub.watcher_count == 0

    asyncio.run(scenario())


def test_a_frozen_redis_is_noticed_by_the_hubs_ping(own_redis: LocalService):
    async def scenario() -> None:
        hub = ChannelHub(
            CHANNEL, parse=_parse, url=own_redis.url, ping_seconds=0.3, retry_seconds=0.2
        )
        async with hub.watch("a") as watch:
            assert watch.live
            own_redis.freeze()
            try:
                assert await _next(watch.queue) == HUB_DOWN
            finally:
                own_redis.thaw()
            assert await _next(watch.queue) == HUB_UP

    asyncio.run(scenario())


def test_a_watch_begins_without_redis_and_says_it_is_not_live(own_redis: LocalService):
    own_redis.stop()

    async def scenario() -> None:
        hub = ChannelHub(CHANNEL, parse=_parse, url=own_redis.url, retry_seconds=0.2)
        async with hub.watch("a", ready_timeout=0.3) as watch:
            assert not watch.live

    asyncio.run(scenario())


def test_the_publisher_drops_messages_while_redis_is_down_and_logs_once(
    own_redis: LocalService, settings, caplog
):
    settings.REDIS_URL = own_redis.url
    from common.redis_client import redis_client

    redis_client.cache_clear()
    publisher = BackgroundPublisher("test-publisher")
    own_redis.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="common.pubsub"):
            publisher.publish(CHANNEL, [b"a:1", b"a:2"])
            assert publisher.wait_idle(10)
            publisher.publish(CHANNEL, [b"a:3"])  # within the back-off: not even tried
            assert publisher.wait_idle(10)
    finally:
        redis_client.cache_clear()
    assert publisher.dropped == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "test-publisher paused, Redis unavailable" in warnings[0]
