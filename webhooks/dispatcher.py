"""The loop of `manage.py run_webhook_dispatcher`: claim due deliveries, send them on a
thread pool, record what came back.

- **The table is the queue.** Deliveries are rows (`WebhookDelivery`), written by the
  webhooks consumer in its batch transaction; the dispatcher claims the due ones with a
  lease (`claimed_until`), so several dispatchers can share the work and a crashed one's
  deliveries are taken over once their lease ends. Delivery is at least once: a crash
  after a send and before its outcome is recorded sends it again, with the same
  `webhook-id`.
- **A slow endpoint slows no other.** Each attempt has its own deadline
  (`WEBHOOKS_TIMEOUT_SECONDS`); up to `WEBHOOKS_MAX_CONCURRENCY` attempts run at once on a
  thread pool, at most `WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT` of them to one endpoint, so a
  slow endpoint occupies a few threads and the others keep going. The consumer and the
  saga never wait on any of it.
- **Order.** A delivery is not due while an earlier delivery of the same order to the same
  endpoint is pending (`webhook_deliveries_due`).
- **Stopping.** SIGTERM stops claiming, waits for the attempts in flight (each bounded by
  its timeout), records them and exits 0; a second signal exits at once.
"""

import logging
import time
import uuid
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from kafka_bridge.heartbeat import Heartbeat
from kafka_bridge.lifecycle import StopFlag
from webhooks.metrics import ATTEMPT_DURATION, ATTEMPTS, DELIVERIES, ENDPOINTS_DISABLED
from webhooks.sending import AttemptOutcome, DeliveryClaim, attempt_send
from webhooks.services import (
    CLAIM_MARGIN_SECONDS,
    webhook_attempts_record,
    webhook_deliveries_claim,
)

logger = logging.getLogger(__name__)

WORKER_NAME = "webhook-dispatcher"


@dataclass
class DispatcherStats:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0


@dataclass
class WebhookDispatcher:
    max_concurrency: int = field(default_factory=lambda: settings.WEBHOOKS["MAX_CONCURRENCY"])
    timeout: float = field(default_factory=lambda: settings.WEBHOOKS["TIMEOUT_SECONDS"])
    poll_interval: float = field(default_factory=lambda: settings.WEBHOOKS["POLL_INTERVAL_SECONDS"])
    allow_private: bool = field(default_factory=lambda: settings.WEBHOOKS["ALLOW_PRIVATE"])
    stats: DispatcherStats = field(default_factory=DispatcherStats)
    _in_flight: dict[Future[AttemptOutcome], DeliveryClaim] = field(default_factory=dict)
    _per_endpoint: Counter[uuid.UUID] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, self.max_concurrency), thread_name_prefix="webhook-send"
        )

    def step(self) -> int:
        """Record what finished, then claim and start what is due; returns how many
        attempts were started."""
        self._record_finished()
        claims = webhook_deliveries_claim(
            limit=self.max_concurrency - len(self._in_flight),
            in_flight=self._per_endpoint,
            lease_seconds=self.timeout + CLAIM_MARGIN_SECONDS,
        )
        for claim in claims:
            future = self.pool.submit(
                attempt_send, claim, timeout=self.timeout, allow_private=self.allow_private
            )
            self._in_flight[future] = claim
            self._per_endpoint[claim.endpoint_id] += 1  # type: ignore[index]
        return len(claims)

    def _record_finished(self) -> None:
        finished = [future for future in self._in_flight if future.done()]
        if not finished:
            return
        outcomes = [future.result() for future in finished]
        recorded = webhook_attempts_record(outcomes=outcomes)
        # Recorded: only now do they leave the books (a database error retries them).
        for future in finished:
            claim = self._in_flight.pop(future)
            self._per_endpoint[claim.endpoint_id] -= 1  # type: ignore[index]
            if self._per_endpoint[claim.endpoint_id] <= 0:  # type: ignore[index]
                del self._per_endpoint[claim.endpoint_id]  # type: ignore[arg-type]
        for outcome in outcomes:
            ATTEMPTS.labels(outcome.outcome).inc()
            ATTEMPT_DURATION.observe(outcome.duration_ms / 1000)
            if not outcome.ok:
                logger.info(
                    "webhook delivery %s attempt %d: %s",
                    outcome.delivery_id,
                    outcome.attempt,
                    outcome.error or outcome.outcome,
                )
        if recorded.delivered:
            DELIVERIES.labels("delivered").inc(recorded.delivered)
        if recorded.failed:
            DELIVERIES.labels("failed").inc(recorded.failed)
        if recorded.disabled_endpoints:
            ENDPOINTS_DISABLED.inc(len(recorded.disabled_endpoints))
        self.stats.attempts += len(outcomes)
        self.stats.delivered += recorded.delivered
        self.stats.failed += recorded.failed

    def _wait(self, stop: StopFlag) -> None:
        """Until an attempt finishes, or for one poll interval."""
        if self._in_flight:
            wait(list(self._in_flight), timeout=self.poll_interval, return_when=FIRST_COMPLETED)
        else:
            stop.wait(self.poll_interval)

    def run(self, stop: StopFlag) -> None:
        heartbeat = Heartbeat(WORKER_NAME)
        logger.info(
            "webhook dispatcher started: concurrency=%d timeout=%gs private addresses %s",
            self.max_concurrency,
            self.timeout,
            "allowed" if self.allow_private else "refused",
        )
        last_report = time.monotonic()
        while not stop.stopping:
            heartbeat.beat()
            try:
                self.step()
            except Exception:
                logger.exception("webhook dispatcher step failed; retrying")
                close_old_connections()
                stop.wait(self.poll_interval)
                continue
            self._wait(stop)
            if time.monotonic() - last_report > 30 and self.stats.attempts:
                logger.info(
                    "webhook dispatcher: %d attempts, %d delivered, %d failed so far",
                    self.stats.attempts,
                    self.stats.delivered,
                    self.stats.failed,
                )
                last_report = time.monotonic()
        self.close()

    def close(self) -> None:
        """Let the attempts in flight finish (each within its timeout) and record them."""
        if self._in_flight:
            logger.info("webhook dispatcher: finishing %d attempts in flight", len(self._in_flight))
        self.pool.shutdown(wait=True)
        for _ in range(3):  # a database error while stopping: try again, briefly
            try:
                self._record_finished()
                break
            except Exception:
                logger.exception("webhook dispatcher: recording the last outcomes failed")
                close_old_connections()
                time.sleep(0.5)
        logger.info(
            "webhook dispatcher stopped: %d attempts, %d delivered, %d failed",
            self.stats.attempts,
            self.stats.delivered,
            self.stats.failed,
        )
