"""The Grafana dashboard and Prometheus configuration of docker-compose match the code: every
panel queries only metrics that exist (the code's, kafka-exporter's, Prometheus's own), and
Prometheus scrapes every worker, kafka-exporter, and sends alerts to Alertmanager."""

import json
import re

import yaml

from testing.promql import (
    KAFKA_EXPORTER_METRICS,
    PROMETHEUS_METRICS,
    exported_series,
    metric_names,
    promtool,
)
from tools.supervisor import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "pipeline.json"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = REPO_ROOT / "docker-compose.yml"


def _panels(panels: list[dict]) -> list[dict]:
    found = []
    for panel in panels:
        if panel.get("type") == "row":
            found += _panels(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _rows(panels: list[dict]) -> dict[str, list[dict]]:
    """The panels under each row, by the row's title (expanded rows are followed by their
    panels, collapsed ones hold them)."""
    rows: dict[str, list[dict]] = {}
    current: list[dict] = rows.setdefault("", [])
    for panel in panels:
        if panel.get("type") == "row":
            current = rows.setdefault(panel["title"], [])
            current += panel.get("panels", [])
        else:
            current.append(panel)
    return rows


def _queried(panels: list[dict]) -> set[str]:
    return {
        name
        for panel in panels
        for target in panel["targets"]
        for name in metric_names(target["expr"])
    }


def test_metric_names_are_read_from_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(http_x_bucket{status=~"5.."}[5m])))'
    ) == {"http_x_bucket"}
    assert metric_names("time() - max by (worker) (beat_seconds) / on(a) b_total") == {
        "beat_seconds",
        "b_total",
    }
    assert metric_names("a_total unless a_total offset 10m or vector(0)") == {"a_total"}


def test_every_dashboard_panel_queries_only_metrics_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels(dashboard["panels"])
    known = exported_series() | KAFKA_EXPORTER_METRICS | PROMETHEUS_METRICS
    assert len(panels) >= 10
    for panel in panels:
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"panel {panel['title']!r}: no metric in {expr!r}"
            unknown = names - known
            assert not unknown, f"panel {panel['title']!r} queries unknown {unknown}"
            assert panel["datasource"]["uid"] == "prometheus"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool parses each query as the expression of a recording rule (Grafana's own
    # interval variables given a value first).
    exprs = [
        re.sub(r"\$__(rate_interval|interval|range)", "1m", target["expr"])
        for panel in _panels(json.loads(DASHBOARD.read_text())["panels"])
        for target in panel["targets"]
    ]
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"dashboard:query_{n}", "expr": expr}
                            for n, expr in enumerate(exprs)
                        ],
                    }
                ]
            }
        )
    )
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_covers_throughput_latency_lag_outbox_age_and_dead_letters():
    queried = _queried(_panels(json.loads(DASHBOARD.read_text())["panels"]))
    for needed in [
        "kafka_consumer_events_processed_total",
        "outbox_events_published_total",
        "http_request_duration_seconds_bucket",
        "kafka_consumer_handler_duration_seconds_bucket",
        "kafka_consumer_lag_messages",
        "outbox_oldest_pending_age_seconds",
        "kafka_consumer_events_dead_lettered_total",
    ]:
        assert needed in queried


def test_the_alerts_row_shows_firing_and_pending_alerts_by_name_and_severity():
    rows = _rows(json.loads(DASHBOARD.read_text())["panels"])
    assert list(rows)[1] == "Alerts"  # first on the page (nothing stands above it)
    exprs = [target["expr"] for panel in rows["Alerts"] for target in panel["targets"]]
    assert all(metric_names(expr) == {"ALERTS"} for expr in exprs)
    assert any('alertstate="firing"' in expr for expr in exprs)
    assert any('alertstate="pending"' in expr for expr in exprs)
    assert any(re.search(r"by \(alertname, severity", expr) for expr in exprs)
    assert {panel["type"] for panel in rows["Alerts"]} >= {"table", "state-timeline"}


def test_the_broker_row_shows_kafka_exporter_metrics():
    rows = _rows(json.loads(DASHBOARD.read_text())["panels"])
    assert _queried(rows["Broker"]) == {
        "kafka_brokers",
        "kafka_topic_partitions",
        "kafka_topic_partition_under_replicated_partition",
        "kafka_consumergroup_lag_sum",
        "kafka_topic_partition_current_offset",
    }


def test_prometheus_scrapes_the_web_tier_every_worker_service_and_kafka_exporter():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    workers = {
        name
        for name, service in compose.items()
        # run_relay, run_consumer, run_webhook_dispatcher: the worker loops serving METRICS_PORT.
        if any(step.startswith("run_") for step in service.get("command", []))
    }
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {
        job["job_name"]: {name for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
        | {target for static in job.get("static_configs", []) for target in static["targets"]}
        for job in scrape
    }
    assert targets["web"] == {"web"}
    assert targets["workers"] == workers
    assert {"relay", "consumer-inventory", "consumer-dead-letters"} <= workers
    # One exporter speaks for the whole Kafka cluster (docs/alerts.md, "Broker metrics").
    assert targets["kafka-exporter"] == {"kafka-exporter:9308"}


def test_the_payments_row_shows_the_circuit_breaker_its_transitions_and_risk_decisions():
    rows = _rows(json.loads(DASHBOARD.read_text())["panels"])
    assert _queried(rows["Payments and risk"]) == {
        "circuit_breaker_state",
        "circuit_breaker_transitions_total",
        "payment_charges_total",
        "risk_assessments_total",
    }
    [state] = [p for p in rows["Payments and risk"] if p["type"] == "state-timeline"]
    names = state["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {value: name["text"] for value, name in names.items()} == {
        "0": "closed",
        "1": "half-open",
        "2": "open",
    }
