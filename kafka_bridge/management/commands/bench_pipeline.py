from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kafka_bridge.bench import run_bench


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline against the configured broker, Redis and database: API "
        "intake, created→notified latency, relay drain, and the raw confluent-kafka client "
        "as a baseline measured in the same run. Starts its own relay and consumers in a "
        "fresh topic namespace and prints a table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=500, help="Orders to place.")
        parser.add_argument("--concurrency", type=int, default=8, help="Concurrent API clients.")
        parser.add_argument(
            "--baseline-messages", type=int, default=20_000, help="Raw client messages."
        )
        parser.add_argument(
            "--drain-events", type=int, default=5_000, help="Outbox backlog for the relay drain."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if min(options["orders"], options["concurrency"], options["drain_events"]) < 1:
            raise CommandError("--orders, --concurrency and --drain-events must be positive")
        result = run_bench(
            orders=options["orders"],
            concurrency=options["concurrency"],
            baseline_messages=max(options["baseline_messages"], 1),
            drain_events=options["drain_events"],
            log=self.stderr.write,
        )
        self.stdout.write(result.table())
