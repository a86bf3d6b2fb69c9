"""The webhook dispatcher, measured: delivery throughput and the dispatcher's CPU per
delivery, to a receiver on this machine.

    python -m tools.bench.webhooks [--deliveries 3000] [--endpoints 4] [--concurrency 32]
                                   [--receiver-delay-ms 0] [--json PATH]

Uses DATABASE_URL when set (PostgreSQL); otherwise a fresh `ecommerce_bench_webhooks`
database on the local PostgreSQL, dropped and created again on every run. No broker is
needed: the deliveries are recorded with the webhooks consumer's own service
(`webhook_deliveries_record`, one order event per order, to every endpoint) before the
dispatcher starts, so the figures are the dispatcher's alone. Then `run_webhook_dispatcher`
runs as a child process (private addresses allowed) and sends them to one local receiver
(`tools.webhook_receiver`, in this process, verifying every signature); progress is printed
as they are delivered, and a table at the end.

Throughput counts from the first attempt to the last delivery (process start-up excluded);
CPU is the dispatcher process's user + system time over the same span, from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tools.bench.cpu import tree_cpu_seconds
from tools.bench.report import fmt, markdown
from tools.supervisor import REPO_ROOT, Supervisor, manage

BENCH_DATABASE = "ecommerce_bench_webhooks"


def fresh_local_database() -> str:
    import psycopg

    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    return f"postgres://postgres@127.0.0.1:5432/{BENCH_DATABASE}"


def _say(message: str) -> None:
    print(f"[bench webhooks] {message}", flush=True)


def _record(deliveries: int, endpoints: int, receiver_url: str, secret: str) -> int:
    """Endpoints for the receiver (one secret for all, so it can verify every one) and one
    order event per order for each; returns the deliveries recorded."""
    from webhooks.models import WebhookDelivery, WebhookEndpoint
    from webhooks.payloads import OrderEventMessage
    from webhooks.services import webhook_deliveries_record, webhook_endpoint_create

    for _ in range(endpoints):
        endpoint = webhook_endpoint_create(url=receiver_url, event_types=["*"])
        WebhookEndpoint.objects.filter(id=endpoint.id).update(secret=secret)
    events = max(1, deliveries // endpoints)
    now = datetime.now(UTC)
    for start in range(0, events, 500):
        messages = []
        for _ in range(min(500, events - start)):
            order_id = uuid.uuid4()
            messages.append(
                OrderEventMessage(
                    event_id=uuid.uuid4(),
                    event_type="orders.paid",
                    order_id=order_id,
                    occurred_at=now,
                    data={"order_id": str(order_id), "status": "paid", "customer_id": 1},
                )
            )
        webhook_deliveries_record(messages=messages)
    return WebhookDelivery.objects.count()


def _delivered() -> int:
    from webhooks.models import WebhookDelivery
    from webhooks.status import DeliveryStatus

    return WebhookDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def _attempt_latency() -> dict[str, float]:
    from webhooks.models import WebhookAttempt

    durations = sorted(WebhookAttempt.objects.values_list("duration_ms", flat=True))
    if not durations:
        return {}

    def pick(q: float) -> float:
        return durations[min(len(durations) - 1, int(q * len(durations)))]

    return {"p50": pick(0.5), "p99": pick(0.99)}


def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings

    from tools.webhook_receiver import WebhookReceiver
    from webhooks.services import webhook_secret_generate

    settings.WEBHOOKS = {**settings.WEBHOOKS, "ALLOW_PRIVATE": True}
    secret = webhook_secret_generate()
    receiver = WebhookReceiver(secret=secret, delay=args.receiver_delay_ms / 1000).start()
    total = _record(args.deliveries, args.endpoints, receiver.url, secret)
    _say(f"{total} deliveries recorded to {args.endpoints} endpoint(s); starting the dispatcher")
    log_dir = REPO_ROOT / ".run" / "bench-webhooks"
    children = Supervisor(env={**env, "PYTHONUNBUFFERED": "1"}, log_dir=log_dir)
    dispatcher = children.webhook_dispatcher(
        WEBHOOKS_ALLOW_PRIVATE="true",
        WEBHOOKS_MAX_CONCURRENCY=str(args.concurrency),
        WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT=str(args.concurrency),
        WEBHOOKS_POLL_INTERVAL_SECONDS="0.1",
        METRICS_ENABLED="false",
    )
    assert dispatcher.pid is not None

    def cpu() -> float:
        return tree_cpu_seconds({"dispatcher": dispatcher.pid})["dispatcher"]  # type: ignore[dict-item]

    try:
        deadline = time.monotonic() + args.timeout
        while not receiver.all():  # the first request: start-up is over
            if time.monotonic() > deadline or not dispatcher.running:
                raise SystemExit(f"no delivery arrived\n{dispatcher.log()[-3000:]}")
            time.sleep(0.005)
        started, cpu_started = time.monotonic(), cpu()
        delivered = 0
        last_report = started
        while delivered < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out at {delivered}/{total}\n{dispatcher.log()[-3000:]}")
            time.sleep(0.05)
            delivered = len(receiver.accepted())
            if time.monotonic() - last_report >= 1 or delivered >= total:
                elapsed = time.monotonic() - started
                _say(f"received {delivered}/{total} ({delivered / elapsed:,.0f}/s)")
                last_report = time.monotonic()
        elapsed, cpu_used = time.monotonic() - started, cpu() - cpu_started
        # The receiver has them all; the dispatcher records the last outcomes just after.
        while _delivered() < total and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        children.stop()
        receiver.stop()
    return {
        "deliveries": total,
        "endpoints": args.endpoints,
        "concurrency": args.concurrency,
        "receiver_delay_ms": args.receiver_delay_ms,
        "seconds": elapsed,
        "deliveries_per_s": total / elapsed,
        "dispatcher_cpu_ms_per_delivery": cpu_used * 1000 / total,
        "dispatcher_cores": cpu_used / elapsed,
        "attempt_latency_ms": _attempt_latency(),
        "recorded_delivered": _delivered(),
        "unverified": sum(1 for record in receiver.all() if not record.verified),
    }


def table(result: dict[str, object]) -> str:
    latency = result["attempt_latency_ms"] or {}
    rows = [
        ("deliveries (endpoints x events)", fmt(result["deliveries"])),
        ("endpoints", fmt(result["endpoints"])),
        ("concurrency (threads)", fmt(result["concurrency"])),
        ("receiver delay (ms)", fmt(result["receiver_delay_ms"])),
        ("throughput (deliveries/s)", fmt(result["deliveries_per_s"])),
        ("dispatcher CPU per delivery (ms)", fmt(result["dispatcher_cpu_ms_per_delivery"], 2)),
        ("dispatcher cores busy", fmt(result["dispatcher_cores"], 2)),
        (
            "attempt latency p50 / p99 (ms)",
            f"{fmt(latency.get('p50'), 1)} / {fmt(latency.get('p99'), 1)}",  # type: ignore[union-attr]
        ),
        (
            "recorded delivered / unverified at receiver",
            f"{result['recorded_delivered']} / {result['unverified']}",
        ),
    ]
    return "\n".join(markdown(rows, ("figure", "value")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.webhooks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--deliveries", type=int, default=3000, help="How many (default 3000).")
    parser.add_argument("--endpoints", type=int, default=4, help="Endpoints (default 4).")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="WEBHOOKS_MAX_CONCURRENCY (default 32)."
    )
    parser.add_argument(
        "--receiver-delay-ms", type=float, default=0.0, help="The receiver's time per request."
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Give up after (s).")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    if args.deliveries < 1 or args.endpoints < 1 or args.concurrency < 1:
        parser.error("--deliveries, --endpoints and --concurrency must be at least 1")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="ecommerce.settings")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = fresh_local_database()
        _say(f"fresh database {BENCH_DATABASE} on local PostgreSQL")
    elif env["DATABASE_URL"].startswith("sqlite"):
        print("DATABASE_URL must be PostgreSQL for a benchmark", file=sys.stderr)
        return 2
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), env=env, cwd=REPO_ROOT, check=True)
    result = run(args, env)
    print(table(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
