"""/healthz/ (alive), /readyz/ (database, Redis, Kafka answer in time) and worker liveness.

Outages are real: a dedicated redis-server or broker started for the test is frozen
(SIGSTOP) or stopped, so the services the rest of the suite shares are never touched."""

import subprocess
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from common.redis_client import redis_client
from kafka_bridge.health import readiness_admin_client
from testing.faults import service_frozen
from testing.polling import wait_until
from tools.localservices import LocalService, start_kafka, start_redis
from tools.supervisor import manage

pytestmark = pytest.mark.integration


@pytest.fixture
def readiness(settings) -> None:  # type: ignore[no-untyped-def]
    settings.READINESS_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def own_redis(settings, tmp_path) -> Iterator[LocalService]:  # type: ignore[no-untyped-def]
    service = start_redis(tmp_path)
    settings.REDIS_URL = service.url
    redis_client.cache_clear()
    try:
        yield service
    finally:
        service.stop()
        redis_client.cache_clear()  # the next test's client reaches the shared Redis again


@pytest.fixture
def own_broker(settings, tmp_path) -> Iterator[LocalService]:  # type: ignore[no-untyped-def]
    service = start_kafka(tmp_path)
    settings.KAFKA = {**settings.KAFKA, "BOOTSTRAP_SERVERS": service.url}
    try:
        yield service
    finally:
        service.stop()
        readiness_admin_client.cache_clear()  # else it goes on reconnecting to the stopped broker


def _ready(client) -> bool:  # type: ignore[no-untyped-def]
    return client.get("/readyz/").status_code == 200


def _down(client) -> list[str] | None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz/")
    assert response.status_code in (200, 503), response.content
    if response.status_code != 503:
        return None
    body = response.json()
    assert body["status"] == "unavailable"
    assert all(body["checks"][name] != "ok" for name in body["down"])
    return body["down"]


def test_healthz_answers_without_dependencies(client):
    response = client.get("/healthz/")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_readyz_is_200_when_everything_answers(db, client, readiness):
    response = client.get("/readyz/")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "kafka": "ok"},
    }


def test_readyz_names_redis_while_it_is_frozen_or_stopped(db, client, readiness, own_redis):
    assert _ready(client)

    # Frozen: Redis holds the connection and answers nothing
    with service_frozen(own_redis):
        assert _down(client) == ["redis"]
    wait_until(lambda: _ready(client), timeout=30, message="ready after Redis thawed")

    # Stopped, then started again on the same port
    port = int(own_redis.url.rsplit(":", 1)[1].split("/")[0])
    own_redis.stop()
    assert _down(client) == ["redis"]
    restarted = start_redis(own_redis.log_path.parent, port=port)
    try:
        wait_until(lambda: _ready(client), timeout=30, message="ready after Redis restarted")
    finally:
        restarted.stop()


def test_readyz_names_the_broker_while_it_is_frozen_or_stopped(db, client, readiness, own_broker):
    assert _ready(client)

    with service_frozen(own_broker):
        # polled: on a loaded machine the first check after the freeze was once seen to pass
        wait_until(lambda: _down(client) == ["kafka"], timeout=10, message="kafka frozen")
    wait_until(lambda: _ready(client), timeout=30, message="ready after the broker thawed")

    port = int(own_broker.url.rsplit(":", 1)[1])
    own_broker.stop()
    wait_until(lambda: _down(client) == ["kafka"], timeout=10, message="kafka down")
    restarted = start_kafka(own_broker.log_path.parent, port=port)
    try:
        wait_until(lambda: _ready(client), timeout=30, message="ready after the broker restarted")
    finally:
        restarted.stop()


def test_worker_alive_follows_the_heartbeat_of_a_running_worker(pipeline):
    # Before the relay ever ran there is no heartbeat
    with pytest.raises(CommandError, match="relay: no heartbeat yet"):
        call_command("worker_alive", "relay")

    # While it runs, it is alive
    relay = pipeline.relay()

    def alive() -> bool:
        try:
            call_command("worker_alive", "relay", max_age=5)
        except CommandError:
            return False
        return True

    wait_until(alive, timeout=30, message="relay heartbeat")

    # Once it stopped, its heartbeat ages past --max-age: exit 1 and one readable line
    assert relay.terminate() == 0

    def stale() -> subprocess.CompletedProcess[str] | None:
        result = subprocess.run(
            manage("worker_alive", "relay", "--max-age", "1"),
            env=pipeline.env,
            capture_output=True,
            text=True,
        )
        return result if result.returncode != 0 else None

    result = wait_until(stale, timeout=30, interval=0.5, message="stale heartbeat")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "relay: last heartbeat" in line and "ago (max 1s)" in line
