"""librdkafka configuration built from settings.KAFKA, and topic naming."""

import os
import socket
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

_SECURITY_KEYS = {
    "SECURITY_PROTOCOL": "security.protocol",
    "SASL_MECHANISM": "sasl.mechanism",
    "SASL_USERNAME": "sasl.username",
    "SASL_PASSWORD": "sasl.password",
    "SSL_CA_LOCATION": "ssl.ca.location",
    "SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "SSL_KEY_LOCATION": "ssl.key.location",
}


def client_id(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


def common_config() -> dict[str, Any]:
    kafka = settings.KAFKA
    config: dict[str, Any] = {"bootstrap.servers": kafka["BOOTSTRAP_SERVERS"]}
    for setting, key in _SECURITY_KEYS.items():
        if kafka[setting]:
            config[key] = kafka[setting]
    return config


def producer_config(role: str) -> dict[str, Any]:
    return {
        **common_config(),
        "client.id": client_id(role),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.KAFKA["PRODUCER_LINGER_MS"],
        # Places keys where Java clients do, on Apache Kafka and on our test broker alike.
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
    }


def consumer_config(*, group_id: str, role: str) -> dict[str, Any]:
    kafka = settings.KAFKA
    return {
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
        # Never read what a transactional producer aborted (librdkafka's default, said aloud:
        # metrics.order.rate is written in transactions).
        "isolation.level": "read_committed",
    }


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
