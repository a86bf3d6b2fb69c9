from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from kafka_bridge.dead_letters import (
    DeadLetterNotReplayable,
    dead_letter_discard,
    dead_letter_list,
    dead_letter_replay,
)


class Command(BaseCommand):
    help = (
        "Replay stored dead letters through the outbox (same event id, so consumers that "
        "already processed an event skip it), or discard them. Filters combine; without "
        "--yes it only lists what it would do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--topic", help="Original topic (its logical name, without the namespace)."
        )
        parser.add_argument("--error", help="Part of the error class, e.g. GatewayUnavailable.")
        parser.add_argument("--event-type", help="Exact event type (<topic>.<event>).")
        parser.add_argument("--since", help="Failed at or after this ISO time.")
        parser.add_argument("--discard", action="store_true", help="Discard instead of replay.")
        parser.add_argument("--yes", action="store_true", help="Do it (default: dry run).")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            since = parse_datetime(options["since"])
            if since is None:
                raise CommandError(f"--since is not an ISO date-time: {options['since']!r}")
        dead_letters = list(
            dead_letter_list(
                original_topic=options["topic"],
                error_class=options["error"],
                event_type=options["event_type"],
                since=since,
            )
        )
        verb = "discard" if options["discard"] else "replay"
        if not options["yes"]:
            for dl in dead_letters:
                self.stdout.write(
                    f"#{dl.id} {dl.failed_at:%Y-%m-%d %H:%M:%S} {dl.original_topic} "
                    f"{dl.event_type or '-'} {dl.error_class}"
                )
            self.stdout.write(f"would {verb} {len(dead_letters)} dead letter(s); add --yes")
            return
        outcome: Counter[str] = Counter()
        for dead_letter in tqdm(dead_letters, desc=verb, unit="message"):
            if options["discard"]:
                dead_letter_discard(dead_letter_id=dead_letter.id, actor="replay_dead_letters")
                outcome["discarded"] += 1
                continue
            try:
                dead_letter_replay(dead_letter_id=dead_letter.id, actor="replay_dead_letters")
                outcome["replayed"] += 1
            except DeadLetterNotReplayable as exc:
                outcome["not replayable"] += 1
                self.stderr.write(f"#{dead_letter.id}: {exc}")
        self.stdout.write(f"{'outcome':<16} {'count':>6}")
        for name, count in sorted(outcome.items()):
            self.stdout.write(f"{name:<16} {count:>6}")
