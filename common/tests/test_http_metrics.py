"""Web tier metrics: request count and latency by route, method and status, and /metrics
adding up every gunicorn worker's figures (prometheus-client multiprocess mode)."""

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from testing.factories import (
    api_client_for,
    customer_create,
    order_place_via_api,
    product_with_stock,
)
from testing.metrics import metric_value, metrics_scrape
from testing.polling import wait_until
from tools.localservices import free_port
from tools.supervisor import REPO_ROOT

pytestmark = pytest.mark.integration

COUNT = "http_request_duration_seconds_count"


def _count(**labels: str) -> float:
    return REGISTRY.get_sample_value(COUNT, labels) or 0.0


def test_requests_are_counted_and_timed_by_route_method_and_status(db, client):
    customer = customer_create()
    order_id = order_place_via_api(customer, product_with_stock().sku)
    detail = {"route": "api/orders/<uuid:order_id>/", "method": "GET"}
    found, missing = {**detail, "status": "200"}, {**detail, "status": "404"}
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    before = {"found": _count(**found), "missing": _count(**missing)}
    before["unmatched"] = _count(**unmatched)

    api = api_client_for(customer)
    api.get(f"/api/orders/{order_id}/")
    api.get(f"/api/orders/{order_id}/")
    api.get(f"/api/orders/{uuid.uuid4()}/")
    client.get("/no/such/page/")

    assert _count(**found) == before["found"] + 2
    assert _count(**missing) == before["missing"] + 1
    assert _count(**unmatched) == before["unmatched"] + 1
    # one route label per URL pattern, never per order
    routes = {s.labels["route"] for m in REGISTRY.collect() for s in m.samples if s.name == COUNT}
    assert not any(order_id in route for route in routes)
    assert REGISTRY.get_sample_value("http_request_duration_seconds_sum", found) > 0

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert (
        b'http_request_duration_seconds_count{method="GET",route="api/orders/<uuid:order_id>/",status="200"}'
        in response.content
    )


def test_metrics_add_up_every_gunicorn_worker(pipeline, tmp_path: Path):
    # Given gunicorn with two worker processes, as deployed (gunicorn.conf.py)
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    pipeline.spawn(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(REPO_ROOT / "gunicorn.conf.py"),
            "ecommerce.wsgi:application",
        ],
        label="web",
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        WEB_THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0  # not up yet: refused, or a worker still starting answers too late

    wait_until(lambda: get("/healthz/") == 200, timeout=60, message="gunicorn up")
    sent = 1

    # When requests arrive (each on a new connection) until both workers have served some
    def both_workers_served() -> bool:
        nonlocal sent
        for _ in range(10):
            assert get("/healthz/") == 200
            sent += 1
        return len({path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("*.db")}) >= 2

    wait_until(both_workers_served, timeout=60, interval=0, message="both workers served")

    # Then /metrics, whichever worker answers, counts every one of them
    samples = metrics_scrape(base + "/metrics")
    assert metric_value(samples, COUNT, route="healthz/", method="GET", status="200") == sent


def test_metrics_enabled_false_leaves_out_request_metrics_and_the_endpoint():
    """The switch the benchmark uses to measure what metrics cost (docs/operations.md)."""
    probe = (
        "import django; django.setup(); "
        "from django.conf import settings; from django.test import Client; "
        "print(settings.METRICS_PORT, "
        "'common.metrics.RequestMetricsMiddleware' in settings.MIDDLEWARE, "
        "Client().get('/metrics').status_code)"
    )

    def run(enabled: str) -> str:
        env = {**os.environ, "METRICS_ENABLED": enabled, "METRICS_PORT": "9999"}
        env["DJANGO_SETTINGS_MODULE"] = "ecommerce.settings"
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("false") == ["None", "False", "404"]
    assert run("true") == ["9999", "True", "200"]
