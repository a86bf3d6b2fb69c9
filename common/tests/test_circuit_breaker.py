"""The shared circuit breaker against the real Redis. Each CircuitBreaker object stands for a
process: they share nothing but the Redis key, as processes do."""

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from common.circuit_breaker import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
)
from common.redis_client import redis_client
from testing.polling import wait_until
from tools.localservices import free_port

pytestmark = pytest.mark.integration


class Down(Exception):
    """The guarded service did not answer."""


@pytest.fixture
def key() -> Iterator[str]:
    key = f"test-circuit:{uuid.uuid4().hex}"
    yield key
    redis_client().delete(key)


def _breaker(
    key: str, *, fail_max: int = 3, reset: float = 0.3, probe: float = 5.0
) -> CircuitBreaker:
    return CircuitBreaker(
        f"test-{key[-6:]}", fail_max=fail_max, reset_timeout=reset, probe_timeout=probe, key=key
    )


def _run(calls: dict[Any, Callable[[], Any]]) -> dict[Any, Any]:
    answers = {}
    for key, call in calls.items():
        try:
            answers[key] = call()
        except Exception as exc:
            answers[key] = exc
    return answers


def _failed(answer: object) -> bool:
    return isinstance(answer, Down)


def _down() -> str:
    raise Down("no answer")


def _through(breaker: CircuitBreaker, calls: dict[Any, Callable[[], Any]]) -> dict[Any, Any]:
    return breaker.calls(calls, run=_run, failed=_failed)


def _fail(breaker: CircuitBreaker, times: int) -> dict[Any, Any]:
    return _through(breaker, {n: _down for n in range(times)})


def test_opens_after_fail_max_failures_in_a_row_and_then_fails_fast(key):
    breaker = _breaker(key, fail_max=3)

    # Two failures: still closed, the failures are the callers' to handle
    answers = _fail(breaker, 2)
    assert all(isinstance(a, Down) for a in answers.values())
    assert breaker.snapshot().state == BreakerState.CLOSED

    # The third opens it: that failure waits too, like everything after it
    [answer] = _fail(breaker, 1).values()
    assert isinstance(answer, CircuitOpen)
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.failures) == (BreakerState.OPEN, 3)
    called = []
    answers = _through(breaker, {"a": lambda: called.append("a")})
    assert isinstance(answers["a"], CircuitOpen)
    assert called == []  # failed fast: never attempted


def test_a_success_resets_the_run_of_failures(key):
    breaker = _breaker(key, fail_max=3)
    _fail(breaker, 2)

    # A batch where a call fails, one succeeds, then another fails: one failure after it
    _through(breaker, {1: _down, 2: lambda: "ok", 3: _down})
    assert breaker.snapshot().failures == 1
    _fail(breaker, 1)
    assert breaker.snapshot().state == BreakerState.CLOSED  # 2 in a row, not 4


def test_all_processes_see_the_same_state(key):
    first, second = _breaker(key), _breaker(key)

    _fail(first, 3)

    assert second.snapshot().state == BreakerState.OPEN
    assert second.admit().allowed == 0


