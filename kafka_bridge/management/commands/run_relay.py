from typing import Any

from django.core.management.base import BaseCommand, CommandError

from common.tracing import tracing_configure, tracing_shutdown
from kafka_bridge.lifecycle import StopFlag, started_objects_freeze
from kafka_bridge.metrics import metrics_serve
from kafka_bridge.relay import OutboxRelay


class Command(BaseCommand):
    help = (
        "Publish committed outbox events to Kafka until SIGTERM/SIGINT. Woken on commit "
        "through Redis, polls as a safety net; several relays may run at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = StopFlag().install()
        tracing_configure("relay")  # before the relay exists: it asks once whether to trace
        try:
            metrics_serve(outbox=True)
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on METRICS_PORT: {exc}") from None
        relay = OutboxRelay()
        started_objects_freeze()
        try:
            relay.run(stop)
        finally:
            tracing_shutdown()  # export the spans still buffered
