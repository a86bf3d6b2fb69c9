import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from kafka_bridge.client import common_config


class Command(BaseCommand):
    help = (
        "Print the librdkafka connection settings (bootstrap servers, security protocol, SASL, "
        "TLS files) that every producer, consumer and admin client gets from the KAFKA_* "
        "environment, secrets masked. The system checks validate them first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object.")

    def handle(self, *args: Any, as_json: bool, **options: Any) -> None:
        config = common_config().masked()
        if as_json:
            self.stdout.write(json.dumps(config, sort_keys=True))
            return
        for key, value in sorted(config.items()):
            self.stdout.write(f"{key} = {value}")
