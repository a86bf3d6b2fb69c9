from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from orders.breaker import payment_breaker
from orders.selectors import payment_circuit


class Command(BaseCommand):
    help = (
        "Show the payment circuit breaker as every process sees it (its state in Redis: "
        "closed, half-open or open, failures in a row, when it opened and last changed) and "
        "how many reserved orders wait for a charge. --reset closes it and forgets its "
        "failures (the next charges go through at once, without waiting for a probe)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset", action="store_true", help="Close the breaker now.")

    def handle(self, *args: Any, reset: bool, **options: Any) -> None:
        if reset:
            payment_breaker().reset()
            self.stdout.write("payment circuit breaker reset: closed, no failures")
        circuit = payment_circuit(now=timezone.now())
        breaker = circuit.breaker
        state = breaker.state.value if breaker.state else "unknown (Redis unreachable)"
        self.stdout.write(
            f"state: {state}; failures in a row: {breaker.failures} of {circuit.fail_max}; "
            f"opened at: {breaker.opened_at or '-'}; last change: {breaker.changed_at or '-'}; "
            f"reset timeout: {circuit.reset_timeout_seconds:g}s; "
            f"orders waiting for a charge: {circuit.orders_waiting}"
        )
