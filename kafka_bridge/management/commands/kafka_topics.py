from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kafka_bridge.client import admin_client, common_config, pipeline_topics, topics_ensure
from kafka_bridge.lag import END_OFFSETS_APPROXIMATE_NOTE


class Command(BaseCommand):
    help = (
        "Create the pipeline's topics (and their .dlq topics) with KAFKA_DEFAULT_PARTITIONS "
        "partitions if missing, then list them with partition counts and end offsets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--list-only", action="store_true", help="Do not create anything, only list."
        )
        parser.add_argument("--timeout", type=float, default=15.0, help="Seconds to wait.")

    def handle(self, *args: Any, list_only: bool, timeout: float, **options: Any) -> None:
        names = pipeline_topics()
        try:
            if not list_only:
                for name in topics_ensure(names, timeout=timeout):
                    self.stdout.write(f"created {name}")
            metadata = admin_client().list_topics(timeout=timeout)
        except KafkaException as exc:
            raise CommandError(f"Kafka is not reachable: {exc}") from None
        probe = Consumer({**common_config(), "group.id": "kafka-topics-probe"})
        try:
            self.stdout.write(f"{'topic':<40} {'partitions':>10} {'end offsets (sum)':>18}")
            for name in names:
                topic = metadata.topics.get(name)
                if topic is None:
                    self.stdout.write(f"{name:<40} {'missing':>10}")
                    continue
                end = 0
                for partition in topic.partitions:
                    _low, high = probe.get_watermark_offsets(
                        TopicPartition(name, partition), timeout=timeout
                    )
                    end += high
                self.stdout.write(f"{name:<40} {len(topic.partitions):>10} {end:>18}")
        finally:
            probe.close()
        if settings.KAFKA["END_OFFSETS_APPROXIMATE"]:
            self.stdout.write(END_OFFSETS_APPROXIMATE_NOTE)
