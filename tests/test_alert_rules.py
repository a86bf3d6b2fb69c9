"""The alerting rules, their promtool unit tests, Prometheus's and Alertmanager's
configurations and docs/alerts.md hold together: every alert has a severity, a service, its
annotations and a runbook section; a firing and a quiet unit test; and queries only metrics
that exist. (`make alerts` runs the unit tests themselves, and checks both configurations.)"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml
from markdown.extensions.toc import slugify

from testing.promql import (
    KAFKA_EXPORTER_METRICS,
    PROMETHEUS_METRICS,
    exported_series,
    metric_names,
)
from tools.supervisor import REPO_ROOT

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules"
RULE_TESTS = REPO_ROOT / "deploy" / "prometheus" / "tests"
PROMETHEUS = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTMANAGER = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTS_DOC = REPO_ROOT / "docs" / "alerts.md"

SEVERITIES = {"critical", "warning"}


def _rules() -> Iterator[dict]:
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


@dataclass(frozen=True)
class Case:
    """One `alert_rule_test` entry: at `eval_time`, exactly these alerts of that name fire."""

    alertname: str
    eval_time: str
    firing: tuple[dict, ...]  # the labels of each alert expected to fire


def _cases() -> list[Case]:
    cases = []
    for path in sorted(RULE_TESTS.glob("*.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                firing = tuple(alert["exp_labels"] for alert in case.get("exp_alerts") or [])
                cases.append(Case(case["alertname"], case["eval_time"], firing))
    return cases


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section():
    sections = {
        slugify(heading, "-")
        for heading in re.findall(r"^#{2,4} (.+)$", ALERTS_DOC.read_text(), re.MULTILINE)
    }
    alerts = _alerts()
    assert len(alerts) >= 15
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), name
        # A page of this repository's docs, never a link out of it.
        runbook = alert["annotations"]["runbook"]
        assert re.fullmatch(r"docs/alerts\.md#[a-z0-9-]+", runbook), f"{name}: {runbook}"
        assert runbook.partition("#")[2] in sections, f"{name}: no section for {runbook}"


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    cases = _cases()
    defined = {(alert["alert"], alert["labels"]["severity"]) for alert in _alerts()}
    # A case naming an alert that does not exist would pass quietly: promtool expects none.
    assert {case.alertname for case in cases} <= {name for name, _ in defined}
    for name, severity in sorted(defined):
        mine = [case for case in cases if case.alertname == name]
        fired = [case for case in mine if any(a["severity"] == severity for a in case.firing)]
        quiet = [case for case in mine if all(a["severity"] != severity for a in case.firing)]
        assert fired, f"{name} ({severity}) never fires in deploy/prometheus/tests"
        assert quiet, f"{name} ({severity}) has no quiet case in deploy/prometheus/tests"


def test_every_firing_alert_names_its_service():
    # Alertmanager groups by alert name and service: an alert without one would be grouped
    # with every other of its name.
    for case in _cases():
        for labels in case.firing:
            assert labels.get("service"), f"{case.alertname} at {case.eval_time}: no service"


def test_rules_query_only_metrics_that_exist():
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    known = exported_series() | KAFKA_EXPORTER_METRICS | PROMETHEUS_METRICS | recorded
    for rule in _rules():
        name = rule.get("alert") or rule["record"]
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{name} queries unknown {unknown}"
    assert "payment_charges_total" in exported_series()


def test_the_services_expected_up_are_those_prometheus_scrapes():
    expected = {
        (rule["labels"]["job"], rule["labels"]["service"])
        for rule in _rules()
        if rule.get("record") == "pipeline:expected_service"
    }
    scraped = {
        (job["job_name"], name)
        for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
        if job["job_name"] in {"web", "workers"}
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
    }
    assert expected == scraped


def test_prometheus_loads_every_rule_file_and_sends_alerts_to_alertmanager():
    config = yaml.safe_load(PROMETHEUS.read_text())
    # docker-compose mounts deploy/prometheus/rules at /etc/prometheus/rules.
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert {path.suffix for path in RULES.iterdir()} == {".yml"}
    [alertmanager] = config["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


def test_alertmanager_groups_by_alert_and_service_and_a_critical_alert_holds_back_its_warning():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    route = config["route"]
    assert set(route["group_by"]) == {"alertname", "service"}
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert {route["receiver"], *(child["receiver"] for child in route["routes"])} <= receivers
    inhibit = config["inhibit_rules"]
    assert {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "service", "group", "topic"],
    } in inhibit
    # Inhibitions that name alerts name alerts that exist.
    names = {alert["alert"] for alert in _alerts()}
    for rule in inhibit:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname="):
                assert matcher.split("=", 1)[1].strip('"') in names, matcher
