"""What PromQL in deploy/ may select: the series the code exports, those of kafka-exporter and
those Prometheus makes itself; and the metric names a PromQL expression selects. Shared by
the tests of the Grafana dashboard and of the alerting rules."""

import re
import shutil
import subprocess

from prometheus_client import REGISTRY
from prometheus_client.core import Metric

import common.circuit_breaker  # (registers the circuit breakers' metrics)
import common.metrics  # noqa: F401  (registers the web tier's metrics)
import kafka_bridge.metrics  # noqa: F401  (registers the workers' metrics)
import orders.metrics  # noqa: F401  (registers the payment outcomes)
import risk.metrics  # noqa: F401  (registers the risk decisions)
from kafka_bridge.metrics import OutboxBacklogCollector

SAMPLE_SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "gauge": [""],
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip

# kafka-exporter's series (danielqsj/kafka-exporter, job `kafka-exporter`): the ones the
# dashboard and the rules may use. Labels: topic, partition, consumergroup.
KAFKA_EXPORTER_METRICS = frozenset(
    {
        "kafka_brokers",
        "kafka_topic_partitions",
        "kafka_topic_partition_current_offset",
        "kafka_topic_partition_oldest_offset",
        "kafka_topic_partition_in_sync_replica",
        "kafka_topic_partition_leader",
        "kafka_topic_partition_replicas",
        "kafka_topic_partition_under_replicated_partition",
        "kafka_consumergroup_current_offset",
        "kafka_consumergroup_lag",
        "kafka_consumergroup_lag_sum",
        "kafka_consumergroup_members",
    }
)

# Series Prometheus itself writes: `up` per scrape target, `ALERTS` per pending or firing
# alert (labels alertname, alertstate and the alert's own).
PROMETHEUS_METRICS = frozenset({"up", "ALERTS"})


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
    expr = re.sub(r"\boffset\s+-?\w+", "", expr)  # offset durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in PROMQL_WORDS:
            continue  # a function or a keyword
        names.add(match.group())
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Prometheus's promtool (`make promtool` installs it, as `make test` does)."""
    path = shutil.which("promtool")
    assert path, "promtool is not installed: `make promtool` installs it"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, check=False)
