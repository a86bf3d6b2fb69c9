"""`make run` works: the dev stack starts its own broker and Redis, on SQLite, and an order
placed over HTTP gets reserved and paid, then shipped with the staff token it prints;
Ctrl-C-equivalent shutdown leaves nothing running. The expiry walkthrough of docs/saga.md works."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tools.localservices import free_port
from tools.supervisor import REPO_ROOT

pytestmark = pytest.mark.integration


def _make_run_environment(tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        key: value
        for key, value in os.environ.items()
        # API_THROTTLING too: `make run` has its rate limits on (counted in its own Redis);
        # and the risk check and the payment circuit breaker as they are by default.
        if key
        not in {
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "KAFKA_NAMESPACE",
            "API_THROTTLING",
            "RISK_ENABLED",
            "PAYMENTS_BREAKER_FAIL_MAX",
        }
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'dev.sqlite3'}"
    return env


def test_devstack_runs_an_order_through_on_embedded_defaults(tmp_path):
    env = _make_run_environment(tmp_path)

    result = subprocess.run(
        [sys.executable, "-m", "tools.devstack", "--smoke-test", "--port", str(free_port())],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "started local Kafka-protocol broker" in output
    assert "started local redis-server" in output
    assert "is paid" in output
    assert "shipped by staff (shipped)" in output
    assert "Traceback" not in output


def test_the_readme_expiry_walkthrough_leaves_an_order_pending_until_it_expires(tmp_path):
    # Given `ORDERS_PENDING_TIMEOUT_SECONDS=10 ORDERS_EXPIRY_SWEEP_SECONDS=5
    # make run RUN_ARGS="--without inventory"`, as docs/running.md says
    env = _make_run_environment(tmp_path)
    env.update(ORDERS_PENDING_TIMEOUT_SECONDS="10", ORDERS_EXPIRY_SWEEP_SECONDS="5")
    port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "tools.devstack", "--port", str(port), "--without", "inventory"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in stack.stdout], daemon=True).start()  # type: ignore[union-attr]

    def read_until(needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in output):
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{''.join(output)[-3000:]}"
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                assert stack.poll() is None, "".join(output)[-3000:]

    try:
        read_until("Ctrl-C stops everything", timeout=120)
        token = re.search(r"customer token: (\w+)", "".join(output)).group(1)  # type: ignore[union-attr]
        api = f"http://127.0.0.1:{port}/api/orders/"

        def call(url: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(
                url,
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
                data=json.dumps(body).encode() if body is not None else None,
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        # When an order is placed while no inventory consumer runs
        order = call(api, {"items": [{"sku": "MUG-LOGO", "quantity": 1}]})

        # Then it stays pending, and the beat sweep expires it after the timeout
        seen = []
        deadline = time.monotonic() + 60
        while (status := call(f"{api}{order['id']}/")["status"]) != "expired":
            seen.append(status)
            assert time.monotonic() < deadline, f"statuses seen: {sorted(set(seen))}"
            time.sleep(0.5)  # polling the API as a user would
        assert set(seen) <= {"pending"}
        assert any("consumer inventory left out" in line for line in output)
    finally:
        stack.send_signal(signal.SIGINT)
        code = stack.wait(timeout=60)
    assert code == 0, "".join(output)[-3000:]
