"""The benchmark command runs end to end with tiny numbers: every phase reports, the JSON
holds every figure, the chart is written, and every order went through without an API
error. Figures are not asserted (they depend on the machine)."""

import json

import pytest

from tools.bench.cli import bench_run, parser_build

pytestmark = pytest.mark.integration


def test_bench_reports_every_phase(transactional_db, capsys, tmp_path, settings, monkeypatch):
    # Given an environment whose API rate limits would refuse most of the bench's orders
    settings.API_THROTTLING = True
    monkeypatch.setenv("API_THROTTLING", "true")
    monkeypatch.setenv("API_THROTTLE_ORDER_CREATE", "1/day")
    monkeypatch.setenv("API_THROTTLE_CUSTOMER", "1/day")

    bench_run(
        vars(
            parser_build().parse_args(
                [
                    "--intake-seconds=1",
                    "--saturation-seconds=1",
                    "--rate=10",
                    "--rate-seconds=1",
                    "--sweep-rates=4,8",
                    "--sweep-seconds=1",
                    "--connections=4",
                    "--customers=5",
                    "--skus=2",
                    "--baseline-messages=2000",
                    "--relay-events=1500",
                    "--latency-samples=5",
                    "--generator-seconds=0.5",
                    "--phase-timeout=60",
                    "--web-concurrency=1",
                    "--cost-rate=5",
                    "--cost-seconds=1",
                    "--web-seconds=1",
                    f"--json={tmp_path / 'bench.json'}",
                    f"--plot={tmp_path / 'bench.png'}",
                ]
            )
        )
    )

    table = capsys.readouterr().out
    for row in (
        "(h) CPU per order (ms), by process",
        "| consumer-read_models",
        "**ours + PostgreSQL + Redis**",
        "created → last notice p50",
        "web tier vs a bare authenticated DRF view",
        "GET products / bare view",
        "POST orders / GET products",
        "load generator ceiling",
        "(a) intake, workers idle (orders/s)",
        "(b) relay drain (events/s)",
        "(b) backlog drain, group inventory",
        "(b) backlog drain, group orders",
        "(b) orders paid/s on a backlog",
        "(b) backlog drain, group notifications",
        "(c) end-to-end / intake",
        "(d) created → last notice p50 / p95 / p99 (ms)",
        "(e) raw produce, relay's messages (msgs/s)",
        "orders.paid → notifications",
        "cores used by",
        "(f) latency by offered rate",
        "(f) 8/s",
        "rest: other processes",
        # The limits were on; the bench turned them off for its own processes.
        "API rate limits: on in these settings, off for this run",
    ):
        assert row in table, row
    if settings.DATABASES["default"]["HOST"] in ("127.0.0.1", "localhost"):
        # The database runs on this machine: its CPU is a row of its own, not in the rest.
        assert "| PostgreSQL (local)" in table
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["api_errors"] == 0
    assert set(results) >= {
        "meta",
        "generator",
        "intake_idle",
        "raw",
        "backlog",
        "saturation",
        "fixed_rate",
        "cost",
        "web_compare",
    }
    assert results["intake_idle"]["orders"] > 0
    # (h): every order of the steady rate reached its last notice; CPU per order by process.
    cost = results["cost"]
    assert cost["orders"] > 0 and cost["incomplete"] == 0
    assert cost["cpu_ms_per_order"]["web"] > 0 and cost["cpu_ms_per_order"]["ours"] > 0
    assert {"relay", "consumer-orders", "celery-worker"} <= set(cost["cpu_ms_per_order"])
    assert results["saturation"]["cpu_ms_per_order"]["ours"] > 0
    # The web tier and its bare baseline answered, on the same gunicorn.
    web = results["web_compare"]
    assert all(row["requests_per_s"] > 0 for row in web["targets"].values())
    assert web["errors"] == 0 and web["products_vs_bare"] is not None
    backlog = results["backlog"]
    assert backlog["relay"]["complete"] and backlog["relay"]["rate_from"] == "published_at"
    assert set(backlog["groups"]) == {"inventory", "orders", "notifications"}
    assert all(group["complete"] for group in backlog["groups"].values())
    # Every order of the fixed-rate phase reached its last notice, along the whole saga.
    fixed = results["fixed_rate"]
    assert fixed["orders"] > 0 and fixed["incomplete"] == 0
    assert fixed["breakdown"]["orders"] == fixed["completed"]
    assert [hop["hop"] for hop in fixed["breakdown"]["hops"]] == [
        "orders.created → inventory",
        "inventory.reserved → orders",
        "orders.paid → notifications",
    ]
    # (f): each rate ran its open loop and every order reached its last notice.
    assert [step["target_per_s"] for step in results["latency_by_rate"]] == [4, 8]
    assert all(
        step["orders"] > 0 and step["incomplete"] == 0 for step in results["latency_by_rate"]
    )
    assert set(results["series"]["latency_by_rate_ms"]) == {"4", "8"}
    assert results["meta"]["exit_codes"] and all(
        code == 0 for code in results["meta"]["exit_codes"].values()
    )
    assert (tmp_path / "bench.png").stat().st_size > 10_000


def test_bench_tracing_cost_compares_cpu_per_order_off_and_on(transactional_db, capsys, tmp_path):
    # When (g) runs alone, one round with tracing off and one on, with tiny numbers
    bench_run(
        vars(
            parser_build().parse_args(
                [
                    "--tracing-cost",
                    "--tracing-rate=5",
                    "--tracing-seconds=1",
                    "--tracing-rounds=1",
                    "--connections=2",
                    "--customers=3",
                    "--skus=2",
                    "--phase-timeout=60",
                    "--web-concurrency=1",
                    f"--json={tmp_path / 'bench.json'}",
                    f"--plot={tmp_path / 'bench.png'}",
                ]
            )
        )
    )

    # Then both rounds report CPU per order, and only the traced one exported spans
    table = capsys.readouterr().out
    assert "(g) what tracing costs" in table and "CPU per order, our processes (ms)" in table
    results = json.loads((tmp_path / "bench.json").read_text())
    off, on = results["tracing_cost"]["rounds"]
    assert (off["tracing"], on["tracing"]) == (False, True)
    assert off["orders"] > 0 and on["orders"] > 0 and results["api_errors"] == 0
    assert off["incomplete"] == 0 and on["incomplete"] == 0
    assert off["cpu_ms_per_order"]["ours"] > 0 and on["cpu_ms_per_order"]["ours"] > 0
    assert off["spans_per_order"] == 0 and on["spans_per_order"] > 10
    assert results["tracing_cost"]["summary"]["delta_ms"] is not None
    assert all(code == 0 for code in results["meta"]["exit_codes"].values())
    assert (tmp_path / "bench.png").stat().st_size > 10_000
