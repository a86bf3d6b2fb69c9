"""`make run`: the whole pipeline on one machine, with embedded defaults.

    python -m tools.devstack [--port 8000] [--smoke-test] [--without CONSUMER ...]

Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set; otherwise SQLite
(db.sqlite3), a local Tansu broker and a local redis-server, started here. Then migrates,
creates topics, seeds demo data and runs the web server, the outbox relay, every registered
consumer, the webhook dispatcher (private addresses allowed), a Celery worker and Celery
beat as child processes with prefixed logs. Ctrl-C (or SIGTERM) stops the children
gracefully, in order, then the local services; so does any child exiting on its own (fail
fast: a half-running pipeline is not left behind). `--without inventory` starts everything
but that consumer (e.g. to watch an order expire). `--smoke-test` places one order through
the HTTP API, waits until it is paid, ships it with the staff token, and exits 0 or 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import django

from tools.localservices import (
    LocalService,
    LocalServiceError,
    port_open,
    start_kafka,
    start_redis,
)
from tools.supervisor import REPO_ROOT, Supervisor, manage


def say(message: str) -> None:
    print(f"\033[1m[devstack]\033[0m {message}", flush=True)


def run_once(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"[devstack] step failed: {' '.join(argv[1:])}")
    return result.stdout.strip()


class DevStack:
    def __init__(self, port: int) -> None:
        self.port = port
        self.local: list[LocalService] = []
        self.stop_requested = threading.Event()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        # Logs on the terminal (prefixed, coloured) and in .run/logs/ for later reading.
        self.children = Supervisor(
            env=self.env, log_dir=REPO_ROOT / ".run" / "logs", echo=True, new_session=True
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            say("second signal: killing everything now")
            self.children.kill_all()
            for service in self.local:
                service.process.kill()
            os._exit(130)
        self.stop_requested.set()

    def start_services(self) -> None:
        log_dir = REPO_ROOT / ".run"
        if not self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker = start_kafka(log_dir, port=9092 if not port_open("127.0.0.1", 9092) else None)
            self.local.append(broker)
            self.env["KAFKA_BOOTSTRAP_SERVERS"] = broker.url
            # Tansu's end offsets are wrong: lag figures say they are approximate.
            self.env.setdefault("KAFKA_END_OFFSETS_APPROXIMATE", "true")
            say(f"started local Kafka-protocol broker (Tansu, in memory) at {broker.url}")
        if not self.env.get("REDIS_URL"):
            redis = start_redis(log_dir)
            self.local.append(redis)
            self.env["REDIS_URL"] = redis.url
            say(f"started local redis-server at {redis.url}")
        self.env.setdefault("DJANGO_DEBUG", "true")
        # Webhooks to a receiver on this machine (docs/webhooks.md): http:// and loopback
        # addresses allowed, for the web server (registration) and the dispatcher alike.
        self.env.setdefault("WEBHOOKS_ALLOW_PRIVATE", "true")
        # The group rebalance timeout (librdkafka takes it from max.poll.interval.ms). A
        # broker that wedges a forming group (docs/test-broker.md) holds it that
        # long; local batches never take a minute, so the 5-minute default buys nothing here.
        self.env.setdefault("KAFKA_MAX_POLL_INTERVAL_MS", "60000")
        database = self.env.get("DATABASE_URL", f"sqlite:///{REPO_ROOT / 'db.sqlite3'}")
        say(f"database: {database.split('@')[-1]}")

    def prepare(self) -> DemoTokens:
        """Migrate, create topics, seed; return the demo users' API tokens."""
        say("migrating, creating topics, seeding demo data")
        run_once(manage("migrate", "--noinput"), self.env)
        run_once(manage("kafka_topics"), self.env)
        seeded = run_once(manage("seed_demo"), self.env)
        say(seeded)
        customer = re.search(r"customer '\w+' token (\w+)", seeded)
        staff = re.search(r"staff token (\w+)", seeded)
        if customer is None or staff is None:
            raise SystemExit(f"[devstack] seed_demo printed no tokens: {seeded}")
        return DemoTokens(customer=customer.group(1), staff=staff.group(1))

    def start_children(self, *, without: Sequence[str] = ()) -> None:
        children = self.children
        # One server for the whole project, the ASGI one: the live order status stream then
        # works on the same port as the rest of the API, as behind production's proxy.
        children.asgi_server(port=self.port, label="web")
        children.relay()
        for name in list_consumers():
            if name in without:
                say(f"consumer {name} left out (--without {name})")
                continue
            children.consumer(name, label=f"consumer-{name}")
        children.webhook_dispatcher()
        children.celery_worker()
        children.celery_beat(schedule_file=REPO_ROOT / ".run" / "beat")

    def wait_for_web(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.stop_requested.is_set():
                raise SystemExit("[devstack] web server did not start")
            time.sleep(0.1)

    def stop(self) -> int:
        say("stopping children (SIGTERM)")
        worst = 0
        for name, code in self.children.stop().items():
            if code not in (0, -signal.SIGTERM):
                say(f"{name} exited with {code}")
                worst = 1
        for service in reversed(self.local):
            service.stop()
        say("stopped")
        return worst


def list_consumers() -> list[str]:
    """The consumers the apps declare: they register as Django starts (settings only; this
    process opens no connection)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    django.setup()
    from kafka_bridge.registry import CONSUMERS

    return list(CONSUMERS)


@dataclass(frozen=True)
class DemoTokens:
    customer: str
    staff: str


def smoke_test(port: int, tokens: DemoTokens) -> bool:
    """Place one order over HTTP as the demo customer, wait until it is paid (stock
    reserved, payment taken), then ship it as staff."""
    base = f"http://127.0.0.1:{port}/api"

    def call(method: str, path: str, body: dict | None = None, *, token: str) -> dict:
        request = urllib.request.Request(
            base + path,
            method=method,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            data=json.dumps(body).encode() if body is not None else None,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    body = {"items": [{"sku": "MUG-LOGO", "quantity": 1}]}
    order = call("POST", "/orders/", body, token=tokens.customer)
    say(f"smoke test: order {order['id']} created ({order['status']})")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = call("GET", f"/orders/{order['id']}/", token=tokens.customer)["status"]
        if status not in ("pending", "reserved"):
            say(f"smoke test: order {order['id']} is {status}")
            break
        time.sleep(0.2)
    else:
        say("smoke test: order not paid after 60s")
        return False
    if status != "paid":
        return False
    shipped = call("POST", f"/orders/{order['id']}/ship/", {"carrier": "DHL"}, token=tokens.staff)
    say(f"smoke test: order {order['id']} shipped by staff ({shipped['status']})")
    return shipped["status"] == "shipped"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument(
        "--smoke-test", action="store_true", help="One order through, shipped, then exit."
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="CONSUMER",
        choices=list_consumers(),
        help="Leave this consumer out (repeatable), e.g. --without inventory to watch an "
        "order stay pending until it expires.",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    stack = DevStack(args.port)
    signal.signal(signal.SIGINT, stack._on_signal)
    signal.signal(signal.SIGTERM, stack._on_signal)
    if port_open("127.0.0.1", args.port):
        print(f"[devstack] port {args.port} is in use; pass --port or set PORT", file=sys.stderr)
        return 2
    try:
        stack.start_services()
        tokens = stack.prepare()
        stack.start_children(without=args.without)
        stack.wait_for_web()
    except (LocalServiceError, SystemExit) as exc:
        print(f"[devstack] {exc}", file=sys.stderr)
        stack.stop()
        return 1
    api = f"http://127.0.0.1:{args.port}/api"
    say(f"API:     {api}/docs/  (customer token: {tokens.customer})")
    say(f"Admin:   http://127.0.0.1:{args.port}/admin/  (admin / demo-password)")
    say(f"Staff:   API token {tokens.staff} (ship and deliver orders)")
    say(
        f"Try:     curl -H 'Authorization: Token {tokens.customer}' "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"items":[{{"sku":"MUG-LOGO","quantity":2}}]}}\' {api}/orders/'
    )
    say(
        f"Ship:    curl -X POST -H 'Authorization: Token {tokens.staff}' "
        f"-H 'Content-Type: application/json' -d '{{\"carrier\":\"DHL\"}}' "
        f"{api}/orders/<id>/ship/"
    )
    say(
        f"Webhook: curl -H 'Authorization: Token {tokens.staff}' "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"url":"http://127.0.0.1:9000/hooks","event_types":["*"]}}\' {api}/webhooks/'
        "  then: python -m tools.webhook_receiver --secret <its secret>"
    )
    say(
        f"Sent:    e-mails in the celery-worker log; SMS and push are recorded, not sent: "
        f"http://127.0.0.1:{args.port}/admin/notifications/recordedmessage/"
    )
    say("Ctrl-C stops everything")
    result = 0
    try:
        if args.smoke_test:
            result = 0 if smoke_test(args.port, tokens) else 1
        else:
            while not stack.stop_requested.wait(0.5):
                child = stack.children.exited()
                if child is not None:
                    say(f"{child.name} exited unexpectedly ({child.returncode}); stopping")
                    result = 1
                    break
    except Exception as exc:  # never leave children behind
        say(f"failed: {type(exc).__name__}: {exc}")
        result = 1
    finally:
        result = stack.stop() or result
    return result


if __name__ == "__main__":
    sys.exit(main())
