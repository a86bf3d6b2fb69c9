"""A circuit breaker whose state every process shares, in Redis.

    closed ──(fail_max failures in a row)──▶ open ──(reset_timeout passed)──▶ half-open
      ▲                                       ▲                                   │
      └────────────(the probe succeeds)───────┼───────────────────────────────────┤
                                              └────────(the probe fails)──────────┘

Closed, calls go through. Open, none does: the caller gets `CircuitOpen` answers at once.
Once `reset_timeout` has passed, exactly one caller, in whichever process asks first, gets
to make one call (the probe, under a lease of `probe_timeout`, after which another caller
may probe if the first vanished); its outcome closes or reopens the breaker.

Every decision is one Lua script in Redis, on Redis's clock, so processes never race on a
transition and their clocks do not matter. Calls come in batches (a consumer's charges),
and so does the breaker: one round trip asks what a batch may do (`admit`), one reports how
its calls went (`record`), and a batch that all went well while nothing was failing reports
nothing. Failures count in a row: any success among a batch's calls resets the count to the
failures after it.

If Redis cannot be reached the breaker cannot know or share anything: calls go through as
if closed (the callers' own retries then handle failures), with one warning per outage.

(pybreaker, with its Redis storage, was not used: its half-open state lets every call
through, the move to half-open is a read then a write that several processes can make at
once, a breaker serialises the calls of its process under one lock for their whole
duration, and each call costs several Redis round trips.)
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import redis
from prometheus_client import Counter, Gauge, disable_created_metrics

from common.redis_client import OutageBackoff, redis_client

logger = logging.getLogger(__name__)

K = TypeVar("K")
disable_created_metrics()


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


# The gauge's values: the worse the state, the higher, so that max() over processes is right.
STATE_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

CIRCUIT_STATE = Gauge(
    "circuit_breaker_state",
    "State of each circuit breaker, read from Redis at scrape time: 0 closed, 1 half-open "
    "(a probe is allowed), 2 open (calls fail fast). NaN when Redis cannot be read.",
    ["breaker"],
)
CIRCUIT_TRANSITIONS = Counter(
    "circuit_breaker_transitions",
    "State changes of each circuit breaker made by this process, by the state entered.",
    ["breaker", "state"],
)


class CircuitOpen(Exception):
    """The breaker is open: the call was not made."""

    def __init__(self, breaker: str) -> None:
        super().__init__(f"circuit {breaker} is open: call not made")
        self.breaker = breaker


@dataclass(frozen=True)
class Admission:
    """What a batch of calls may do now."""

    state: BreakerState
    failures: int = 0  # failures in a row so far (closed)
    probe: bool = False  # half-open, and this caller holds the probe: one call
    reachable: bool = True  # False: Redis could not be asked; calls go through

    @property
    def allowed(self) -> int | None:
        """How many calls may go: None for all of them, 1 for a probe, 0 when open."""
        if self.probe:
            return 1
        return None if self.state == BreakerState.CLOSED else 0


@dataclass(frozen=True)
class BreakerSnapshot:
    name: str
    state: BreakerState | None  # None: Redis could not be read
    failures: int = 0
    opened_at: datetime | None = None
    changed_at: datetime | None = None  # the last transition


# KEYS[1] the breaker's hash; ARGV: reset timeout (ms), probe lease (ms).
# Returns {outcome, failures, entered}: outcome "closed", "probe" or "open"; entered is the
# state this call moved the breaker to ("" if none).
_ADMIT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'probe_until')
local state = h[1] or 'closed'
local failures = tonumber(h[2] or '0')
if state == 'closed' then return {'closed', failures, ''} end
if state == 'open' then
  if now < tonumber(h[3] or '0') + tonumber(ARGV[1]) then return {'open', failures, ''} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'changed_at', now,
             'probe_until', now + tonumber(ARGV[2]))
  return {'probe', failures, 'half_open'}
end
if now >= tonumber(h[4] or '0') then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
  return {'probe', failures, ''}
end
return {'open', failures, ''}
"""

# KEYS[1] the breaker's hash; ARGV: probe (0/1), any call succeeded (0/1), failures in all,
# failures after the last success, fail_max. Returns {state now, state entered or ""}.
_RECORD = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  if state ~= 'half_open' then return {state, ''} end
  if ARGV[2] == '1' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'changed_at', now,
               'probe_until', 0)
    return {'closed', 'closed'}
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'changed_at', now,
             'probe_until', 0)
  return {'open', 'open'}
end
if state ~= 'closed' then return {state, ''} end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if ARGV[2] == '1' then failures = tonumber(ARGV[4]) else failures = failures + tonumber(ARGV[3]) end
if failures >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', failures, 'opened_at', now,
             'changed_at', now)
  return {'open', 'open'}
end
redis.call('HSET', KEYS[1], 'failures', failures)
return {'closed', ''}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _moment(milliseconds: Any) -> datetime | None:
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC) if milliseconds else None


