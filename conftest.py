"""Shared fixtures. Services (Kafka, Redis, PostgreSQL) come from the testing.services plugin."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.supervisor import Supervisor, current_database_url


@pytest.fixture(autouse=True)
def _no_outage_carried_between_tests() -> None:
    """Outage back-offs are per process; an outage one test caused must not skip calls in
    the next test."""
    from common.throttling import _cache_backoff
    from kafka_bridge.outbox import relay_waker
    from notifications.services import _enqueue_backoff
    from orders.status_feed import publisher

    relay_waker.backoff.reset()
    publisher.backoff.reset()
    _enqueue_backoff.reset()
    _cache_backoff.reset()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    """Test users get passwords: PBKDF2 costs ~0.25 s of CPU per hash, MD5 next to nothing.
    Only this process hashes or checks them (workers authenticate API tokens)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _gateway_threads_closed() -> Iterator[None]:
    """Provider calls made in this process run on pool threads with database connections of
    their own: end them with the test, so that no connection outlives its test database."""
    yield
    from orders.payments import gateway_pool_shutdown

    gateway_pool_shutdown()


@pytest.fixture
def kafka_namespace(settings) -> str:  # type: ignore[no-untyped-def]
    """A fresh topic/group namespace for this test: no event of another test is ever seen."""
    namespace = f"{settings.KAFKA['NAMESPACE']}{uuid.uuid4().hex[:6]}-"
    settings.KAFKA = {**settings.KAFKA, "NAMESPACE": namespace}
    return namespace


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def pipeline(  # type: ignore[no-untyped-def]
    request, transactional_db, kafka_namespace: str, tmp_path: Path
) -> Iterator[Supervisor]:
    """Real worker processes against the test database; stopped with SIGTERM afterwards,
    and every one of them must exit 0 (graceful shutdown is part of every test)."""
    import os

    from kafka_bridge.client import pipeline_topics, topics_ensure

    topics_ensure(pipeline_topics())
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "KAFKA_NAMESPACE": kafka_namespace,
        "CELERY_TASK_DEFAULT_QUEUE": f"{kafka_namespace}celery",
        "PYTHONUNBUFFERED": "1",
    }
    processes = Supervisor(env=env, log_dir=tmp_path)
    try:
        yield processes
    finally:
        codes = processes.stop()
        if request.node.stash.get(CALL_FAILED, False):
            print(processes.logs()[-20000:])  # shown by pytest under "Captured stdout"
    bad = {name: code for name, code in codes.items() if code != 0}
    assert not bad, f"workers did not exit cleanly: {bad}\n{processes.logs()[-6000:]}"
