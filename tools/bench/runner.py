"""The benchmark's phases, in the order they run (see tools/bench/__init__.py).

The product runs as deployed: gunicorn (gunicorn.conf.py), the outbox relay, one process
per consumer group and a Celery worker, all children of one Supervisor, in a fresh Kafka
namespace and Celery queue, against the configured database, Redis and broker. Orders come
over HTTP from the load generator, a separate process (tools.bench.loadgen).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from tqdm import tqdm

from api_tokens.services import api_tokens_issue
from inventory.services import product_create
from kafka_bridge.client import group_name, pipeline_topics, topic_name, topics_ensure
from kafka_bridge.models import OutboxEvent, ProcessedEvent
from kafka_bridge.registry import CONSUMERS
from kafka_bridge.relay import message_headers
from notifications.models import Notification
from orders.models import Order
from tools.bench import measure
from tools.bench.cpu import CpuMeter
from tools.bench.raw import RawMessage, raw_baselines
from tools.localservices import free_port
from tools.supervisor import REPO_ROOT, SAGA_CONSUMERS, Child, Supervisor, current_database_url

# Extra rows for the relay's drain (b) go to this logical topic, which no consumer reads.
RELAY_PAD_TOPIC = "bench-relay-drain"
# (g): the span processor's export delay with tracing on (OTEL_BSP_SCHEDULE_DELAY).
EXPORT_DELAY_S = 1.0
SETTLED_STATUSES = ("paid", "rejected", "cancelled", "payment_failed", "expired")


class BenchError(RuntimeError):
    pass


@dataclass
class BenchOptions:
    intake_seconds: float = 10.0
    saturation_seconds: float = 20.0
    rate: float = 100.0
    rate_seconds: float = 30.0
    # (f): open-loop rates below (d)'s, to show up to which rate the latency target holds.
    sweep_rates: tuple[float, ...] = (10.0, 25.0, 50.0)
    sweep_seconds: float = 20.0
    connections: int = 16
    customers: int = 200
    skus: int = 10
    baseline_messages: int = 200_000
    relay_events: int = 20_000
    latency_samples: int = 100
    generator_seconds: float = 5.0
    web_concurrency: int | None = None
    gateway_latency_ms: int = 0
    phase_timeout: float = 180.0
    # (g), run instead of the other phases: what tracing costs (--tracing-cost).
    tracing_cost: bool = False
    tracing_rate: float = 30.0
    tracing_seconds: float = 20.0
    tracing_rounds: int = 2
    # (h) what an order costs: CPU per process at a steady rate with every consumer running.
    cost_rate: float = 10.0
    cost_seconds: float = 30.0
    # The web tier against the bare authenticated view: seconds per target.
    web_seconds: float = 5.0
    # Only the ceiling, the web comparison, (h) and (c): the quick loop while tuning.
    cost_only: bool = False


@dataclass
class Bench:
    options: BenchOptions
    log: Callable[[str], None] = print
    namespace: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:6]}-")
    log_dir: Path = field(default_factory=lambda: Path(mkdtemp(prefix="bench-")))
    results: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        self.log(f"[{time.monotonic() - self._started:6.1f}s] {message}")

    # --- set-up -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        configured = settings.KAFKA
        try:
            return self._run()
        finally:
            settings.KAFKA = configured  # the namespace is this run's only

    def _run(self) -> dict[str, Any]:
        opts = self.options
        if connection.vendor != "postgresql":
            raise BenchError(f"the benchmark needs PostgreSQL, not {connection.vendor}")
        stale = OutboxEvent.objects.filter(published_at__isnull=True).count()
        if stale:
            raise BenchError(
                f"the outbox holds {stale} unpublished rows from before: the bench's relay "
                "would publish them into its namespace. Use a fresh database (make bench does)."
            )
        settings.KAFKA = {**settings.KAFKA, "NAMESPACE": self.namespace}
        topics_ensure(pipeline_topics())
        self.first_outbox_id = (
            OutboxEvent.objects.order_by("-id").values_list("id", flat=True)[:1].first() or 0
        )
        self.tokens_file, self.skus = self._customers_and_products()
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": current_database_url(),
            "KAFKA_NAMESPACE": self.namespace,
            "CELERY_TASK_DEFAULT_QUEUE": f"{self.namespace}celery",
            "PAYMENTS_FAKE_LATENCY_MS": str(opts.gateway_latency_ms),
            # The load generator is one client sending as fast as the server answers:
            # rate limits would measure themselves, not the pipeline.
            "API_THROTTLING": "false",
            # The risk check runs on every order, as deployed, so that its cost is measured;
            # but it acts on none: the load generator rotates a few hundred customers through
            # thousands of orders a minute, which its velocity rules would hold.
            "RISK_ENABLED": "true",
            "RISK_REVIEW_SCORE": "1000000",
            "RISK_BLOCK_SCORE": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
        if opts.web_concurrency:
            env["WEB_CONCURRENCY"] = str(opts.web_concurrency)
        # Logs as deployed (docker-compose, deploy/k8s): one JSON object per line. The
        # console format is for people reading `make run`, and costs more per line.
        env.setdefault("LOG_FORMAT", "json")
        self.supervisor = Supervisor(env=env, log_dir=self.log_dir)
        self.results["meta"] = {
            "namespace": self.namespace,
            "broker": settings.KAFKA["BOOTSTRAP_SERVERS"],
            "database": f"{connection.vendor} {connection.settings_dict['NAME']}",
            "cores": len(os.sched_getaffinity(0)),
            "load_average_at_start": list(os.getloadavg()),
            "web_concurrency": int(env.get("WEB_CONCURRENCY", len(os.sched_getaffinity(0)) + 1)),
            "web_threads": int(env.get("WEB_THREADS", 4)),
            "consumer_processes_per_group": 1,
            "gateway_latency_ms": opts.gateway_latency_ms,
            # METRICS_ENABLED=false make bench: what instrumentation costs (docs/benchmarks.md).
            "metrics_enabled": settings.METRICS_ENABLED,
            # Whether this environment's settings limit API rates; off for the run anyway.
            "api_throttling_configured": settings.API_THROTTLING,
            "options": vars(opts),
            "log_dir": str(self.log_dir),
            "started_at": timezone.now().isoformat(),
        }
        codes: dict[str, int] = {}
        try:
            if opts.tracing_cost:
                codes = self._tracing_cost(env)
            elif opts.cost_only:
                self.web = self._start_web()
                self._generator_ceiling()
                self._web_compare()
                self.supervisor.relay()
                self.supervisor.consumers()
                self.celery = self.supervisor.celery_worker()
                self._settle("warm-up: last notices", self.warm_up_ids, {})
                self._cost_at_rate()
                self._saturation()
            else:
                self.web = self._start_web()
                self._generator_ceiling()
                self._web_compare()
                backlog = self._intake_idle()
                self._raw_baselines()
                self._backlog_drain(backlog)
                self._saturation()
                self._cost_at_rate()
                self._fixed_rate()
                self._latency_by_rate()
        finally:
            codes.update(self.supervisor.stop())
            self.results["meta"]["exit_codes"] = codes
            self.results["meta"]["load_average_at_end"] = list(os.getloadavg())
        bad = {name: code for name, code in codes.items() if code != 0}
        if bad:
            self.say(f"warning: children did not exit cleanly: {bad}; logs in {self.log_dir}")
        self.results["api_errors"] = sum(
            self.results[phase]["errors"]
            for phase in ("intake_idle", "saturation", "fixed_rate", "cost", "web_compare")
            if phase in self.results
        ) + sum(r["errors"] for r in self.results.get("tracing_cost", {}).get("rounds", []))
        return self.results

    def _customers_and_products(self) -> tuple[Path, list[str]]:
        opts = self.options
        users = get_user_model().objects.bulk_create(
            [
                get_user_model()(username=f"{self.namespace}c{i}", email=f"c{i}@bench.invalid")
                for i in range(opts.customers)
            ]
        )
        path = self.log_dir / "tokens.txt"
        path.write_text("".join(f"{key}\n" for key in api_tokens_issue(users=users)))
        skus = []
        for index in range(opts.skus):
            sku = f"{self.namespace}SKU{index}"
            product_create(sku=sku, name=f"Bench product {index}", price="1.00", on_hand=10**9)
            skus.append(sku)
        return path, skus

    # --- processes ----------------------------------------------------------------------
    def _start_web(self, **env: str) -> Child:
        web = self.supervisor.spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(REPO_ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{self.port}",
                # The project's application plus the bench-only bare view (tools/bench/bare.py).
                "tools.bench.bare:application",
            ],
            label="web",
            **env,
        )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if not web.running or time.monotonic() > deadline:
                raise BenchError(f"gunicorn did not start:\n{web.log()[-3000:]}")
            time.sleep(0.1)
        # Warm-up, not measured: every worker imports its views and opens connections.
        self._load("warm-up", duration=1.0, path="/healthz/")
        self.warm_up_ids = self._load("warm-up", count=self.options.connections * 2)["order_ids"]
        return web

    def _healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz/", timeout=1):
                return True
        except OSError:
            return False

    def _load(
        self,
        label: str,
        *,
        duration: float = 0.0,
        count: int = 0,
        rate: float = 0.0,
        path: str = "/api/orders/",
    ) -> dict[str, Any]:
        """Run the load generator (its own process) and return its JSON result."""
        out = self.log_dir / f"load-{label}-{uuid.uuid4().hex[:4]}.json"
        argv = [
            sys.executable,
            "-m",
            "tools.bench.loadgen",
            "--url",
            f"http://127.0.0.1:{self.port}{path}",
            "--connections",
            str(self.options.connections),
            "--out",
            str(out),
        ]
        if path == "/api/orders/":
            argv += ["--tokens-file", str(self.tokens_file), "--skus", ",".join(self.skus)]
        if duration:
            argv += ["--duration", str(duration)]
        if count:
            argv += ["--count", str(count)]
        if rate:
            argv += ["--rate", str(rate)]
        # Its progress bar goes to our stderr; the result to a file.
        subprocess.run(argv, cwd=REPO_ROOT, check=True, timeout=duration + count + 300)
        return json.loads(out.read_text())

    def _meter(self) -> CpuMeter:
        def roots() -> dict[str, int]:
            children = {c.name: c.pid for c in self.supervisor.live() if c.pid is not None}
            return children | {"bench": os.getpid()}

        # The bench itself without its descendants: they are the children above.
        return CpuMeter(roots, solo=frozenset({"bench"}))

    def _wait(
        self,
        label: str,
        total: int,
        done: Callable[[], int],
        *,
        extra: Callable[[], bool] | None = None,
    ) -> bool:
        """Poll `done()` until it reaches `total` (and `extra()` holds) or the phase times
        out; a progress bar shows how far it got. True if complete."""
        deadline = time.monotonic() + self.options.phase_timeout
        with tqdm(total=total, desc=label, unit="ev", leave=False) as bar:
            while True:
                now = done()
                bar.update(max(0, min(now, total)) - bar.n)
                if now >= total and (extra is None or extra()):
                    return True
                if time.monotonic() > deadline:
                    self.say(f"{label}: timed out at {now}/{total}; figures are partial")
                    return False
                if (child := self.supervisor.exited()) is not None:
                    raise BenchError(
                        f"{child.name} exited ({child.returncode}):\n{child.log()[-3000:]}"
                    )
                time.sleep(0.2)

    # --- phases -------------------------------------------------------------------------
    def _generator_ceiling(self) -> None:
        """The load generator against a trivial endpoint of the same gunicorn: the most it
        (plus gunicorn and Django's middleware) can do, and its own CPU use meanwhile."""
        self.say("generator ceiling: GET /healthz/, closed loop")
        with self._meter() as meter:
            result = self._load(
                "healthz", duration=self.options.generator_seconds, path="/healthz/"
            )
        self.results["generator"] = {
            "requests_per_s": result["ok_per_s"],
            "errors": result["errors"],
            "latency_ms": result["latency_ms"],
            "generator_cpu_share": result["cpu_share"],
            "cpu": meter.shares({"load generator": result["cpu_s"]}),
        }

    def _intake_idle(self) -> list[str]:
        """(a) Orders over HTTP at saturation while no worker runs: the API alone. The
        orders wait in the outbox: they are the backlog of phase (b)."""
        self.say(f"(a) intake, workers idle: {self.options.intake_seconds:g}s closed loop")
        with self._meter() as meter:
            result = self._load("intake", duration=self.options.intake_seconds)
        self.results["intake_idle"] = self._load_summary(result, meter)
        if not result["order_ids"]:
            raise BenchError(f"no order was accepted: {result['first_error']}")
        return self.warm_up_ids + result["order_ids"]

    def _load_summary(self, result: dict[str, Any], meter: CpuMeter) -> dict[str, Any]:
        return {
            "orders": result["ok"],
            "orders_per_s": result["ok_per_s"],
            "seconds": result["elapsed_s"],
            "errors": result["errors"],
            "statuses": result["statuses"],
            "first_error": result["first_error"],
            "api_latency_ms": result["latency_ms"],
            "generator_cpu_share": result["cpu_share"],
            "cpu": meter.shares({"load generator": result["cpu_s"]}),
        }

    def _raw_baselines(self) -> None:
        """(e) The raw client on the relay's own messages, while nothing else runs."""
        self.say("(e) raw baselines: tight produce loop, consume, round trip")
        rows = OutboxEvent.objects.filter(id__gt=self.first_outbox_id).order_by("id")[:1000]
        messages = [
            RawMessage(
                key=row.key.encode(),
                value=bytes(row.value),
                headers=message_headers(
                    row.event_id, row.event_type, row.schema_version, row.correlation_id
                ),
            )
            for row in rows
        ]
        self.results["raw"] = raw_baselines(
            messages,
            count=self.options.baseline_messages,
            latency_samples=self.options.latency_samples,
        )

    def _handled_count(self, name: str) -> int:
        """Events of this run in the outbox that consumer group `name` handles."""
        return (
            OutboxEvent.objects.filter(
                id__gt=self.first_outbox_id, event_type__in=list(CONSUMERS[name].handlers)
            )
            .exclude(topic=RELAY_PAD_TOPIC)
            .count()
        )

    def _processed(self, name: str) -> Any:
        return ProcessedEvent.objects.filter(consumer_group=group_name(name))

    def _unpublished(self) -> int:
        return OutboxEvent.objects.filter(published_at__isnull=True).count()

    def _backlog_drain(self, backlog: list[str]) -> None:
        """(b) One stage at a time on the backlog of (a): the relay publishes it, then each
        consumer group is started alone once all its input is in Kafka."""
        drain: dict[str, Any] = {"orders": len(backlog)}
        self.results["backlog"] = drain
        self._relay_backlog_pad()
        events = self._unpublished()
        self.say(f"(b) backlog drain: relay, {events} events")
        started = timezone.now()
        with self._meter() as meter:
            relay = self.supervisor.relay()
            complete = self._wait("relay", events, lambda: events - self._unpublished())
            finished = timezone.now()
        stamps = OutboxEvent.objects.filter(
            id__gt=self.first_outbox_id, published_at__gte=started
        ).values_list("published_at", flat=True)
        rate = measure.rate_from_timestamps(stamps)
        wall = events / (finished - started).total_seconds()
        drain["relay"] = {
            "events": events,
            "complete": complete,
            "events_per_s": rate if rate is not None else wall,
            "rate_from": "published_at" if rate is not None else "wall clock incl. start-up",
            "cpu": meter.shares(),
        }
        assert relay.running
        for name in SAGA_CONSUMERS:
            self._drain_group(name, backlog, drain)
        # Everything else the deployment runs, then let the backlog finish (e-mails too)
        # so that the next phase starts from quiet.
        self.supervisor.consumers([n for n in CONSUMERS if n not in SAGA_CONSUMERS])
        self.celery = self.supervisor.celery_worker()
        self._settle("backlog: e-mails", backlog, drain)

    def _relay_backlog_pad(self) -> None:
        """Make the relay's backlog at least `relay_events` rows: copies of this run's
        orders.created rows (new event ids) for a topic no consumer reads. The intake of (a)
        alone may be a single relay batch, too little to time a drain."""
        missing = self.options.relay_events - self._unpublished()
        templates = list(
            OutboxEvent.objects.filter(
                id__gt=self.first_outbox_id, event_type="orders.created"
            ).order_by("id")[:1000]
        )
        if missing <= 0 or not templates:
            return
        topics_ensure([topic_name(RELAY_PAD_TOPIC)])
        rows = []
        for index in range(missing):
            template = templates[index % len(templates)]
            event_id = uuid.uuid4()
            rows.append(
                OutboxEvent(
                    event_id=event_id,
                    event_type=template.event_type,
                    schema_version=template.schema_version,
                    topic=RELAY_PAD_TOPIC,
                    key=template.key,
                    aggregate_id=RELAY_PAD_TOPIC,
                    correlation_id=template.correlation_id,
                    value=json.dumps({**template.envelope, "event_id": str(event_id)}).encode(),
                )
            )
        OutboxEvent.objects.bulk_create(rows, batch_size=2000)

    def _drain_group(self, name: str, backlog: list[str], drain: dict[str, Any]) -> None:
        self._wait("relay catching up", 1, lambda: int(self._unpublished() == 0))
        expected_now = self._handled_count(name)
        self.say(f"(b) backlog drain: consumer group {name}, {expected_now} events waiting")
        checks: dict[str, Callable[[], bool]] = {
            "orders": lambda: (
                not Order.objects.filter(id__in=backlog)
                .exclude(status__in=SETTLED_STATUSES)
                .exists()
            ),
            "notifications": lambda: len(measure.final_notice_times(backlog)) == len(backlog),
        }
        check = checks.get(name)
        started = timezone.now()
        with self._meter() as meter:
            self.supervisor.consumer(name)
            # Its own output can add to its input (orders: the cancellations it makes), so the
            # target is re-read as it goes.
            complete = self._wait(
                f"group {name}",
                expected_now,
                lambda: self._processed(name).count() - (self._handled_count(name) - expected_now),
                extra=lambda: (
                    self._processed(name).count() >= self._handled_count(name)
                    and (check is None or check())
                ),
            )
        stamps = list(self._processed(name).values_list("processed_at", flat=True))
        result: dict[str, Any] = {
            "events": len(stamps),
            "complete": complete,
            "events_per_s": measure.rate_from_timestamps(stamps),
            "cpu": meter.shares(),
        }
        if name == "orders":
            paid = OutboxEvent.objects.filter(
                id__gt=self.first_outbox_id, event_type="orders.paid", created_at__gte=started
            ).values_list("created_at", flat=True)
            result["orders_paid"] = len(paid)
            result["orders_paid_per_s"] = measure.rate_from_timestamps(paid)
        drain.setdefault("groups", {})[name] = result

    def _settle(self, label: str, order_ids: list[str], into: dict[str, Any]) -> None:
        """Wait until the given orders have their last notice and every notification of
        the run is e-mailed, so the next phase starts from quiet."""
        run = Notification.objects.filter(customer__username__startswith=self.namespace)
        started = timezone.now()
        complete = self._wait(
            label,
            len(order_ids),
            lambda: len(measure.final_notice_times(order_ids)),
            extra=lambda: (
                self._unpublished() == 0
                and not run.exclude(status=Notification.Status.SENT).exists()
            ),
        )
        sent = run.filter(sent_at__gte=started).values_list("sent_at", flat=True)
        into["settle"] = {
            "complete": complete,
            "seconds": (timezone.now() - started).total_seconds(),
            "emails_sent": len(sent),
            "emails_per_s": measure.rate_from_timestamps(sent),
        }

    def _saturation(self) -> None:
        """(c) Everything running, orders at saturation: intake, completions in the same
        window, and their ratio."""
        opts = self.options
        self.say(f"(c) full pipeline at saturation: {opts.saturation_seconds:g}s closed loop")
        with self._meter() as meter:
            result = self._load("saturation", duration=opts.saturation_seconds)
        summary = self._load_summary(result, meter)
        ids = result["order_ids"]
        window_end = result["started_at"] + result["elapsed_s"]
        notices = measure.final_notice_times(ids)
        in_window = sum(1 for at in notices.values() if at.timestamp() <= window_end)
        summary["completed_in_window"] = in_window
        summary["end_to_end_per_s"] = in_window / result["elapsed_s"]
        summary["ratio"] = (
            summary["end_to_end_per_s"] / summary["orders_per_s"]
            if summary["orders_per_s"]
            else None
        )
        summary["cpu_ms_per_order"] = cpu_ms_per_order(
            summary["cpu"], meter.wall_seconds, result["ok"]
        )
        self.results["saturation"] = summary
        self._settle("saturation: drain", ids, summary)
        # The whole cohort, drain included: meaningful when the latency exceeds the window
        # (then few orders complete inside it).
        created = measure.created_times(ids)
        notices = measure.final_notice_times(ids)
        if created and notices:
            span = (max(notices.values()) - min(created.values())).total_seconds()
            summary["cohort_end_to_end_per_s"] = len(notices) / span if span > 0 else None
        origin = result["started_at"]
        self.results.setdefault("series", {})["saturation"] = {
            "window_s": result["elapsed_s"],
            "created_s": sorted(
                t.timestamp() - origin for t in measure.created_times(ids).values()
            ),
            "completed_s": sorted(
                t.timestamp() - origin for t in measure.final_notice_times(ids).values()
            ),
        }

    def _open_loop(
        self, label: str, rate: float, seconds: float
    ) -> tuple[dict[str, Any], list[float], list[str]]:
        """Orders at a fixed rate (open loop), then a wait until every one has its last
        notice: the load summary with created → last notice percentiles, the sorted
        latencies and the order ids."""
        with self._meter() as meter:
            result = self._load(label, duration=seconds, rate=rate)
        summary = self._load_summary(result, meter)
        ids = result["order_ids"]
        self._settle(f"{label}: last notices", ids, summary)
        latencies, missing = measure.latencies_ms(ids)
        summary["target_per_s"] = rate
        summary["completed"] = len(latencies)
        summary["incomplete"] = missing
        summary["created_to_last_notice_ms"] = measure.percentiles(latencies)
        return summary, sorted(latencies), ids

    def _web_compare(self) -> None:
        """The web tier alone (no worker runs yet): POST /api/orders/, GET /api/products/
        and the bare authenticated view, one after the other on the same gunicorn, closed
        loop; requests/s, the web's CPU per request, and the ratios."""
        from tools.bench import web

        opts = self.options
        tool = web.tool()
        self.say(f"web tier vs the bare view: {opts.web_seconds:g}s each, with {tool}")
        tokens = self.tokens_file.read_text().split()
        rows: dict[str, Any] = {}
        for label, method, path in web.TARGETS:
            with self._meter() as meter:
                if tool == "wrk":
                    result = web.run_wrk(
                        port=self.port,
                        method=method,
                        path=path,
                        tokens=tokens,
                        skus=self.skus,
                        seconds=opts.web_seconds,
                        connections=opts.connections,
                        work_dir=self.log_dir,
                    )
                else:
                    result = web.run_loadgen(
                        port=self.port,
                        method=method,
                        path=path,
                        tokens_file=self.tokens_file,
                        skus=self.skus,
                        seconds=opts.web_seconds,
                        connections=opts.connections,
                        work_dir=self.log_dir,
                        repo_root=REPO_ROOT,
                    )
            shares = meter.shares()
            served = result["ok_per_s"] * meter.wall_seconds
            rows[label] = {
                "requests_per_s": result["ok_per_s"],
                "requests": result["requests"],
                "errors": result["errors"],
                "web_cpu_ms_per_request": (
                    shares.get("web", 0.0) * meter.wall_seconds * 1000 / served if served else None
                ),
            }
        post, products, bare = (rows[label]["requests_per_s"] for label, _, _ in web.TARGETS)
        self.results["web_compare"] = {
            "tool": tool,
            "seconds": opts.web_seconds,
            "connections": opts.connections,
            "targets": rows,
            "post_vs_products": post / products if products else None,
            "products_vs_bare": products / bare if bare else None,
            "post_vs_bare": post / bare if bare else None,
            "errors": sum(row["errors"] for row in rows.values()),
        }

    def _cost_at_rate(self) -> None:
        """(h) What an order costs: a steady rate (open loop) with every consumer group,
        Celery and the relay running, metered until every order has its last notice and
        every e-mail is sent: CPU per order of each process and of PostgreSQL, Redis and
        the broker, and created → last notice."""
        opts = self.options
        self.say(f"(h) cost per order: {opts.cost_rate:g} orders/s for {opts.cost_seconds:g}s")
        settled: dict[str, Any] = {}
        with self._meter() as meter:
            result = self._load("cost", duration=opts.cost_seconds, rate=opts.cost_rate)
            self._settle("(h) last notices", result["order_ids"], settled)
        summary = self._load_summary(result, meter)
        latencies, missing = measure.latencies_ms(result["order_ids"])
        summary.update(
            target_per_s=opts.cost_rate,
            window_s=meter.wall_seconds,
            settle=settled["settle"],
            completed=len(latencies),
            incomplete=missing,
            created_to_last_notice_ms=measure.percentiles(latencies),
            cpu_ms_per_order=cpu_ms_per_order(summary["cpu"], meter.wall_seconds, result["ok"]),
        )
        self.results["cost"] = summary

    def _fixed_rate(self) -> None:
        """(d) A fixed rate (open loop): latency from creation to the last notice, and
        where it goes, hop by hop."""
        opts = self.options
        self.say(f"(d) fixed rate: {opts.rate:g} orders/s for {opts.rate_seconds:g}s")
        summary, latencies, ids = self._open_loop("fixed", opts.rate, opts.rate_seconds)
        summary["breakdown"] = measure.critical_path_breakdown(ids, self.namespace)
        self.results["fixed_rate"] = summary
        self.results.setdefault("series", {})["fixed_rate_latencies_ms"] = latencies

    def _latency_by_rate(self) -> None:
        """(f) The same open loop at lower rates: latency against load, to read off the
        rate up to which a latency target holds on this machine."""
        opts = self.options
        rows, series = [], {}
        for rate in opts.sweep_rates:
            self.say(f"(f) latency by rate: {rate:g} orders/s for {opts.sweep_seconds:g}s")
            summary, latencies, _ = self._open_loop(f"rate-{rate:g}", rate, opts.sweep_seconds)
            rows.append(summary)
            series[f"{rate:g}"] = latencies
        self.results["latency_by_rate"] = rows
        self.results.setdefault("series", {})["latency_by_rate_ms"] = series

    # --- (g) what tracing costs --------------------------------------------------------
    def _tracing_cost(self, env: dict[str, str]) -> dict[str, int]:
        """(g) The whole pipeline with tracing off, then on (exporting every span to a
        local OTLP receiver, sampler always_on), alternating for `tracing_rounds` pairs.
        Each round starts every process afresh with its setting, warms it up, offers
        `tracing_rate` orders/s for `tracing_seconds` (open loop) and waits until every
        order has its last notice and the spans are exported: CPU per order of our
        processes, and of PostgreSQL, the broker and Redis, over that window. Returns the
        exit codes of every round's processes."""
        from testing.otlp import OtlpReceiver

        opts = self.options
        rounds: list[dict[str, Any]] = []
        codes: dict[str, int] = {}
        self.results["tracing_cost"] = {
            "rate": opts.tracing_rate,
            "seconds": opts.tracing_seconds,
            "rounds": rounds,
        }
        # The bench's own environment decides nothing here: each round sets its own.
        base = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
        with OtlpReceiver() as receiver:
            traced = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "always_on",
                # Exports every second rather than every 5 s, so that a round's spans are
                # all in (and their export's CPU counted) soon after its last order.
                "OTEL_BSP_SCHEDULE_DELAY": str(int(EXPORT_DELAY_S * 1000)),
            }
            for index in range(opts.tracing_rounds):
                for setting in ("off", "on"):
                    label = f"{setting}, run {index + 1}"
                    self.say(
                        f"(g) tracing {label}: {opts.tracing_rate:g} orders/s "
                        f"for {opts.tracing_seconds:g}s"
                    )
                    self.supervisor = Supervisor(
                        env=base, log_dir=self.log_dir / f"g-{len(rounds)}"
                    )
                    try:
                        rounds.append(
                            self._tracing_round(label, receiver, traced if setting == "on" else {})
                        )
                    finally:
                        for name, code in self.supervisor.stop().items():
                            codes[f"(g) {label}: {name}"] = code
        self.supervisor = Supervisor(env=base, log_dir=self.log_dir)  # nothing left to stop
        self.results["tracing_cost"]["summary"] = _tracing_summary(rounds)
        return codes

    def _tracing_round(
        self, label: str, receiver: Any, tracing_env: dict[str, str]
    ) -> dict[str, Any]:
        opts = self.options
        self.port = free_port()
        self._start_web(**tracing_env)
        self.supervisor.relay(**tracing_env)
        self.supervisor.consumers(**tracing_env)
        self.supervisor.celery_worker(**tracing_env)
        # Warm-up, not measured: imports, connections, group joins, the first publishes.
        warm = self._load("warm-up", count=self.options.connections * 2)["order_ids"]
        self._settle(f"(g) {label}: warm-up", self.warm_up_ids + warm, {})
        self._exported(receiver)
        spans_before = len(receiver.spans())
        settled: dict[str, Any] = {}
        with self._meter() as meter:
            result = self._load(f"g-{label}", duration=opts.tracing_seconds, rate=opts.tracing_rate)
            self._settle(f"(g) {label}: last notices", result["order_ids"], settled)
            self._exported(receiver)
        summary = self._load_summary(result, meter)
        orders = result["ok"]
        wall = meter.wall_seconds
        shares = summary["cpu"]
        groups = {
            "web": ["web"],
            "relay": ["relay"],
            "consumers": [name for name in shares if name.startswith("consumer-")],
            "Celery": ["celery-worker"],
        }
        ms_per_order = {
            group: sum(shares.get(name, 0.0) for name in names) * wall * 1000 / orders
            for group, names in groups.items()
        }
        ms_per_order["ours"] = sum(ms_per_order.values())
        services = {
            name: share * wall * 1000 / orders
            for name, share in shares.items()
            if name.endswith("(local)")
        }
        latencies, missing = measure.latencies_ms(result["order_ids"])
        return {
            "label": label,
            "tracing": bool(tracing_env),
            "orders": orders,
            "errors": result["errors"],
            "orders_per_s": result["ok_per_s"],
            "window_s": wall,
            "cpu_ms_per_order": ms_per_order,
            "services_ms_per_order": services,
            "spans_per_order": (len(receiver.spans()) - spans_before) / orders if orders else 0,
            "created_to_last_notice_ms": measure.percentiles(latencies),
            "incomplete": missing,
            "settle": settled["settle"],
            "cpu": shares,
        }

    def _exported(self, receiver: Any) -> None:
        """Wait until no span has arrived for twice the export delay: the round's spans
        are then in, and their export counted (the same wait with tracing off)."""
        quiet_for = 2 * EXPORT_DELAY_S
        count, since = len(receiver.spans()), time.monotonic()
        while time.monotonic() - since < quiet_for:
            time.sleep(0.25)
            now = len(receiver.spans())
            if now != count:
                count, since = now, time.monotonic()


