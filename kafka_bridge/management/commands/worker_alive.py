from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kafka_bridge.heartbeat import heartbeat_age, heartbeat_path


class Command(BaseCommand):
    help = (
        "Liveness check for an orchestrator: exit 0 if the worker's loop beat within "
        "--max-age seconds, else exit 1 with one line saying why. Workers: relay, "
        "consumer-<name>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("worker", help="relay or consumer-<name>")
        parser.add_argument("--max-age", type=float, default=60.0, help="Seconds (default 60).")

    def handle(self, *args: Any, worker: str, max_age: float, **options: Any) -> None:
        age = heartbeat_age(worker)
        if age is None:
            raise CommandError(f"{worker}: no heartbeat yet ({heartbeat_path(worker)})")
        if age > max_age:
            raise CommandError(f"{worker}: last heartbeat {age:.0f}s ago (max {max_age:.0f}s)")
        self.stdout.write(f"{worker}: alive, last heartbeat {age:.1f}s ago")