def test_once_the_timeout_passed_exactly_one_process_gets_the_probe(key):
    # Given an open breaker and eight processes asking at the same moment after its timeout
    breakers = [_breaker(key, reset=0.2) for _ in range(8)]
    _fail(breakers[0], 3)
    time.sleep(0.25)
    start = threading.Barrier(len(breakers))
    admissions = []

    def ask(breaker: CircuitBreaker) -> None:
        start.wait()
        admissions.append(breaker.admit())

    threads = [threading.Thread(target=ask, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one holds the probe (one call); the others wait as if open
    assert sorted(a.allowed for a in admissions) == [0] * 7 + [1]
    assert breakers[0].snapshot().state == BreakerState.HALF_OPEN


def test_a_successful_probe_closes_it_and_the_rest_of_the_batch_goes_through(key):
    breaker = _breaker(key, reset=0.2)
    _fail(breaker, 3)
    time.sleep(0.25)
    called = []

    answers = _through(breaker, {n: (lambda n=n: called.append(n) or n) for n in range(5)})

    assert answers == {n: n for n in range(5)}
    assert sorted(called) == list(range(5))
    snapshot = breaker.snapshot()
    assert (snapshot.state, snapshot.failures) == (BreakerState.CLOSED, 0)


def test_a_failed_probe_opens_it_again_for_another_timeout(key):
    breaker = _breaker(key, reset=0.2)
    _fail(breaker, 3)
    time.sleep(0.25)
    attempted = []

    def down_and_noted(n: int) -> str:
        attempted.append(n)
        raise Down("still down")

    answers = _through(breaker, {n: (lambda n=n: down_and_noted(n)) for n in range(4)})

    assert len(attempted) == 1  # the probe only
    assert all(isinstance(a, CircuitOpen) for a in answers.values())
    assert breaker.snapshot().state == BreakerState.OPEN
    assert breaker.admit().allowed == 0  # a new timeout started


def test_a_probe_whose_process_vanished_is_given_again_after_its_lease(key):
    breaker = _breaker(key, reset=0.1, probe=0.3)
    _fail(breaker, 3)
    time.sleep(0.15)
    assert breaker.admit().probe  # taken, and never reported (the process died)
    assert breaker.admit().allowed == 0

    time.sleep(0.35)

    assert breaker.admit().probe


def test_results_of_calls_admitted_before_it_opened_change_nothing(key):
    # Given a batch admitted while closed, and the breaker opened by others meanwhile
    slow, fast = _breaker(key), _breaker(key)
    admission = slow.admit()
    _fail(fast, 3)

    # When the slow batch reports how it went
    slow.record(admission, outcomes=[True])
    state = slow.record(admission, outcomes=[False, True])

    # Then it stays open: only a probe closes it
    assert state == BreakerState.OPEN
    assert fast.snapshot().state == BreakerState.OPEN


def test_a_batch_that_went_well_costs_one_round_trip(key):
    evals = []
    client = redis_client()

    class Counting:
        def eval(self, *args: Any) -> Any:
            evals.append(args[0][:40])
            return client.eval(*args)

    breaker = CircuitBreaker(
        "counting", fail_max=3, reset_timeout=1, probe_timeout=1, key=key, client=lambda: Counting()
    )

    _through(breaker, {n: (lambda n=n: n) for n in range(50)})

    assert len(evals) == 1  # admit; nothing to report


def test_without_redis_calls_go_through_and_one_warning_is_logged(caplog):
    closed_port = f"redis://127.0.0.1:{free_port()}/0"
    client = redis.Redis.from_url(closed_port, socket_connect_timeout=0.2, socket_timeout=0.2)
    breaker = CircuitBreaker(
        "unreachable",
        fail_max=1,
        reset_timeout=60,
        probe_timeout=1,
        key="test-circuit:unreachable",
        client=lambda: client,
    )

    with caplog.at_level(logging.WARNING, logger="common.circuit_breaker"):
        for _ in range(3):
            answers = _fail(breaker, 2)
            assert all(isinstance(a, Down) for a in answers.values())  # the callers' to handle

    assert breaker.snapshot().state is None
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_state_gauge_reads_redis_at_scrape_and_transitions_are_counted(key):
    breaker = _breaker(key, reset=0.1)
    breaker.export()

    def gauge() -> float:
        return REGISTRY.get_sample_value("circuit_breaker_state", {"breaker": breaker.name})

    def transitions(state: str) -> float:
        return REGISTRY.get_sample_value(
            "circuit_breaker_transitions_total", {"breaker": breaker.name, "state": state}
        )

    assert (gauge(), transitions("open")) == (0.0, 0.0)  # the series exist from the start
    _fail(breaker, 3)
    assert (gauge(), transitions("open")) == (2.0, 1.0)
    time.sleep(0.15)
    _through(breaker, {"probe": lambda: "ok"})
    assert gauge() == 0.0
    assert (transitions("half_open"), transitions("closed")) == (1.0, 1.0)

    redis_client().delete(key)
    other = _breaker(key)  # another process opens it: this one's gauge shows it at once
    _fail(other, 3)
    wait_until(lambda: gauge() == 2.0, timeout=2)
    assert not math.isnan(gauge())
