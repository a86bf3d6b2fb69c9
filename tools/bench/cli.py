"""The benchmark's command line: `python -m tools.bench.cli [options]` against the services
the environment names (`python -m tools.bench`, `make bench`, set those up first).

Exits 0 with the table on stdout, or 2 with one line on stderr."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Options that cannot make a benchmark: one line for the user, exit 2."""


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


DESCRIPTION = (
    "Benchmark the pipeline as deployed (gunicorn, relay, one process per consumer group, "
    "Celery) against the configured PostgreSQL, Redis and broker, driven over HTTP by a "
    "separate load generator: (a) intake with workers idle, (b) backlog drain per stage, "
    "(c) the full pipeline at saturation, (d) latency at a fixed rate with a per-hop "
    "breakdown, (e) raw confluent-kafka baselines, (f) latency at lower rates, (h) CPU per "
    "order per process at a steady rate, and the web tier against a bare authenticated "
    "view; or, with "
    "--tracing-cost, (g) alone: CPU per order with tracing off and on. Prints a "
    "table; --json and --plot write every figure and a chart. `make bench` sets up the "
    "services."
)


def parser_build() -> argparse.ArgumentParser:
    from tools.bench.runner import BenchOptions

    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=DESCRIPTION)
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
    add(
        "--tracing-cost",
        action="store_true",
        help="Run (g) alone instead of the other phases: CPU per order with tracing off and "
        "on (every span exported to a local OTLP receiver, sampler always_on), alternating, "
        "every process restarted for each round.",
    )
    add(
        "--tracing-rate",
        type=float,
        default=defaults.tracing_rate,
        help="(g) orders/s, open loop.",
    )
    add(
        "--tracing-seconds",
        type=float,
        default=defaults.tracing_seconds,
        help="(g) duration of each round.",
    )
    add(
        "--tracing-rounds",
        type=int,
        default=defaults.tracing_rounds,
        help="(g) pairs of rounds (off, then on).",
    )
    add(
        "--cost-rate",
        type=float,
        default=defaults.cost_rate,
        help="(h) orders/s, open loop, every consumer running: CPU per order per process.",
    )
    add("--cost-seconds", type=float, default=defaults.cost_seconds, help="(h) duration.")
    add(
        "--web-seconds",
        type=float,
        default=defaults.web_seconds,
        help="Web tier vs the bare authenticated view: seconds per target (wrk if installed).",
    )
    add(
        "--cost-only",
        action="store_true",
        help="Only the generator ceiling, the web comparison, (h) and (c): the quick loop "
        "for CPU per order.",
    )
    add("--json", dest="json_path", help="Write every figure as JSON to this path.")
    add("--plot", dest="plot_path", help="Write a PNG chart to this path (matplotlib).")

    return parser


def bench_run(options: dict[str, Any]) -> None:
    """Run the benchmark with parsed options; print the table, write --json and --plot."""
    from tools.bench import report
    from tools.bench.runner import Bench, BenchOptions

    fields = BenchOptions.__dataclass_fields__
    bench_options = BenchOptions(**{k: v for k, v in options.items() if k in fields})
    if min(bench_options.intake_seconds, bench_options.saturation_seconds) <= 0:
        raise UsageError("--intake-seconds and --saturation-seconds must be positive")
    if bench_options.rate <= 0 or bench_options.rate_seconds <= 0:
        raise UsageError("--rate and --rate-seconds must be positive")
    if bench_options.sweep_seconds <= 0:
        raise UsageError("--sweep-seconds must be positive")
    if min(bench_options.tracing_rate, bench_options.tracing_seconds) <= 0:
        raise UsageError("--tracing-rate and --tracing-seconds must be positive")
    if min(bench_options.cost_rate, bench_options.cost_seconds, bench_options.web_seconds) <= 0:
        raise UsageError("--cost-rate, --cost-seconds and --web-seconds must be positive")
    if bench_options.tracing_rounds < 1:
        raise UsageError("--tracing-rounds must be at least 1")
    if options["plot_path"]:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise UsageError("--plot needs matplotlib: pip install -e '.[bench]'") from exc
    results = Bench(options=bench_options, log=_stderr_line).run()
    print(report.table(results))
    if options["json_path"]:
        Path(options["json_path"]).write_text(json.dumps(results, indent=2, default=str))
        _stderr_line(f"figures: {options['json_path']}")
    if options["plot_path"]:
        report.plot(results, Path(options["plot_path"]))
        _stderr_line(f"chart: {options['plot_path']}")


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    import django

    django.setup()
    from tools.bench.runner import BenchError

    options = vars(parser_build().parse_args(argv))
    try:
        bench_run(options)
    except UsageError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
