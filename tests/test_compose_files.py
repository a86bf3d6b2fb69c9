"""docker-compose.yml and its override files, checked without a Docker engine: each is valid
against the compose specification's JSON schema (check-jsonschema's vendored copy), as
written and once interpolated the way compose does with the variables they require; and the
override files fit the base file, the broker listeners, the certificate script and the app's
own Kafka settings check."""

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kafka_bridge.client import security_config

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "docker-compose.yml"
HA = ROOT / "docker-compose.ha.yml"
SASL = ROOT / "docker-compose.kafka-sasl.yml"
MTLS = ROOT / "docker-compose.kafka-mtls.yml"
OVERRIDES = [HA, SASL, MTLS]
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

# The variables compose refuses to start without (${NAME:?...}), for every file together.
REQUIRED = {
    "DJANGO_SECRET_KEY": "a-secret-key",
    "GRAFANA_ADMIN_PASSWORD": "a-grafana-password",
    "KAFKA_SASL_PASSWORD": "a-sasl-password",
}
APP_IMAGE = "${ECOMMERCE_IMAGE:-ecommerce:local}"

# $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+replacement}, ${NAME+replacement}: compose's interpolation.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, environment: Mapping[str, str]) -> Any:
    """Every string value of a parsed compose file with its variables substituted."""
    if isinstance(value, dict):
        return {key: interpolate(item, environment) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environment) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, argument = match["braced"] or match["named"], match["op"], match["arg"]
        current = environment.get(name)
        # With a colon, an empty value counts as unset.
        usable = bool(current) if op and op.startswith(":") else current is not None
        if op in (":-", "-"):
            return current if usable else argument  # type: ignore[return-value]
        if op in (":?", "?"):
            if not usable:
                raise MissingVariable(f"{name}: {argument}")
            return current  # type: ignore[return-value]
        if op in (":+", "+"):
            return argument if usable else ""
        return current or ""

    return _VARIABLE.sub(substitute, value)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _schema_check(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _merged(*paths: Path) -> dict[str, dict[str, Any]]:
    """The services of several files as compose merges them, for the keys checked here:
    mappings (environment, depends_on) merge key by key, volumes by their target path,
    anything else is replaced."""
    services: dict[str, dict[str, Any]] = {}
    for path in paths:
        for name, override in interpolate(_load(path), REQUIRED)["services"].items():
            service = services.setdefault(name, {})
            for key, value in override.items():
                if key == "volumes":
                    mounts = {mount.split(":")[1]: mount for mount in service.get(key, [])}
                    mounts |= {mount.split(":")[1]: mount for mount in value}
                    service[key] = list(mounts.values())
                elif isinstance(value, dict):
                    service[key] = {**service.get(key, {}), **value}
                else:
                    service[key] = value
    return services


def _app_services() -> set[str]:
    """The services of the app image that talk to Kafka: all but the static files' copy."""
    return {
        name
        for name, service in _load(BASE)["services"].items()
        if service.get("image") == APP_IMAGE and name != "static"
    }


def _settings_kafka(environment: Mapping[str, str]) -> dict[str, str]:
    """settings.KAFKA's security keys as ecommerce/settings.py reads them (empty if unset)."""
    keys = [
        "SECURITY_PROTOCOL",
        "SASL_MECHANISM",
        "SASL_USERNAME",
        "SASL_PASSWORD",
        "SSL_CA_LOCATION",
        "SSL_CERTIFICATE_LOCATION",
        "SSL_KEY_LOCATION",
        "SSL_KEY_PASSWORD",
        "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
    ]
    return {key: str(environment.get(f"KAFKA_{key}", "")) for key in keys}


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' → {NAME: (host, port)}."""
    found = {}
    for listener in value.split(","):
        name, address = listener.split("://")
        host, port = address.rsplit(":", 1)
        found[name] = (host, int(port))
    return found


# --- the schema ---------------------------------------------------------------------------
def test_every_compose_file_is_valid_against_the_compose_spec_as_written():
    result = _schema_check([BASE, *OVERRIDES])

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_compose_file_is_valid_once_interpolated(tmp_path: Path):
    # Given the files interpolated as compose does, with the variables they require
    interpolated = []
    for path in [BASE, *OVERRIDES]:
        target = tmp_path / f"{path.stem}.json"
        target.write_text(json.dumps(interpolate(_load(path), REQUIRED)))
        interpolated.append(target)

    # Then each is still a valid compose file
    result = _schema_check(interpolated)
    assert result.returncode == 0, result.stdout + result.stderr
    # And the schema does refuse what compose would refuse (a misspelt key)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"services": {"web": {"imagee": "x"}}}))
    assert _schema_check([broken]).returncode != 0


@pytest.mark.parametrize("path", [BASE, SASL], ids=lambda path: path.name)
def test_compose_refuses_to_start_without_its_secrets(path: Path):
    needed = {"docker-compose.yml": "DJANGO_SECRET_KEY", SASL.name: "KAFKA_SASL_PASSWORD"}
    missing = needed[path.name]

    with pytest.raises(MissingVariable, match=f"^{missing}: set {missing}$"):
        interpolate(_load(path), {k: v for k, v in REQUIRED.items() if k != missing})


# --- the overrides fit the base file ------------------------------------------------------
@pytest.mark.parametrize("path", OVERRIDES, ids=lambda path: path.name)
def test_an_override_reaches_every_app_container_and_only_known_services(path: Path):
    base = _load(BASE)["services"]
    override = _load(path)["services"]

    # Every container of the app image gets the override's Kafka settings
    assert _app_services() <= set(override), _app_services() - set(override)
    bootstrap = {
        override[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] for name in _app_services()
    }
    assert len(bootstrap) == 1
    # And a service the base file does not have is complete (an image of its own)
    for name, service in override.items():
        assert name in base or "image" in service, name
    # And every named volume it mounts is declared
    volumes = set(_load(BASE)["volumes"]) | set(_load(path).get("volumes") or {})
    for name, service in override.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source.startswith("./") or source in volumes, (path.name, name, mount)


def test_the_ha_option_runs_three_brokers_with_replication_3_and_2_in_sync():
    services = _merged(BASE, HA)
    brokers = {name: services[name] for name in ("kafka", "kafka-2", "kafka-3")}

    # Three nodes, each a voter of one quorum that names all three
    ids = {name: broker["environment"]["KAFKA_NODE_ID"] for name, broker in brokers.items()}
    assert sorted(ids.values()) == ["1", "2", "3"]
    voters = {f"{ids[name]}@{name}:9093" for name in brokers}
    for name, broker in brokers.items():
        env = broker["environment"]
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["CLUSTER_ID"] == services["kafka"]["environment"]["CLUSTER_ID"]
        # Each advertises its own host name to the network, and a host port of its own
        advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        assert advertised["PLAINTEXT"] == (name, 9092)
        assert f"127.0.0.1:{advertised['EXTERNAL'][1]}:29092" in broker["ports"]
        # Everything replicated three times, two copies in sync to acknowledge a write
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        # On data of its own: not the single node's volume
        assert not any(mount.startswith("kafka-data:") for mount in broker["volumes"])
    assert len({tuple(broker["volumes"]) for broker in brokers.values()}) == 3

    # The app knows all three brokers and creates topics with three replicas, once all
    # three are up
    for name in _app_services():
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092,kafka-2:9092,kafka-3:9092"
        assert env["KAFKA_REPLICATION_FACTOR"] == "3"
    depends = services["migrate"]["depends_on"]
    assert {name: depends[name]["condition"] for name in brokers} == dict.fromkeys(
        brokers, "service_healthy"
    )
    # And so does the exporter
    assert services["kafka-exporter"]["command"] == [
        f"--kafka.server={name}:9092" for name in brokers
    ]


def _secured_broker() -> tuple[dict[str, str], dict[str, tuple[str, int]], dict[str, str]]:
    env = _merged(BASE, SASL)["kafka"]["environment"]
    listeners = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    return env, listeners, protocols


def test_the_secured_broker_speaks_plaintext_only_inside_its_container():
    env, listeners, protocols = _secured_broker()

    # Every listener has a protocol; the network and the host only reach TLS ones
    bound = _listeners(env["KAFKA_LISTENERS"])
    assert set(bound) <= set(protocols)
    assert protocols["CLIENT"] == protocols["EXTERNAL"] == "SASL_SSL"
    assert protocols["MTLS"] == "SSL"
    assert env["KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    for name, (host, _port) in bound.items():
        if protocols[name] == "PLAINTEXT" and name != "CONTROLLER":
            assert host == "localhost", name
    # The base file's health check (plaintext, localhost:9092) still reaches the broker
    assert listeners["INTERNAL"] == ("localhost", 9092)
    # The image sets up JKS keystores and a JAAS file of its own when an advertised listener
    # is named like a protocol: none is
    assert "SSL://" not in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "SASL_" not in env["KAFKA_ADVERTISED_LISTENERS"]
    # Broker properties come from KAFKA_* variables: the SCRAM secret is not one of them
    assert not any("PASSWORD" in name for name in env if name.startswith("KAFKA_")), (
        "a password would be written to server.properties"
    )


@pytest.mark.parametrize(
    ("files", "listener"),
    [((SASL,), "CLIENT"), ((SASL, MTLS), "MTLS")],
    ids=["SASL_SSL", "mutual TLS"],
)
def test_the_app_settings_of_the_secured_broker_pass_the_apps_own_check(
    files: tuple[Path, ...], listener: str
):
    _env, listeners, protocols = _secured_broker()
    services = _merged(BASE, *files)

    for name in _app_services():
        env = services[name]["environment"]
        # The app connects to the listener of its mode, which its certificate names
        host, port = listeners[listener]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"{host}:{port}"
        # Its settings pass the app's own start-up check, in the listener's protocol
        config = security_config(_settings_kafka(env))
        assert config["security.protocol"] == protocols[listener]
        # And every file they name is mounted into the container
        mounted = {mount.split(":")[1] for mount in services[name]["volumes"]}
        for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
            if key in config:
                assert config[key] in mounted, (name, key)


def test_the_certificate_mounts_name_files_the_script_makes(tmp_path: Path):
    # Given the certificate script's output
    subprocess.run(
        [str(ROOT / "deploy" / "kafka-security" / "make-certs.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )

    # Then every file the overrides mount from its directory is one it made, and the CA key
    # is mounted nowhere
    prefix = "./deploy/kafka-security/certs/"
    for path in OVERRIDES:
        for name, service in _load(path)["services"].items():
            for mount in service.get("volumes", []):
                source = mount.split(":")[0]
                if source.startswith(prefix):
                    assert (tmp_path / source.removeprefix(prefix)).is_file(), (path.name, mount)
                    assert not source.endswith("ca.key"), (path.name, name)


# --- the base file ------------------------------------------------------------------------
def test_only_caddy_is_public_and_it_runs_the_tested_caddyfile():
    services = _load(BASE)["services"]

    caddy = services["caddy"]
    assert caddy["image"] == "caddy:2"
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    # It serves the static files the image collected (STATIC_ROOT), copied on every start
    assert "static-files:/srv/static:ro" in caddy["volumes"]
    assert "static-files:/srv/static" in services["static"]["volumes"]
    assert "/app/staticfiles/. /srv/static/" in services["static"]["command"][-1]
    assert caddy["depends_on"]["static"]["condition"] == "service_completed_successfully"
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    assert caddy["environment"]["CADDY_UPSTREAM"] == "web:8000"
    # Every other published port is on the loopback
    for name, service in services.items():
        if name != "caddy":
            for port in service.get("ports", []):
                assert port.startswith("127.0.0.1:"), (name, port)
    # Django trusts the one proxy in front of it
    env = services["web"]["environment"]
    assert env["DJANGO_SECURE"] == "${DJANGO_SECURE:-true}"
    assert env["TRUSTED_PROXY_COUNT"] == "${TRUSTED_PROXY_COUNT:-1}"


def test_the_observability_services_are_wired():
    compose = _load(BASE)
    services = compose["services"]

    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert "127.0.0.1:16686:16686" in services["jaeger"]["ports"]
    env = services["web"]["environment"]
    assert (
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-http://jaeger:4318}"
    )
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "${OTEL_EXPORTER_OTLP_PROTOCOL:-http/protobuf}"
    alertmanager = services["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:")
    assert (
        "./deploy/alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in alertmanager["volumes"]
    )
    assert "127.0.0.1:9093:9093" in alertmanager["ports"]
    exporter = services["kafka-exporter"]
    assert exporter["image"].startswith("danielqsj/kafka-exporter:")
    assert exporter["command"] == ["--kafka.server=kafka:9092"]
    assert "9308" in exporter["expose"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
