"""The broker's readiness check (`/readyz/`): a metadata request that names a broker."""

import functools

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from django.conf import settings

from kafka_bridge.client import admin_client


@functools.lru_cache(maxsize=2)
def readiness_admin_client(bootstrap_servers: str) -> AdminClient:
    return admin_client()  # one per process: it keeps its broker connections


def kafka_readiness_check() -> None:
    admin = readiness_admin_client(settings.KAFKA["BOOTSTRAP_SERVERS"])
    metadata = admin.list_topics(timeout=settings.READINESS_TIMEOUT_SECONDS)
    if not metadata.brokers:
        raise KafkaException("no broker in the cluster metadata")