# Not the pipeline's: the bench itself, its load generator, and the machine's totals.
_NOT_PIPELINE = ("bench", "load generator", "machine busy", "rest: other processes")


def cpu_ms_per_order(shares: dict[str, float], wall: float, orders: int) -> dict[str, float]:
    """CPU ms per order of each process of the pipeline (web, relay, each consumer group,
    Celery) and each local service (PostgreSQL, Redis, the broker), from the cores each
    used over `wall` seconds; and the totals: `ours` (our processes), `ours + PostgreSQL +
    Redis`, and `all` (the broker too)."""
    if not orders or wall <= 0:
        return {}
    per_order = {
        name.removesuffix(" (local)"): share * wall * 1000 / orders
        for name, share in shares.items()
        if name not in _NOT_PIPELINE
    }
    services = ("PostgreSQL", "Redis", "broker")
    ours = sum(v for k, v in per_order.items() if k not in services)
    per_order["ours"] = ours
    per_order["ours + PostgreSQL + Redis"] = (
        ours + per_order.get("PostgreSQL", 0.0) + per_order.get("Redis", 0.0)
    )
    per_order["all"] = per_order["ours + PostgreSQL + Redis"] + per_order.get("broker", 0.0)
    return per_order


def _tracing_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean CPU per order of our processes with tracing off and on, and the difference."""

    def mean(setting: bool) -> float | None:
        values = [r["cpu_ms_per_order"]["ours"] for r in rounds if r["tracing"] is setting]
        return sum(values) / len(values) if values else None

    off, on = mean(False), mean(True)
    if off is None or on is None:
        return {"off_ms": off, "on_ms": on}
    return {"off_ms": off, "on_ms": on, "delta_ms": on - off, "delta_pct": (on - off) / off * 100}
