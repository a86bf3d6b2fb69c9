"""The Grafana dashboard and Prometheus configuration of docker-compose match the code: every
panel queries only metrics the code exports, and Prometheus scrapes every worker."""

import json
import re

import yaml
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

import common.metrics  # noqa: F401  (registers the web tier's metrics)
import kafka_bridge.metrics  # noqa: F401  (registers the workers' metrics)
from kafka_bridge.metrics import OutboxBacklogCollector
from tools.supervisor import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "pipeline.json"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = REPO_ROOT / "docker-compose.yml"

SAMPLE_SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "gauge": [""],
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def exported_series() -> set[str]:
    """Every series name the code can export: the registry's metrics (after importing the
    metrics modules) and the relay's scrape-time collector."""
    families: list[Metric] = [*REGISTRY.collect(), *OutboxBacklogCollector().describe()]
    return {
        family.name + suffix
        for family in families
        for suffix in SAMPLE_SUFFIXES.get(family.type, [""])
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (inside {} or a by/without/on/ignoring list) or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(match.group())
    return names


def _panels(panels: list[dict]) -> list[dict]:
    found = []
    for panel in panels:
        if panel.get("type") == "row":
            found += _panels(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def test_metric_names_are_read_from_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(http_x_bucket{status=~"5.."}[5m])))'
    ) == {"http_x_bucket"}
    assert metric_names("time() - max by (worker) (beat_seconds) / on(a) b_total") == {
        "beat_seconds",
        "b_total",
    }


def test_every_dashboard_panel_queries_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels(dashboard["panels"])
    exported = exported_series()
    assert len(panels) >= 10
    for panel in panels:
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = metric_names(expr)
            assert names, f"panel {panel['title']!r}: no metric in {expr!r}"
            unknown = names - exported
            assert not unknown, f"panel {panel['title']!r} queries unexported {unknown}"
            assert panel["datasource"]["uid"] == "prometheus"


def test_the_dashboard_covers_throughput_latency_lag_outbox_age_and_dead_letters():
    queried = {
        name
        for panel in _panels(json.loads(DASHBOARD.read_text())["panels"])
        for target in panel["targets"]
        for name in metric_names(target["expr"])
    }
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


def test_prometheus_scrapes_the_web_tier_and_every_worker_service():
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    workers = {
        name
        for name, service in compose.items()
        if any(step in service.get("command", []) for step in ("run_relay", "run_consumer"))
    }
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {
        job["job_name"]: {name for sd in job["dns_sd_configs"] for name in sd["names"]}
        for job in scrape
    }
    assert targets["web"] == {"web"}
    assert targets["workers"] == workers
    assert {"relay", "consumer-inventory", "consumer-dead-letters"} <= workers
