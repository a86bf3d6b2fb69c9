"""librdkafka configuration built from settings.KAFKA, and topic naming.

Security (docs/deployment.md, "Kafka security"): KAFKA_SECURITY_PROTOCOL picks the mode,
and only the settings that mode uses may be set, so that a forgotten protocol never leaves
credentials or certificates silently unused over a plaintext connection:

    PLAINTEXT        nothing more
    SASL_PLAINTEXT   KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD
    SSL              KAFKA_SSL_CA_LOCATION (else the system's CAs); with a client
                     certificate (mutual TLS) KAFKA_SSL_CERTIFICATE_LOCATION and
                     KAFKA_SSL_KEY_LOCATION, plus KAFKA_SSL_KEY_PASSWORD if the key is encrypted
    SASL_SSL         both of the above (a client certificate is optional)
"""

import os
import socket
from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Those with a username and password; GSSAPI (Kerberos) and OAUTHBEARER need more than
# these settings carry.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# "https": the broker's certificate must name the host connected to (librdkafka's default).
ENDPOINT_IDENTIFICATION_ALGORITHMS = ("https", "none")

# settings.KAFKA key → librdkafka property, by the part of the protocol that uses it.
_SASL_KEYS = {
    "SASL_MECHANISM": "sasl.mechanism",
    "SASL_USERNAME": "sasl.username",
    "SASL_PASSWORD": "sasl.password",
}
_SSL_KEYS = {
    "SSL_CA_LOCATION": "ssl.ca.location",
    "SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "SSL_KEY_LOCATION": "ssl.key.location",
    "SSL_KEY_PASSWORD": "ssl.key.password",
    "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "ssl.endpoint.identification.algorithm",
}
# Never shown: masked in ClientConfig's repr and in `manage.py kafka_config`.
SECRET_PROPERTIES = frozenset({"sasl.password", "ssl.key.password"})
MASK = "********"


class KafkaSecurityError(ValueError):
    """The KAFKA_* security settings do not fit together. The message is one line naming
    the environment variables, never a secret's value."""


class ClientConfig(dict[str, Any]):
    """A librdkafka configuration (a plain dict to confluent-kafka) whose repr masks the
    secrets: a config that ends up in a log line, a traceback or a debugger shows no password."""

    def masked(self) -> dict[str, Any]:
        return {key: MASK if key in SECRET_PROPERTIES else value for key, value in self.items()}

    def __repr__(self) -> str:
        return f"ClientConfig({self.masked()!r})"

    __str__ = __repr__


def _variables(keys: list[str]) -> str:
    return ", ".join(f"KAFKA_{key}" for key in keys)


def security_config(kafka: Mapping[str, Any]) -> dict[str, str]:
    """The librdkafka security properties for settings.KAFKA, or KafkaSecurityError."""
    given = kafka["SECURITY_PROTOCOL"].strip()
    protocol = (given or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(
            f"KAFKA_SECURITY_PROTOCOL={given!r} is not one of {', '.join(PROTOCOLS)}"
        )
    sasl = [key for key in _SASL_KEYS if kafka[key]]
    tls = [key for key in _SSL_KEYS if kafka[key]]
    if sasl and not protocol.startswith("SASL_"):
        raise KafkaSecurityError(
            f"{_variables(sasl)} set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL: "
            "set it to SASL_SSL (or SASL_PLAINTEXT)"
        )
    if tls and not protocol.endswith("SSL"):
        raise KafkaSecurityError(
            f"{_variables(tls)} set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS: "
            "set it to SSL or SASL_SSL"
        )
    config = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        mechanism = kafka["SASL_MECHANISM"].strip().upper()
        if mechanism not in SASL_MECHANISMS:
            found = f", not {kafka['SASL_MECHANISM']!r}" if kafka["SASL_MECHANISM"] else ""
            raise KafkaSecurityError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, one of "
                f"{', '.join(SASL_MECHANISMS)}{found}"
            )
        missing = [key for key in ("SASL_USERNAME", "SASL_PASSWORD") if not kafka[key]]
        if missing:
            raise KafkaSecurityError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} with {mechanism} needs "
                f"{' and '.join(f'KAFKA_{key}' for key in missing)}"
            )
        config |= {
            "sasl.mechanism": mechanism,
            "sasl.username": kafka["SASL_USERNAME"],
            "sasl.password": kafka["SASL_PASSWORD"],
        }
    if kafka["SSL_CERTIFICATE_LOCATION"] and not kafka["SSL_KEY_LOCATION"]:
        raise KafkaSecurityError(
            "KAFKA_SSL_CERTIFICATE_LOCATION (a client certificate) needs "
            "KAFKA_SSL_KEY_LOCATION, its private key"
        )
    if kafka["SSL_KEY_LOCATION"] and not kafka["SSL_CERTIFICATE_LOCATION"]:
        raise KafkaSecurityError(
            "KAFKA_SSL_KEY_LOCATION (a client key) needs KAFKA_SSL_CERTIFICATE_LOCATION, "
            "its certificate"
        )
    if kafka["SSL_KEY_PASSWORD"] and not kafka["SSL_KEY_LOCATION"]:
        raise KafkaSecurityError("KAFKA_SSL_KEY_PASSWORD set without KAFKA_SSL_KEY_LOCATION")
    algorithm = kafka["SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"].strip().lower()
    if algorithm and algorithm not in ENDPOINT_IDENTIFICATION_ALGORITHMS:
        raise KafkaSecurityError(
            f"KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM="
            f"{kafka['SSL_ENDPOINT_IDENTIFICATION_ALGORITHM']!r} is not one of "
            f"{', '.join(ENDPOINT_IDENTIFICATION_ALGORITHMS)}"
        )
    for key in tls:
        config[_SSL_KEYS[key]] = (
            algorithm if key == "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM" else kafka[key]
        )
    return config


