from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kafka_bridge.contract_schemas import contracts_check, contracts_write


class Command(BaseCommand):
    help = (
        "Compare every event type and version the apps declare (<app>/events.py) with its "
        "released JSON Schema in <app>/schemas/ and fail (exit 1), naming event, version and "
        "field, on a change that breaks readers of events already published: a field removed "
        "or retyped, a new required field, any other edit of a released version. With "
        "--write, record new versions and compatible additions (never a breaking change)."
    )
    # Reads code and files only: no database, broker or system checks needed.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--write",
            action="store_true",
            help="Write the documents of new versions and of compatible additions.",
        )
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="One folder holding every released document (default: each app's schemas/).",
        )

    def handle(self, *args: Any, write: bool, dir: Path | None, **options: Any) -> None:
        if write:
            for path in contracts_write(dir):
                self.stdout.write(f"wrote {path.name}")
        problems = contracts_check(dir)
        for problem in problems:
            hint = " (run check_event_contracts --write)" if problem.writable else ""
            self.stderr.write(f"{problem.line}{hint}")
        if problems:
            breaking = sum(not problem.writable for problem in problems)
            raise CommandError(
                f"{len(problems)} event contract problem(s), {breaking} backward-incompatible"
            )
        self.stdout.write("event contracts match their released schemas")
