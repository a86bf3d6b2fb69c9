"""The Kafka Connect export (docker-compose profile "analytics"): the connector config and the
services that run and register it. No Docker engine here: both files are parsed and checked
against each other and against our event contracts."""

import json
import re
from pathlib import Path

import yaml

from kafka_bridge.contracts import EVENT_TYPES, all_topics

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR = ROOT / "connect" / "order-events-jdbc-sink.json"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _connector() -> dict[str, str]:
    return json.loads(CONNECTOR.read_text())


def test_the_connector_exports_exactly_the_order_pipeline_topics():
    config = _connector()

    topics = config["topics"].split(",")

    assert set(topics) <= set(all_topics()), "a topic that no event contract names"
    order_topics = {kind.topic for kind in EVENT_TYPES.values()}
    assert set(topics) == order_topics  # every topic the saga writes, no dead letters
    assert config["connector.class"] == "io.confluent.connect.jdbc.JdbcSinkConnector"


def test_the_connector_upserts_by_message_position_and_holds_no_secret():
    config = _connector()

    # The primary key is the position the InsertField transform adds: a redelivered message
    # rewrites its own row.
    inserted = {v for k, v in config.items() if k.startswith("transforms.position.")}
    assert config["insert.mode"] == "upsert" and config["pk.mode"] == "record_value"
    assert set(config["pk.fields"].split(",")) <= inserted
    assert config["transforms"].split(",") == ["wrap", "position"]  # struct first, then fields
    for key in ("connection.url", "connection.user", "connection.password"):
        assert re.fullmatch(r"\$\{env:[A-Z_]+\}", config[key]), key


def test_compose_runs_connect_and_registers_the_connector_from_the_repo_file():
    services = _compose()["services"]
    connect, register = services["kafka-connect"], services["connect-register"]

    # Connect installs the JDBC sink and resolves every ${env:...} the connector uses
    assert "confluentinc/kafka-connect-jdbc" in " ".join(connect["command"])
    assert connect["environment"]["CONNECT_CONFIG_PROVIDERS"] == "env"
    wanted = set(re.findall(r"\$\{env:([A-Z_]+)\}", CONNECTOR.read_text()))
    assert wanted and wanted <= set(connect["environment"])
    # and the one-shot service PUTs this very file to the connector's config endpoint, once
    # Connect answers and the topics exist
    assert "./connect:/connect:ro" in register["volumes"]
    arguments = register["command"]
    assert f"@/connect/{CONNECTOR.name}" in arguments
    assert arguments[arguments.index("-X") + 1] == "PUT"
    assert arguments[-1].endswith(f"/connectors/{CONNECTOR.stem}/config")
    assert register["depends_on"]["kafka-connect"]["condition"] == "service_healthy"
    assert register["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert register["restart"] == "no"


def test_compose_file_is_consistent():
    compose = _compose()
    services = compose["services"]

    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], (name, volume)
    # The export is opt-in: a plain `docker compose up` starts no JVM for it.
    assert services["kafka-connect"]["profiles"] == ["analytics"]
    assert services["connect-register"]["profiles"] == ["analytics"]