def security_files(kafka: Mapping[str, Any]) -> dict[str, str]:
    """The files the TLS settings name: environment variable → path."""
    return {
        f"KAFKA_{key}": kafka[key]
        for key in ("SSL_CA_LOCATION", "SSL_CERTIFICATE_LOCATION", "SSL_KEY_LOCATION")
        # "probe" asks librdkafka to look for the system's CA bundle itself.
        if kafka[key] and kafka[key] != "probe"
    }


def client_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


def common_config() -> ClientConfig:
    kafka = settings.KAFKA
    return ClientConfig({"bootstrap.servers": kafka["BOOTSTRAP_SERVERS"], **security_config(kafka)})


def producer_config(role: str) -> ClientConfig:
    return ClientConfig(
        {
            **common_config(),
            "client.id": client_id(role),
            # Every write is acknowledged by all in-sync replicas (at least
            # min.insync.replicas of them) and retried without duplicates or reordering.
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.KAFKA["PRODUCER_LINGER_MS"],
            # Places keys where Java clients do, on Apache Kafka and on our test broker alike.
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
        }
    )


def consumer_config(*, group_id: str, role: str) -> ClientConfig:
    kafka = settings.KAFKA
    return ClientConfig(
        {
            **common_config(),
            "client.id": client_id(role),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": kafka["ASSIGNMENT_STRATEGY"],
            "session.timeout.ms": kafka["SESSION_TIMEOUT_MS"],
            "heartbeat.interval.ms": kafka["HEARTBEAT_INTERVAL_MS"],
            "max.poll.interval.ms": kafka["MAX_POLL_INTERVAL_MS"],
            "fetch.wait.max.ms": kafka["FETCH_WAIT_MAX_MS"],
            # Never read what a transactional producer aborted (librdkafka's default, said
            # aloud: metrics.order.rate is written in transactions).
            "isolation.level": "read_committed",
        }
    )


def topic_name(logical: str) -> str:
    """The physical topic for a logical name (`<topic>` → `<namespace><topic>`)."""
    return f"{settings.KAFKA['NAMESPACE']}{logical}"


def dead_letter_topic_name(logical: str) -> str:
    return topic_name(f"{logical}.dlq")


def group_name(consumer_name: str) -> str:
    return f"{settings.KAFKA['NAMESPACE']}{consumer_name}"


def admin_client() -> AdminClient:
    return AdminClient(common_config())


def topics_ensure(topics: list[str], *, timeout: float = 30.0) -> list[str]:
    """Create the physical topics that do not exist yet; return the names created."""
    admin = admin_client()
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [name for name in topics if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.KAFKA["DEFAULT_PARTITIONS"],
                replication_factor=settings.KAFKA["REPLICATION_FACTOR"],
            )
            for name in missing
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except Exception as exc:  # another process may have created it first
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def pipeline_topics() -> list[str]:
    """Every physical topic the pipeline uses: one per logical topic (event topics, then
    derived streams) plus its dead letters."""
    from kafka_bridge.registry import logical_topics

    names = []
    for logical in logical_topics():
        names += [topic_name(logical), dead_letter_topic_name(logical)]
    return names
