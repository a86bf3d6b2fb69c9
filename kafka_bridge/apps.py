import os

from django.apps import AppConfig
from django.core import checks


class KafkaBridgeConfig(AppConfig):
    name = "kafka_bridge"
    verbose_name = "Kafka bridge"

    def ready(self) -> None:
        from common.health import readiness_check_register
        from kafka_bridge.consumers import DEAD_LETTERS_CONSUMER
        from kafka_bridge.health import kafka_readiness_check
        from kafka_bridge.registry import consumers_register

        readiness_check_register("kafka", kafka_readiness_check)
        consumers_register(DEAD_LETTERS_CONSUMER)
        checks.register(kafka_security_check)


def kafka_security_check(**kwargs: object) -> list[checks.CheckMessage]:
    """KAFKA_* security settings that do not fit together, or that name a file this process
    cannot read, stop `migrate` (compose's first step), `check` and the worker commands with
    one line each, before librdkafka fails later with a less readable message (or not at
    all: credentials beside a PLAINTEXT protocol would just go unused)."""
    from django.conf import settings

    from kafka_bridge.client import KafkaSecurityError, security_config, security_files

    try:
        security_config(settings.KAFKA)
    except KafkaSecurityError as exc:
        return [checks.Error(str(exc), id="kafka_bridge.E001")]
    return [
        checks.Error(f"{variable}={path}: no such readable file", id="kafka_bridge.E002")
        for variable, path in security_files(settings.KAFKA).items()
        if not _readable(path, directory_allowed=variable == "KAFKA_SSL_CA_LOCATION")
    ]


def _readable(path: str, *, directory_allowed: bool) -> bool:
    # librdkafka also takes a directory of CA certificates, never of keys. An empty one is
    # what Docker leaves where a bind-mounted file was missing on the host.
    if directory_allowed and os.path.isdir(path):
        return os.access(path, os.R_OK) and any(os.scandir(path))
    return os.path.isfile(path) and os.access(path, os.R_OK)
