"""Kafka security from the environment (kafka_bridge.client): each mode gives exactly the
librdkafka properties it needs; settings that do not fit the mode stop start-up with one
readable line; secrets never show in a config's repr or dump."""

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from confluent_kafka import Producer

from kafka_bridge.client import (
    MASK,
    ClientConfig,
    KafkaSecurityError,
    common_config,
    producer_config,
    security_config,
)
from tools.supervisor import REPO_ROOT

PASSWORD = "sasl-pa55word-never-shown"
KEY_PASSWORD = "key-pa55word-never-shown"
BROKERS = "b-1.example.com:9096,b-2.example.com:9096"

NO_SECURITY = {
    "SECURITY_PROTOCOL": "",
    "SASL_MECHANISM": "",
    "SASL_USERNAME": "",
    "SASL_PASSWORD": "",
    "SSL_CA_LOCATION": "",
    "SSL_CERTIFICATE_LOCATION": "",
    "SSL_KEY_LOCATION": "",
    "SSL_KEY_PASSWORD": "",
    "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "",
}


def _kafka(**security: str) -> dict[str, Any]:
    return {**NO_SECURITY, **security}


MODES = {
    "plaintext, nothing set": (
        {},
        {"bootstrap.servers": BROKERS, "security.protocol": "PLAINTEXT"},
    ),
    "plaintext, said aloud": (
        {"SECURITY_PROTOCOL": "plaintext"},
        {"bootstrap.servers": BROKERS, "security.protocol": "PLAINTEXT"},
    ),
    "SASL_PLAINTEXT": (
        {
            "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SASL_MECHANISM": "scram-sha-256",
            "SASL_USERNAME": "ecommerce",
            "SASL_PASSWORD": PASSWORD,
        },
        {
            "bootstrap.servers": BROKERS,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "ecommerce",
            "sasl.password": PASSWORD,
        },
    ),
    "SASL_SSL with SCRAM-SHA-512": (
        {
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_MECHANISM": "SCRAM-SHA-512",
            "SASL_USERNAME": "ecommerce",
            "SASL_PASSWORD": PASSWORD,
            "SSL_CA_LOCATION": "/etc/kafka-certs/ca.pem",
        },
        {
            "bootstrap.servers": BROKERS,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "ecommerce",
            "sasl.password": PASSWORD,
            "ssl.ca.location": "/etc/kafka-certs/ca.pem",
        },
    ),
    "SSL, server authenticated only": (
        {"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": "/etc/ssl/certs/ca-certificates.crt"},
        {
            "bootstrap.servers": BROKERS,
            "security.protocol": "SSL",
            "ssl.ca.location": "/etc/ssl/certs/ca-certificates.crt",
        },
    ),
    "mutual TLS, encrypted client key": (
        {
            "SECURITY_PROTOCOL": "SSL",
            "SSL_CA_LOCATION": "/etc/kafka-certs/ca.pem",
            "SSL_CERTIFICATE_LOCATION": "/etc/kafka-certs/client.pem",
            "SSL_KEY_LOCATION": "/etc/kafka-certs/client.key",
            "SSL_KEY_PASSWORD": KEY_PASSWORD,
            "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "HTTPS",
        },
        {
            "bootstrap.servers": BROKERS,
            "security.protocol": "SSL",
            "ssl.ca.location": "/etc/kafka-certs/ca.pem",
            "ssl.certificate.location": "/etc/kafka-certs/client.pem",
            "ssl.key.location": "/etc/kafka-certs/client.key",
            "ssl.key.password": KEY_PASSWORD,
            "ssl.endpoint.identification.algorithm": "https",
        },
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_gives_exactly_the_librdkafka_properties_it_needs(settings, mode: str):
    # Given the KAFKA_* settings of one security mode
    security, expected = MODES[mode]
    settings.KAFKA = {**settings.KAFKA, **_kafka(**security), "BOOTSTRAP_SERVERS": BROKERS}

    # When the connection settings every client shares are built
    config = common_config()

    # Then they are exactly the mode's librdkafka properties, nothing more
    assert config == expected
    # And producers and consumers start from them
    assert producer_config("test").items() >= expected.items()


INVALID = {
    "SASL_SSL without a password": (
        {
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_MECHANISM": "SCRAM-SHA-512",
            "SASL_USERNAME": "ecommerce",
        },
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL with SCRAM-SHA-512 needs KAFKA_SASL_PASSWORD",
    ),
    "SASL_SSL without username and password": (
        {"SECURITY_PROTOCOL": "sasl_ssl", "SASL_MECHANISM": "PLAIN"},
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL with PLAIN needs KAFKA_SASL_USERNAME and "
        "KAFKA_SASL_PASSWORD",
    ),
    "SASL without a mechanism": (
        {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM, one of PLAIN, "
        "SCRAM-SHA-256, SCRAM-SHA-512",
    ),
    "SASL with Kerberos": (
        {
            "SECURITY_PROTOCOL": "SASL_SSL",
            "SASL_MECHANISM": "GSSAPI",
            "SASL_USERNAME": "u",
            "SASL_PASSWORD": PASSWORD,
        },
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM, one of PLAIN, "
        "SCRAM-SHA-256, SCRAM-SHA-512, not 'GSSAPI'",
    ),
    "credentials but the protocol forgotten": (
        {"SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
        "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set, but "
        "KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL: set it to SASL_SSL (or SASL_PLAINTEXT)",
    ),
    "credentials with SSL": (
        {"SECURITY_PROTOCOL": "SSL", "SASL_PASSWORD": PASSWORD},
        "KAFKA_SASL_PASSWORD set, but KAFKA_SECURITY_PROTOCOL=SSL uses no SASL: set it to "
        "SASL_SSL (or SASL_PLAINTEXT)",
    ),
    "a CA with SASL_PLAINTEXT": (
        {
            "SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SASL_MECHANISM": "PLAIN",
            "SASL_USERNAME": "u",
            "SASL_PASSWORD": PASSWORD,
            "SSL_CA_LOCATION": "/ca.pem",
        },
        "KAFKA_SSL_CA_LOCATION set, but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT uses no TLS: "
        "set it to SSL or SASL_SSL",
    ),
    "SSL with a certificate but no key": (
        {"SECURITY_PROTOCOL": "SSL", "SSL_CERTIFICATE_LOCATION": "/client.pem"},
        "KAFKA_SSL_CERTIFICATE_LOCATION (a client certificate) needs KAFKA_SSL_KEY_LOCATION, "
        "its private key",
    ),
    "SSL with a key but no certificate": (
        {"SECURITY_PROTOCOL": "SSL", "SSL_KEY_LOCATION": "/client.key"},
        "KAFKA_SSL_KEY_LOCATION (a client key) needs KAFKA_SSL_CERTIFICATE_LOCATION, its "
        "certificate",
    ),
    "a key password without a key": (
        {"SECURITY_PROTOCOL": "SSL", "SSL_KEY_PASSWORD": KEY_PASSWORD},
        "KAFKA_SSL_KEY_PASSWORD set without KAFKA_SSL_KEY_LOCATION",
    ),
    "an unknown protocol": (
        {"SECURITY_PROTOCOL": "TLS"},
        "KAFKA_SECURITY_PROTOCOL='TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
    ),
    "an unknown endpoint identification": (
        {"SECURITY_PROTOCOL": "SSL", "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "off"},
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM='off' is not one of https, none",
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_settings_that_do_not_fit_the_mode_are_refused_in_one_line(case: str):
    security, message = INVALID[case]

    with pytest.raises(KafkaSecurityError) as refused:
        security_config(_kafka(**security))

    assert str(refused.value) == message
    assert PASSWORD not in message and KEY_PASSWORD not in message


def test_a_config_shows_no_secret_in_its_repr_and_still_configures_librdkafka():
    # Given a configuration with both secrets
    config = ClientConfig(
        {
            "bootstrap.servers": "127.0.0.1:9",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "ecommerce",
            "sasl.password": PASSWORD,
        }
    )

    # When it is shown (a log line, a traceback, a debugger)
    shown = [repr(config), str(config), f"{config}", repr({"config": config})]

    # Then the secret is masked, the rest is there
    for text in shown:
        assert PASSWORD not in text
        assert MASK in text and "ecommerce" in text
    # And librdkafka still gets the real value (a dict to confluent-kafka)
    assert config["sasl.password"] == PASSWORD
    Producer(config).flush(0)


def _manage(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    # A fresh process reads the settings from the environment, as a container does.
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_S")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_startup_stops_with_one_readable_line_and_no_secret():
    # When a process starts with a password but no SASL protocol
    result = _manage("check", KAFKA_SASL_USERNAME="ecommerce", KAFKA_SASL_PASSWORD=PASSWORD)

    # Then the system checks stop it with one line naming the variables, not the secret
    assert result.returncode == 1
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "kafka_bridge.E001" in line]
    assert lines == [
        "?: (kafka_bridge.E001) KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD set, but "
        "KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL: set it to SASL_SSL (or SASL_PLAINTEXT)"
    ]
    assert "Traceback" not in output
    assert PASSWORD not in output


def test_a_missing_certificate_file_stops_startup_with_one_line_each(tmp_path):
    # Given a CA file that is not there, and a client certificate that is a directory (what
    # Docker leaves in a container when the file to bind-mount was missing on the host)
    (tmp_path / "client.pem").mkdir()
    (tmp_path / "client.key").write_text("a key")

    result = _manage(
        "check",
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CA_LOCATION="/nonexistent/ca.pem",
        KAFKA_SSL_CERTIFICATE_LOCATION=str(tmp_path / "client.pem"),
        KAFKA_SSL_KEY_LOCATION=str(tmp_path / "client.key"),
    )

    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "kafka_bridge.E002" in line]
    assert lines == [
        "?: (kafka_bridge.E002) KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem: no such readable file",
        f"?: (kafka_bridge.E002) KAFKA_SSL_CERTIFICATE_LOCATION={tmp_path / 'client.pem'}: "
        "no such readable file",
    ]


def test_the_config_dump_maps_every_variable_and_masks_the_secrets(tmp_path):
    # Given SASL_SSL with a client certificate too, every variable set
    files = {name: tmp_path / name for name in ("ca.pem", "client.pem", "client.key")}
    for path in files.values():
        path.write_text("placeholder: only read by librdkafka, which this command never starts")
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": BROKERS,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ecommerce",
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CA_LOCATION": str(files["ca.pem"]),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(files["client.pem"]),
        "KAFKA_SSL_KEY_LOCATION": str(files["client.key"]),
        "KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "none",
    }

    # When the effective client settings are printed
    result = _manage("kafka_config", "--json", **environment)

    # Then each variable maps to its librdkafka property, and both secrets are masked
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "bootstrap.servers": BROKERS,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ecommerce",
        "sasl.password": MASK,
        "ssl.ca.location": str(files["ca.pem"]),
        "ssl.certificate.location": str(files["client.pem"]),
        "ssl.key.location": str(files["client.key"]),
        "ssl.key.password": MASK,
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert PASSWORD not in result.stdout + result.stderr
    assert KEY_PASSWORD not in result.stdout + result.stderr
