"""`make run` works: the dev stack starts its own broker and Redis, on SQLite, and an order
placed over HTTP gets reserved and paid; Ctrl-C-equivalent shutdown leaves nothing running."""

import os
import subprocess
import sys

import pytest

from ecommerce.localservices import free_port
from ecommerce.supervisor import REPO_ROOT

pytestmark = pytest.mark.integration


def test_devstack_runs_an_order_through_on_embedded_defaults(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        # API_THROTTLING too: `make run` has its rate limits on (counted in its own Redis).
        if key not in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "KAFKA_NAMESPACE", "API_THROTTLING"}
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'dev.sqlite3'}"

    result = subprocess.run(
        [sys.executable, "-m", "ecommerce.devstack", "--smoke-test", "--port", str(free_port())],
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
    assert "Traceback" not in output
