"""pytest plugin (loaded with `-p testing.services`): real Kafka, Redis and PostgreSQL.

Each service is chosen, before Django reads its settings, in this order:
1. an explicit environment variable (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, DATABASE_URL);
2. testcontainers, when a Docker engine answers (real Apache Kafka, Redis, PostgreSQL);
3. a local fallback: the Tansu broker binary and redis-server, started here on free ports
   and stopped at the end; PostgreSQL on 127.0.0.1:5432 (user postgres).
If none works the run fails loudly: integration tests are never skipped for lack of a service.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tools.localservices import (
    LocalService,
    LocalServiceError,
    docker_available,
    port_open,
    start_kafka,
    start_redis,
)


@dataclass
class ServiceSet:
    kafka_bootstrap: str = ""
    kafka_source: str = ""  # "env", "testcontainers" or "tansu"
    redis_url: str = ""
    redis_source: str = ""
    database_url: str = ""
    database_source: str = ""
    local: dict[str, LocalService] = field(default_factory=dict)
    containers: list[Any] = field(default_factory=list)

    @property
    def is_apache_kafka(self) -> bool:
        """Whether end offsets and transaction isolation can be trusted (not Tansu)."""
        return self.kafka_source != "tansu"

    def stop(self) -> None:
        for service in self.local.values():
            service.stop()
        for container in self.containers:
            container.stop()


SERVICES = ServiceSet()

# Client settings that keep group joins and latency short against any broker in tests
# (see docs/test-broker.md); an explicit environment value still wins.
TEST_ENVIRONMENT = {
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "KAFKA_FETCH_WAIT_MAX_MS": "10",
    "KAFKA_PRODUCER_LINGER_MS": "1",
    "KAFKA_DEFAULT_PARTITIONS": "4",
    "KAFKA_HANDLER_BACKOFF_BASE_SECONDS": "0.05",
    "KAFKA_HANDLER_BACKOFF_MAX_SECONDS": "0.5",
    "OUTBOX_POLL_INTERVAL_SECONDS": "0.5",
    # Each concurrent fake-provider call holds a database connection: keep test runs (which
    # may share one PostgreSQL) well inside its connection limit.
    "PAYMENTS_MAX_CONCURRENCY": "8",
    "DJANGO_DEBUG": "false",
    # Tests send requests far faster than any client may; the rate-limit tests turn the
    # limits on with short windows of their own (settings.API_THROTTLING).
    "API_THROTTLING": "false",
    # Webhook receivers in tests listen on 127.0.0.1 over http:// (the SSRF guard's own tests
    # turn the guard back on).
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    # Likewise the risk check: tests place dozens of orders per customer within seconds,
    # many on one shared token (tok_decline), which is what its velocity rules hold. The
    # risk tests turn it on (risk/tests/, tests/test_risk_pipeline.py).
    "RISK_ENABLED": "false",
    # The tests of retries and dead letters fail one order's charge again and again
    # (tok_unavailable), which the payment circuit breaker would take for an outage, holding
    # the order back instead of dead-lettering it. The breaker's tests set their own limit
    # (tests/test_payment_breaker.py).
    "PAYMENTS_BREAKER_FAIL_MAX": "1000",
}


def _provision(services: ServiceSet) -> None:
    docker = None  # probed lazily: only when some service is not given by the environment

    def use_docker() -> bool:
        nonlocal docker
        if docker is None:
            docker = docker_available()
        return docker

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        services.kafka_bootstrap, services.kafka_source = (
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            "env",
        )
    elif use_docker():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer().with_kraft()
        container.start()
        services.containers.append(container)
        services.kafka_bootstrap, services.kafka_source = (
            container.get_bootstrap_server(),
            "testcontainers",
        )
    else:
        broker = start_kafka()
        services.local["kafka"] = broker
        services.kafka_bootstrap, services.kafka_source = broker.url, "tansu"

    if os.environ.get("REDIS_URL"):
        services.redis_url, services.redis_source = os.environ["REDIS_URL"], "env"
    elif use_docker():
        from testcontainers.redis import RedisContainer

        container = RedisContainer()
        container.start()
        services.containers.append(container)
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        services.redis_url, services.redis_source = f"redis://{host}:{port}/0", "testcontainers"
    else:
        redis_service = start_redis()
        services.local["redis"] = redis_service
        services.redis_url, services.redis_source = redis_service.url, "redis-server"

    if os.environ.get("DATABASE_URL"):
        services.database_url, services.database_source = os.environ["DATABASE_URL"], "env"
    elif use_docker():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver=None)
        container.start()
        services.containers.append(container)
        services.database_url = container.get_connection_url().replace(
            "postgresql://", "postgres://"
        )
        services.database_source = "testcontainers"
    elif port_open("127.0.0.1", 5432):
        # A name per run: concurrent runs on one machine get separate test databases.
        services.database_url = f"postgres://postgres@127.0.0.1:5432/ecommerce_{os.getpid()}"
        services.database_source = "local postgres"
    else:
        raise LocalServiceError(
            "no PostgreSQL: set DATABASE_URL, start Docker, or run PostgreSQL on 127.0.0.1:5432"
        )


def _redis_database_offset(url: str, offset: int) -> str:
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database + offset) % 16}"))


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process is pytest-xdist's controller, about to start worker processes."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    options = config.known_args_namespace
    return bool(getattr(options, "numprocesses", None) or getattr(options, "tx", None))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    # Runs before pytest-django imports the settings, so they see the chosen services.
    if _xdist_controller(early_config):
        # The controller runs no test: each worker provisions services of its own (its own
        # broker and redis-server, which the fault tests freeze; its own database).
        yield
        return
    try:
        _provision(SERVICES)
    except Exception as exc:
        SERVICES.stop()
        raise pytest.UsageError(f"test services unavailable: {exc}") from exc
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker and SERVICES.redis_source == "env":
        # xdist workers given one Redis: a database each, as each has its own PostgreSQL
        # database (rate-limit counters are keyed by user ids, which the workers share).
        SERVICES.redis_url = _redis_database_offset(SERVICES.redis_url, int(worker[2:]))
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = SERVICES.kafka_bootstrap
    os.environ["REDIS_URL"] = SERVICES.redis_url
    os.environ["DATABASE_URL"] = SERVICES.database_url
    # Topics and groups of this run are namespaced, so runs sharing a broker never mix.
    os.environ.setdefault("KAFKA_NAMESPACE", f"t{uuid.uuid4().hex[:8]}-")
    for key, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if not SERVICES.is_apache_kafka:
        # Lag figures and `consumer_lag` then say that end offsets are approximate.
        os.environ.setdefault("KAFKA_END_OFFSETS_APPROXIMATE", "true")
    yield


def pytest_unconfigure(config: pytest.Config) -> None:
    SERVICES.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not SERVICES.kafka_bootstrap:
        return ["services: one set per xdist worker"]
    return [
        f"kafka: {SERVICES.kafka_bootstrap} ({SERVICES.kafka_source})",
        f"redis: {SERVICES.redis_url} ({SERVICES.redis_source})",
        f"database: {SERVICES.database_url.split('@')[-1]} ({SERVICES.database_source})",
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The one allowed skip: behaviour our test broker does not implement (end offsets,
    # transaction isolation) is tested only where the broker is Apache Kafka.
    if SERVICES.is_apache_kafka:
        return
    skip = pytest.mark.skip(reason="needs Apache Kafka (the Tansu test broker lacks it)")
    for item in items:
        if "apache_kafka" in item.keywords:
            item.add_marker(skip)
