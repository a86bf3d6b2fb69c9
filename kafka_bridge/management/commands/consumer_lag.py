from typing import Any

from confluent_kafka import KafkaException
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from kafka_bridge.lag import END_OFFSETS_APPROXIMATE_NOTE, consumer_lag_list
from kafka_bridge.registry import CONSUMERS, consumer_spec_get

COLUMNS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")


class Command(BaseCommand):
    help = (
        "Print each consumer group's committed offset, end offset and lag per partition, "
        "like kafka-consumer-groups --describe. CURRENT-OFFSET '-' means nothing committed "
        "yet: the lag then counts from the start of the partition. Consumers: "
        + ", ".join(sorted(CONSUMERS))
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", help="Registered consumer names (default: every one)."
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait.")

    def handle(self, *args: Any, names: list[str], timeout: float, **options: Any) -> None:
        try:
            specs = [consumer_spec_get(name) for name in names or sorted(CONSUMERS)]
        except KeyError as exc:
            raise CommandError(exc.args[0]) from None
        try:
            rows, missing = consumer_lag_list(specs, timeout=timeout)
        except KafkaException as exc:
            raise CommandError(f"Kafka is not reachable: {exc}") from None
        table = [COLUMNS] + [
            (
                row.group,
                row.topic,
                str(row.partition),
                "-" if row.committed is None else str(row.committed),
                str(row.end),
                str(row.lag),
            )
            for row in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        for line in table:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )
        for topic in missing:
            self.stdout.write(f"topic {topic} does not exist (run manage.py kafka_topics)")
        if settings.KAFKA["END_OFFSETS_APPROXIMATE"]:
            self.stdout.write(END_OFFSETS_APPROXIMATE_NOTE)
