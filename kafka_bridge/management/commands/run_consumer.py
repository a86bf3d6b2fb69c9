from typing import Any

from confluent_kafka import KafkaException
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.tracing import tracing_configure, tracing_shutdown
from kafka_bridge.consumer import ConsumerRunner
from kafka_bridge.consumer.transactional import (
    TransactionalConsumerRunner,
    TransactionalProducerFailed,
)
from kafka_bridge.lifecycle import StopFlag, started_objects_freeze
from kafka_bridge.metrics import metrics_serve
from kafka_bridge.registry import CONSUMERS, consumer_spec_get


class Command(BaseCommand):
    help = (
        "Run one registered Kafka consumer until SIGTERM/SIGINT. Start several processes of "
        "the same name to share its partitions. Consumers: " + ", ".join(sorted(CONSUMERS))
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Consumer name from kafka_bridge.registry.CONSUMERS.")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        try:
            spec = consumer_spec_get(name)
        except KeyError as exc:
            raise CommandError(exc.args[0]) from None
        # Before the runner exists: it asks once whether to trace.
        tracing_configure(f"consumer-{name}")
        runner_class = TransactionalConsumerRunner if spec.is_transactional else ConsumerRunner
        try:
            runner = runner_class(spec=spec, stop=StopFlag().install())
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        except KafkaException as exc:  # a transactional producer could not initialise
            raise CommandError(f"consumer {name} cannot start: {exc}") from None
        try:
            metrics_serve()
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on METRICS_PORT: {exc}") from None
        started_objects_freeze()
        try:
            runner.run()
        except TransactionalProducerFailed as exc:
            raise CommandError(str(exc)) from None
        finally:
            tracing_shutdown()  # export the spans still buffered
