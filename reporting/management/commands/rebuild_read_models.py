from typing import Any

from confluent_kafka import KafkaException
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from reporting.rebuild import RebuildFailed, RebuildRefused, read_models_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild the read models (sales per product per day, customer summaries) from the "
        "events alone: replay the order topic from the earliest offset under a fresh consumer "
        "group into a new generation of the tables, then swap it in. The live read_models "
        "consumer keeps running; it pauses only during the swap. Shows a progress bar."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Start even if another rebuild is recorded as running (its process is gone).",
        )

    def handle(self, *args: Any, force: bool, **options: Any) -> None:
        bar = tqdm(
            desc="replaying", unit="message", file=self.stderr._out
        )  # the stream itself: OutputWrapper ends each write with a newline

        def progress(done: int, total: int) -> None:
            bar.total = max(total, done)
            bar.n = done
            bar.refresh()

        try:
            rebuild = read_models_rebuild(force=force, progress=progress)
        except (RebuildRefused, RebuildFailed) as exc:
            raise CommandError(str(exc)) from None
        except KafkaException as exc:
            raise CommandError(f"Kafka is not reachable: {exc}") from None
        except KeyboardInterrupt:
            raise CommandError("interrupted: the new generation was deleted") from None
        finally:
            bar.close()
        self.stdout.write(
            f"generation {rebuild.generation} is live: {rebuild.messages_read} messages read, "
            f"{rebuild.events_applied} events applied ({rebuild.detail})"
        )
