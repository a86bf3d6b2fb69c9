from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from orders.models import Order
from orders.selectors import order_history_disagreements


class Command(BaseCommand):
    help = (
        "Rebuild each order's status from its events (orders.created, then one orders.<status> "
        "per move, as recorded in the outbox and its archive) and report every order whose "
        "stored status disagrees, or whose events break the status machine. Exits 1 if any."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = Order.objects.count()
        found = 0
        # The stream itself: OutputWrapper would end each of the bar's updates with a newline.
        with tqdm(total=total, desc="checking", unit="order", file=self.stderr._out) as bar:
            for disagreement in order_history_disagreements(progress=bar.update):
                found += 1
                bar.write(str(disagreement), file=self.stdout._out)
        if found:
            raise CommandError(f"{found} of {total} orders disagree with their events")
        self.stdout.write(f"all {total} orders agree with their events")
