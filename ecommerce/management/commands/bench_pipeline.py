import argparse
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ecommerce.bench import report
from ecommerce.bench.runner import Bench, BenchError, BenchOptions


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


class Command(BaseCommand):
    help = (
        "Benchmark the pipeline as deployed (gunicorn, relay, one process per consumer group, "
        "Celery) against the configured PostgreSQL, Redis and broker, driven over HTTP by a "
        "separate load generator: (a) intake with workers idle, (b) backlog drain per stage, "
        "(c) the full pipeline at saturation, (d) latency at a fixed rate with a per-hop "
        "breakdown, (e) raw confluent-kafka baselines, (f) latency at lower rates. Prints a "
        "table; --json and --plot write every figure and a chart. `make bench` sets up the "
        "services."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = BenchOptions()
        add = parser.add_argument
        add(
            "--intake-seconds",
            type=float,
            default=defaults.intake_seconds,
            help="(a) closed-loop load with workers idle; its orders are the backlog of (b).",
        )
        add(
            "--saturation-seconds",
            type=float,
            default=defaults.saturation_seconds,
            help="(c) closed-loop load with everything running.",
        )
        add("--rate", type=float, default=defaults.rate, help="(d) orders/s, open loop.")
        add("--rate-seconds", type=float, default=defaults.rate_seconds, help="(d) duration.")
        add(
            "--sweep-rates",
            type=_rates,
            default=defaults.sweep_rates,
            help="(f) open-loop rates in orders/s, comma-separated (default "
            f"{','.join(f'{r:g}' for r in defaults.sweep_rates)}); an empty string skips (f).",
        )
        add(
            "--sweep-seconds",
            type=float,
            default=defaults.sweep_seconds,
            help="(f) duration of each rate.",
        )
        add(
            "--connections",
            type=int,
            default=defaults.connections,
            help="Keep-alive HTTP connections of the load generator.",
        )
        add(
            "--customers",
            type=int,
            default=defaults.customers,
            help="Customers (API tokens) the orders rotate through.",
        )
        add("--skus", type=int, default=defaults.skus, help="Products the orders rotate through.")
        add(
            "--baseline-messages",
            type=int,
            default=defaults.baseline_messages,
            help="(e) messages in the raw produce loop.",
        )
        add(
            "--relay-events",
            type=int,
            default=defaults.relay_events,
            help="(b) relay backlog: (a)'s events, topped up with copies for an unread topic.",
        )
        add(
            "--latency-samples",
            type=int,
            default=defaults.latency_samples,
            help="(e) raw produce→consume round trips.",
        )
        add(
            "--generator-seconds",
            type=float,
            default=defaults.generator_seconds,
            help="Load generator ceiling against /healthz/.",
        )
        add(
            "--web-concurrency",
            type=int,
            default=None,
            help="gunicorn workers (default: WEB_CONCURRENCY, else gunicorn.conf.py's default).",
        )
        add(
            "--gateway-latency-ms",
            type=int,
            default=defaults.gateway_latency_ms,
            help="Fake payment gateway latency, passed to the workers as "
            "PAYMENTS_FAKE_LATENCY_MS (run once with 0 and once with 150).",
        )
        add(
            "--phase-timeout",
            type=float,
            default=defaults.phase_timeout,
            help="Longest wait for a drain; a phase that times out reports partial figures.",
        )
        add("--json", dest="json_path", help="Write every figure as JSON to this path.")
        add("--plot", dest="plot_path", help="Write a PNG chart to this path (matplotlib).")

    def handle(self, *args: Any, **options: Any) -> None:
        fields = BenchOptions.__dataclass_fields__
        bench_options = BenchOptions(**{k: v for k, v in options.items() if k in fields})
        if min(bench_options.intake_seconds, bench_options.saturation_seconds) <= 0:
            raise CommandError("--intake-seconds and --saturation-seconds must be positive")
        if bench_options.rate <= 0 or bench_options.rate_seconds <= 0:
            raise CommandError("--rate and --rate-seconds must be positive")
        if bench_options.sweep_seconds <= 0:
            raise CommandError("--sweep-seconds must be positive")
        if options["plot_path"]:
            try:
                import matplotlib  # noqa: F401
            except ImportError as exc:
                raise CommandError("--plot needs matplotlib: pip install -e '.[bench]'") from exc
        try:
            results = Bench(options=bench_options, log=self.stderr.write).run()
        except BenchError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.table(results))
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(results, indent=2, default=str))
            self.stderr.write(f"figures: {options['json_path']}")
        if options["plot_path"]:
            report.plot(results, Path(options["plot_path"]))
            self.stderr.write(f"chart: {options['plot_path']}")