class CircuitBreaker:
    """One breaker, by name; its state lives under `key` in Redis."""

    def __init__(
        self,
        name: str,
        *,
        fail_max: int,
        reset_timeout: float,
        probe_timeout: float,
        key: str,
        client: Callable[[], redis.Redis] = redis_client,
    ) -> None:
        if fail_max < 1:
            raise ValueError("fail_max must be at least 1")
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self.probe_timeout = probe_timeout
        self.key = key
        self._client = client
        self._backoff = OutageBackoff()
        self._transitions = {
            state: CIRCUIT_TRANSITIONS.labels(name, state.value) for state in BreakerState
        }

    # --- Redis, once per call, an outage costing one timeout every few seconds -----------
    def _run(self, script: str, *args: Any) -> list[Any] | None:
        if not self._backoff.ready():
            return None
        try:
            answer = self._client().eval(script, 1, self.key, *args)
        except redis.RedisError as exc:
            if self._backoff.failed():
                logger.warning(
                    "circuit %s: Redis unavailable (%s); calls go through unguarded", self.name, exc
                )
            return None
        if self._backoff.succeeded():
            logger.warning("circuit %s: Redis is back; the breaker guards calls again", self.name)
        return [_text(value) for value in answer]

    def _entered(self, state: str, *, failures: int = 0) -> None:
        if not state:
            return
        entered = BreakerState(state)
        self._transitions[entered].inc()
        if entered == BreakerState.OPEN:
            logger.warning(
                "circuit %s opened (%d failures in a row): calls fail fast for %.0fs",
                self.name,
                failures,
                self.reset_timeout,
            )
        elif entered == BreakerState.HALF_OPEN:
            logger.info("circuit %s half-open: one probe call goes through", self.name)
        else:
            logger.warning("circuit %s closed: the probe succeeded", self.name)

    # --- the two steps of a batch of calls ---------------------------------------------
    def admit(self) -> Admission:
        """What the next calls may do: all of them (closed), one probe, or none (open)."""
        answer = self._run(
            _ADMIT, round(self.reset_timeout * 1000), round(self.probe_timeout * 1000)
        )
        if answer is None:
            return Admission(BreakerState.CLOSED, reachable=False)
        outcome, failures, entered = answer[0], int(answer[1]), answer[2]
        self._entered(entered)
        if outcome == "probe":
            return Admission(BreakerState.HALF_OPEN, failures=failures, probe=True)
        return Admission(BreakerState(outcome), failures=failures)

    def record(self, admission: Admission, *, outcomes: Sequence[bool]) -> BreakerState:
        """Report how the admitted calls went, in call order (True: the service answered,
        False: it failed); return the state the breaker is in now."""
        if not admission.reachable or not outcomes:
            return admission.state
        if admission.state == BreakerState.CLOSED and admission.failures == 0 and all(outcomes):
            return BreakerState.CLOSED  # nothing to change: spare the round trip
        trailing = next((i for i, ok in enumerate(reversed(outcomes)) if ok), len(outcomes))
        answer = self._run(
            _RECORD,
            int(admission.probe),
            int(any(outcomes)),
            outcomes.count(False),
            trailing,
            self.fail_max,
        )
        if answer is None:
            return admission.state
        self._entered(answer[1], failures=admission.failures + outcomes.count(False))
        return BreakerState(answer[0])

    def calls(
        self,
        calls: Mapping[K, Callable[[], Any]],
        *,
        run: Callable[[Mapping[K, Callable[[], Any]]], dict[K, Any]],
        failed: Callable[[Any], bool],
    ) -> dict[K, Any]:
        """Make `calls` through the breaker with `run` (which returns each call's answer: a
        result or the exception it raised), and return every answer. Calls the breaker does
        not let through get a `CircuitOpen` answer, and so do the failures of calls that
        opened it: they wait for the breaker to close, like the others. Half-open, one call,
        picked at random (a call that keeps failing cannot starve the rest), is the probe; if
        it succeeds the rest go too."""
        answers: dict[K, Any] = {}
        pending = list(calls)
        while pending:
            admission = self.admit()
            allowed = admission.allowed
            if allowed == 0:
                answers.update((key, CircuitOpen(self.name)) for key in pending)
                break
            chunk = pending if allowed is None else [random.choice(pending)]
            got = run({key: calls[key] for key in chunk})
            state = self.record(admission, outcomes=[not failed(got[key]) for key in chunk])
            if state != BreakerState.CLOSED:
                got = {k: CircuitOpen(self.name) if failed(a) else a for k, a in got.items()}
            answers.update(got)
            pending = [key for key in pending if key not in got]
        return answers

    # --- reading it --------------------------------------------------------------------
    def snapshot(self) -> BreakerSnapshot:
        """The breaker as Redis has it now (state None if Redis cannot be read). An open
        breaker whose timeout has passed still reads open until a caller probes."""
        if not self._backoff.ready():
            return BreakerSnapshot(self.name, None)
        try:
            state, failures, opened_at, changed_at = self._client().hmget(
                self.key, "state", "failures", "opened_at", "changed_at"
            )
        except redis.RedisError as exc:
            if self._backoff.failed():
                logger.warning("circuit %s: Redis unavailable (%s)", self.name, exc)
            return BreakerSnapshot(self.name, None)
        self._backoff.succeeded()
        return BreakerSnapshot(
            self.name,
            BreakerState(_text(state)) if state else BreakerState.CLOSED,
            int(failures or 0),
            _moment(opened_at),
            _moment(changed_at),
        )

    def reset(self) -> None:
        """Forget the state (closed, no failures): for operators and tests."""
        self._client().delete(self.key)

    def export(self) -> None:
        """Expose this breaker's state gauge (read from Redis when scraped) and start its
        transition counts at 0, so that an increase() sees the first transition too."""
        CIRCUIT_STATE.labels(self.name).set_function(self._state_value)

    def _state_value(self) -> float:
        state = self.snapshot().state
        return math.nan if state is None else float(STATE_VALUES[state])
