from typing import Any

from django.core.management.base import BaseCommand, CommandError
from prometheus_client.registry import REGISTRY

from kafka_bridge.lifecycle import StopFlag, started_objects_freeze
from kafka_bridge.metrics import metrics_serve
from webhooks.dispatcher import WebhookDispatcher
from webhooks.metrics import PendingDeliveriesCollector, metrics_start_at_zero


class Command(BaseCommand):
    help = (
        "Send pending webhook deliveries to their endpoints until SIGTERM/SIGINT: signed "
        "(Standard Webhooks), retried on a schedule, on a thread pool (WEBHOOKS_* settings). "
        "Several dispatchers may run at once; they share the work. Liveness: "
        "`worker_alive webhook-dispatcher`."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = StopFlag().install()
        metrics_start_at_zero()
        try:
            if metrics_serve() is not None:
                REGISTRY.register(PendingDeliveriesCollector())
        except OSError as exc:
            raise CommandError(f"cannot serve metrics on METRICS_PORT: {exc}") from None
        dispatcher = WebhookDispatcher()
        if dispatcher.max_concurrency < 1:
            raise CommandError("WEBHOOKS_MAX_CONCURRENCY must be at least 1")
        started_objects_freeze()
        dispatcher.run(stop)
