from typing import Any

from django.core.management.base import BaseCommand

from kafka_bridge.lifecycle import StopFlag
from kafka_bridge.relay import OutboxRelay


class Command(BaseCommand):
    help = (
        "Publish committed outbox events to Kafka until SIGTERM/SIGINT. Woken on commit "
        "through Redis, polls as a safety net; several relays may run at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        OutboxRelay().run(StopFlag().install())
