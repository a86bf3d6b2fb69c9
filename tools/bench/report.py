"""The benchmark's output: a table for the terminal, the JSON as is, a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The throughput issue's targets, shown next to the figures (defaults: one process per
# consumer group). Not asserted anywhere.
LATENCY_TARGET_MS = 250  # created → last notice, p99
TARGETS = {
    "intake": "≥ 500",
    "group": "≥ 1,000",
    "ratio": "≥ 0.90",
    "p99": f"≤ {LATENCY_TARGET_MS}",
    "relay": "≥ 50% of raw produce",
    "paid": "≥ 200 with a 150 ms gateway",
}


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def ms3(values: dict[str, Any] | None) -> str:
    values = values or {}
    return " / ".join(fmt(values.get(k), 1) for k in ("p50", "p95", "p99"))


def markdown(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    out = [line.format(*header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line.format(*row) for row in rows]
    return out


def table(results: dict[str, Any]) -> str:
    if "tracing_cost" in results:  # --tracing-cost: (g) alone
        return "\n".join([*_header(results), "", *tracing_cost_table(results)])
    meta = results["meta"]
    gen = results.get("generator", {})
    a = results.get("intake_idle", {})
    b = results.get("backlog", {})
    c = results.get("saturation", {})
    d = results.get("fixed_rate", {})
    e = results.get("raw", {})
    raw_produce = e.get("produce_per_s")
    rows: list[tuple[str, str, str]] = []

    def add(metric: str, value: str, note: str = "") -> None:
        rows.append((metric, value, note))

    def partial(section: dict[str, Any]) -> str:
        return "" if section.get("complete", True) else " (timed out: partial)"

    web_cpu = a.get("cpu", {}).get("web")
    ceiling = gen.get("requests_per_s")
    intake = a.get("orders_per_s")
    add(
        "load generator ceiling, GET /healthz/ (req/s)",
        fmt(ceiling),
        f"generator CPU {fmt((gen.get('generator_cpu_share') or 0) * 100)}% of a core",
    )
    add(
        "(a) intake, workers idle (orders/s)",
        fmt(intake),
        f"target {TARGETS['intake']}; {fmt(intake / ceiling * 100 if intake and ceiling else None)}"
        f"% of the ceiling; generator CPU {fmt((a.get('generator_cpu_share') or 0) * 100)}%, "
        f"web {fmt(web_cpu, 2)} cores",
    )
    add("(a) API latency p50 / p95 / p99 (ms)", ms3(a.get("api_latency_ms")))
    relay = b.get("relay", {})
    relay_rate = relay.get("events_per_s")
    add(
        "(b) relay drain (events/s)",
        fmt(relay_rate),
        f"{fmt(relay_rate / raw_produce * 100 if relay_rate and raw_produce else None, 1)}% "
        f"of raw produce; target {TARGETS['relay']}{partial(relay)}"
        + ("" if relay.get("rate_from") == "published_at" else " (wall clock, incl. start-up)"),
    )
    for name, group in b.get("groups", {}).items():
        add(
            f"(b) backlog drain, group {name} (events/s)",
            fmt(group.get("events_per_s")),
            f"{group.get('events')} events; target {TARGETS['group']}{partial(group)}",
        )
        if "orders_paid_per_s" in group:
            add(
                "(b) orders paid/s on a backlog",
                fmt(group.get("orders_paid_per_s")),
                f"gateway {meta['gateway_latency_ms']} ms; target {TARGETS['paid']}",
            )
    settle = b.get("settle", {})
    add("(b) Celery e-mails sent/s on a backlog", fmt(settle.get("emails_per_s")), partial(settle))
    add(
        "(c) intake at saturation (orders/s)",
        fmt(c.get("orders_per_s")),
        f"{c.get('orders')} orders in {fmt(c.get('seconds'), 1)} s",
    )
    add(
        "(c) end-to-end at saturation (orders/s)",
        fmt(c.get("end_to_end_per_s")),
        "orders with their last notice within the same window",
    )
    add("(c) end-to-end / intake", fmt(c.get("ratio"), 2), f"target {TARGETS['ratio']}")
    add(
        "(c) whole cohort, drain included (orders/s)",
        fmt(c.get("cohort_end_to_end_per_s")),
        "first created → last notice of all (c) orders",
    )
    add(
        "(d) fixed rate achieved (orders/s)",
        fmt(d.get("orders_per_s"), 1),
        f"target rate {fmt(d.get('target_per_s'))}/s; {d.get('completed')} completed, "
        f"{d.get('incomplete')} without a last notice",
    )
    latency = d.get("created_to_last_notice_ms", {})
    raw_p50 = (e.get("produce_to_consume_ms") or {}).get("p50")
    add(
        "(d) created → last notice p50 / p95 / p99 (ms)",
        ms3(latency),
        f"target p99 {TARGETS['p99']}; p50 = "
        f"{fmt(latency.get('p50') / raw_p50 if latency.get('p50') and raw_p50 else None, 1)}x "
        "raw produce→consume p50",
    )
    totals = (d.get("breakdown") or {}).get("total", {})
    for name, label in (
        ("outbox_wait_ms", "outbox wait"),
        ("relay_to_consumer_ms", "relay → consumer"),
        ("handler_ms", "handler"),
    ):
        add(f"(d)   of which {label}, all hops, p50 / p95 / p99", ms3(totals.get(name)))
    add("(d) API latency from due time p50 / p95 / p99 (ms)", ms3(d.get("api_latency_ms")))
    add(
        "(e) raw produce, relay's messages (msgs/s)",
        fmt(raw_produce),
        f"baseline: tight loop, {fmt(e.get('value_bytes_mean'))} B values, "
        f"{e.get('headers_per_message')} headers, producer_config",
    )
    add(
        "(e) raw produce, no headers (msgs/s)",
        fmt(e.get("produce_without_headers_per_s")),
        "baseline",
    )
    add(
        "(e) producer start-up (ms)",
        fmt(e.get("producer_startup_ms")),
        "connect + metadata + producer id; not in the rate",
    )
    add("(e) raw consume (msgs/s)", fmt(e.get("consume_per_s")), "baseline")
    add(
        "(e) raw produce→consume p50 / p95 / p99 (ms)",
        ms3(e.get("produce_to_consume_ms")),
        "baseline",
    )
    add("API errors", str(results.get("api_errors", "n/a")), "all phases")

    lines = [*_header(results), "", *markdown(rows, ("metric", "value", "compared with"))]
    hops = (d.get("breakdown") or {}).get("hops", [])
    if hops:

        def p50_p99(values: dict[str, Any]) -> str:
            return f"{fmt(values['p50'], 1)} / {fmt(values['p99'], 1)}"

        lines += [
            "",
            "(d) per hop of the critical path, p50 / p99 (ms):",
            *markdown(
                [
                    (
                        hop["hop"],
                        p50_p99(hop["outbox_wait_ms"]),
                        p50_p99(hop["relay_to_consumer_ms"]),
                        p50_p99(hop["handler_ms"]),
                    )
                    for hop in hops
                ],
                ("hop (event → consumer group)", "outbox wait", "relay → consumer", "handler"),
            ),
        ]
    lines += latency_by_rate_table(results)
    lines += cost_table(results)
    lines += web_compare_table(results)
    lines += ["", *cpu_table(results)]
    return "\n".join(lines)


COST_TOTALS = ("ours", "ours + PostgreSQL + Redis", "all")


def cost_table(results: dict[str, Any]) -> list[str]:
    """(h) and (c): CPU ms per order of each process and service, and the totals."""
    phases = {
        f"(h) {fmt(results[key].get('target_per_s'))}/s"
        if key == "cost"
        else "(c) saturation": results[key].get("cpu_ms_per_order") or {}
        for key in ("cost", "saturation")
        if key in results
    }
    phases = {label: figures for label, figures in phases.items() if figures}
    if not phases:
        return []
    roles: list[str] = []
    for figures in phases.values():
        roles += [r for r in figures if r not in roles and r not in COST_TOTALS]
    order = [r for r in ("web", "relay") if r in roles]
    order += sorted(r for r in roles if r.startswith("consumer-"))
    order += [r for r in roles if r not in order]
    rows = [(role, *(fmt(f.get(role), 1) for f in phases.values())) for role in order]
    rows += [(f"**{t}**", *(fmt(f.get(t), 1) for f in phases.values())) for t in COST_TOTALS]
    cost = results.get("cost", {})
    latency = cost.get("created_to_last_notice_ms") or {}
    lines = [
        "",
        "(h) CPU per order (ms), by process: a steady rate with every consumer running "
        "(metered until the last notice), and (c) at saturation (per order taken in):",
        *markdown(rows, ("process", *phases)),
    ]
    if cost:
        lines.append(
            f"(h) {fmt(cost.get('orders_per_s'), 1)} orders/s achieved, "
            f"{cost.get('completed')} completed, {cost.get('incomplete')} without a last notice; "
            f"created → last notice p50 {fmt(latency.get('p50'), 0)} ms, "
            f"p99 {fmt(latency.get('p99'), 0)} ms"
        )
    return lines


def web_compare_table(results: dict[str, Any]) -> list[str]:
    """The web tier against the bare authenticated view, same gunicorn, workers idle."""
    w = results.get("web_compare")
    if not w:
        return []
    rows = [
        (
            label,
            fmt(row["requests_per_s"]),
            fmt(row["web_cpu_ms_per_request"], 2),
            str(row["errors"]),
        )
        for label, row in w["targets"].items()
    ]
    rows += [
        ("POST orders / GET products", fmt(w["post_vs_products"], 2), "", ""),
        ("GET products / bare view", fmt(w["products_vs_bare"], 2), "", ""),
        ("POST orders / bare view", fmt(w["post_vs_bare"], 2), "", ""),
    ]
    return [
        "",
        f"web tier vs a bare authenticated DRF view ({w['tool']}, {w['connections']} "
        f"connections, {fmt(w['seconds'])} s each, workers idle):",
        *markdown(rows, ("target", "req/s (or ratio)", "web CPU per request (ms)", "errors")),
    ]


def _header(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    load = meta.get("load_average_at_start") or [0, 0, 0]
    return [
        f"bench {meta['namespace']} broker={meta['broker']} db={meta['database']} "
        f"cores={meta['cores']} web={meta['web_concurrency']}x{meta['web_threads']} threads "
        f"gateway={meta['gateway_latency_ms']}ms load-avg-at-start={load[0]:.2f} "
        f"metrics={'on' if meta.get('metrics_enabled', True) else 'off (METRICS_ENABLED=false)'}",
        "API rate limits: "
        + ("on in these settings, " if meta.get("api_throttling_configured") else "off, ")
        + "off for this run (API_THROTTLING=false: the load generator is not throttled)",
    ]


TRACING_GROUPS = ("web", "relay", "consumers", "Celery")


def tracing_cost_table(results: dict[str, Any]) -> list[str]:
    """(g): CPU per order with tracing off and on, round by round, and the difference."""
    g = results["tracing_cost"]
    rounds = g["rounds"]
    if not rounds:
        return ["(g) no round completed"]
    services = sorted({name for r in rounds for name in r["services_ms_per_order"]})

    def row(label: str, value: Any, digits: int = 1) -> tuple[str, ...]:
        return (label, *(fmt(value(r), digits) for r in rounds))

    rows = [
        row("orders (achieved orders/s)", lambda r: r["orders"], 0),
        row("CPU per order, our processes (ms)", lambda r: r["cpu_ms_per_order"]["ours"]),
        *(
            row(f"  {group}", lambda r, group=group: r["cpu_ms_per_order"][group])
            for group in TRACING_GROUPS
        ),
        *(
            row(f"{name} (ms per order)", lambda r, name=name: r["services_ms_per_order"].get(name))
            for name in services
        ),
        row("spans exported per order", lambda r: r["spans_per_order"]),
        row(
            "created → last notice p50 (ms)",
            lambda r: (r["created_to_last_notice_ms"] or {}).get("p50"),
            0,
        ),
        row(
            "created → last notice p99 (ms)",
            lambda r: (r["created_to_last_notice_ms"] or {}).get("p99"),
            0,
        ),
        row("machine busy (cores)", lambda r: r["cpu"].get("machine busy"), 2),
    ]
    summary = g.get("summary", {})
    lines = [
        f"(g) what tracing costs: {g['rate']:g} orders/s for {g['seconds']:g} s per round, "
        "every process restarted per round; on = every span exported to a local OTLP "
        "receiver, sampler always_on",
        *markdown(rows, ("figure", *(f"tracing {r['label']}" for r in rounds))),
    ]
    if summary.get("delta_ms") is not None:
        lines += [
            "",
            f"(g) CPU per order of our processes: off {fmt(summary['off_ms'], 1)} ms, "
            f"on {fmt(summary['on_ms'], 1)} ms (mean of each): "
            f"{summary['delta_ms']:+.1f} ms ({summary['delta_pct']:+.1f}%)",
        ]
    return lines


def latency_by_rate_table(results: dict[str, Any]) -> list[str]:
    """(f), and (d) after it: latency and CPU against the offered rate."""
    steps = [("(f)", step) for step in results.get("latency_by_rate", [])]
    if not steps:
        return []
    if results.get("fixed_rate"):
        steps.append(("(d)", results["fixed_rate"]))
    rows = []
    for phase, step in steps:
        latency = step.get("created_to_last_notice_ms") or {}
        p99 = latency.get("p99")
        rows.append(
            (
                phase,
                f"{step['target_per_s']:g}",
                fmt(step.get("orders_per_s"), 1),
                ms3(latency),
                fmt((step.get("api_latency_ms") or {}).get("p99"), 1),
                fmt(step.get("cpu", {}).get("machine busy"), 2),
                "n/a" if p99 is None else ("yes" if p99 <= LATENCY_TARGET_MS else "no"),
            )
        )
    return [
        "",
        "(f) latency by offered rate (open loop), and (d):",
        *markdown(
            rows,
            (
                "phase",
                "offered (orders/s)",
                "achieved",
                "created → last notice p50 / p95 / p99 (ms)",
                "API p99 (ms)",
                "machine busy (cores)",
                f"p99 ≤ {LATENCY_TARGET_MS} ms",
            ),
        ),
    ]


def cpu_table(results: dict[str, Any]) -> list[str]:
    """Cores used per process during each load phase (1.00 = one core busy)."""
    phases = {
        "ceiling": results.get("generator", {}).get("cpu"),
        "(a)": results.get("intake_idle", {}).get("cpu"),
        "(b) relay": results.get("backlog", {}).get("relay", {}).get("cpu"),
        **{
            f"(b) {name}": group.get("cpu")
            for name, group in results.get("backlog", {}).get("groups", {}).items()
        },
        "(c)": results.get("saturation", {}).get("cpu"),
        "(d)": results.get("fixed_rate", {}).get("cpu"),
        **{
            f"(f) {step['target_per_s']:g}/s": step.get("cpu")
            for step in results.get("latency_by_rate", [])
        },
    }
    phases = {k: v for k, v in phases.items() if v}
    if not phases:
        return []
    roles: list[str] = []
    for shares in phases.values():
        roles += [r for r in shares if r not in roles]
    width = max(len(r) for r in roles)
    header = f"| {'cores used by':<{width}} | " + " | ".join(f"{p:>13}" for p in phases) + " |"
    out = [header, "|" + "-" * (len(header) - 2) + "|"]
    for role in roles:
        cells = " | ".join(
            f"{fmt(shares[role], 2) if role in shares else '-':>13}" for shares in phases.values()
        )
        out.append(f"| {role:<{width}} | {cells} |")
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    """Four panels: throughputs against their targets, the saturation timeline, the
    latency distribution per offered rate, and the per-hop breakdown."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    meta = results["meta"]
    if "tracing_cost" in results:
        _plot_tracing_cost(results, path)
        return
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    fig.suptitle(
        f"bench {meta['namespace']}: {meta['cores']} cores, web "
        f"{meta['web_concurrency']}x{meta['web_threads']}, "
        f"gateway {meta['gateway_latency_ms']} ms, "
        f"load average at start {meta['load_average_at_start'][0]:.2f}"
    )

    # 1. Throughputs (log scale: they span three orders of magnitude).
    ax = axes[0][0]
    b = results.get("backlog", {})
    raw_produce = results.get("raw", {}).get("produce_per_s")
    bars = [
        ("(a) intake idle", results.get("intake_idle", {}).get("orders_per_s"), 500),
        ("(c) intake sat.", results.get("saturation", {}).get("orders_per_s"), None),
        ("(c) end-to-end", results.get("saturation", {}).get("end_to_end_per_s"), None),
        *(
            (f"(b) {name}", group.get("events_per_s"), 1000)
            for name, group in b.get("groups", {}).items()
        ),
        ("(b) paid/s", b.get("groups", {}).get("orders", {}).get("orders_paid_per_s"), 200),
        ("(b) relay", b.get("relay", {}).get("events_per_s"), (raw_produce or 0) / 2),
        ("(e) raw produce", raw_produce, None),
    ]
    labels = [name for name, _, _ in bars]
    values = [value or 0 for _, value, _ in bars]
    ax.barh(labels, values, color="tab:blue")
    for index, (_, value, target) in enumerate(bars):
        ax.text(value or 0, index, f" {fmt(value)}", va="center", fontsize=8)
        if target:
            ax.plot([target, target], [index - 0.4, index + 0.4], color="tab:red")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("orders/s or events/s (red: target)")
    ax.set_title("throughput")

    # 2. Saturation timeline: created vs completed per second.
    ax = axes[0][1]
    series = results.get("series", {}).get("saturation")
    if series and series["created_s"]:
        end = max(series["created_s"] + series["completed_s"]) + 1
        bins = [i * 0.5 for i in range(int(end / 0.5) + 2)]
        ax.hist(
            series["created_s"],
            bins=bins,
            histtype="step",
            label="created",
            weights=[2] * len(series["created_s"]),
        )
        ax.hist(
            series["completed_s"],
            bins=bins,
            histtype="step",
            label="last notice",
            weights=[2] * len(series["completed_s"]),
        )
        ax.axvline(series["window_s"], color="grey", linestyle="--", label="load stops")
        ax.legend()
    ax.set_xlabel("seconds since (c) started")
    ax.set_ylabel("orders/s")
    ax.set_title("(c) saturation: intake vs completion")

    # 3. Latency distributions: (d), and (f)'s lower rates.
    ax = axes[1][0]
    series = results.get("series", {})
    curves = {
        **{
            f"{rate}/s (f)": values for rate, values in series.get("latency_by_rate_ms", {}).items()
        },
        f"{results.get('fixed_rate', {}).get('target_per_s', 0):g}/s (d)": series.get(
            "fixed_rate_latencies_ms"
        ),
    }
    for label, latencies in curves.items():
        if latencies:
            ax.plot(latencies, [i / len(latencies) for i in range(len(latencies))], label=label)
    if any(curves.values()):
        ax.axvline(LATENCY_TARGET_MS, color="black", linestyle="--", label="target p99")
        ax.axhline(0.99, color="grey", linestyle=":")
        ax.legend()
    ax.set_xscale("log")
    # Plain milliseconds on the log axis at 1, 2.5 and 5 per decade; the default minor
    # ticks' labels would overlap.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.5, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("created → last notice (ms)")
    ax.set_ylabel("fraction of orders")
    ax.set_title("(d) and (f): latency CDF per offered rate")

    # 4. Per-hop breakdown (p50, stacked).
    ax = axes[1][1]
    hops = (results.get("fixed_rate", {}).get("breakdown") or {}).get("hops", [])
    if hops:
        names = [hop["hop"] for hop in hops]
        left = [0.0] * len(hops)
        for key, label in (
            ("outbox_wait_ms", "outbox wait"),
            ("relay_to_consumer_ms", "relay → consumer"),
            ("handler_ms", "handler"),
        ):
            widths = [max(0.0, hop[key]["p50"] or 0.0) for hop in hops]
            ax.barh(names, widths, left=left, label=label)
            left = [a + w for a, w in zip(left, widths, strict=True)]
        ax.invert_yaxis()
        ax.legend()
    ax.set_xlabel("ms (p50 per component)")
    ax.set_title("(d) where the time goes, hop by hop")

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_tracing_cost(results: dict[str, Any], path: Path) -> None:
    """(g): CPU per order per round, stacked by process group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["tracing_cost"]["rounds"]
    fig, ax = plt.subplots(figsize=(9, 5))
    labels = [f"tracing {r['label']}" for r in rounds]
    bottom = [0.0] * len(rounds)
    for group in TRACING_GROUPS:
        values = [r["cpu_ms_per_order"][group] for r in rounds]
        ax.bar(labels, values, bottom=bottom, label=group)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    for index, total in enumerate(bottom):
        ax.text(index, total, f"{total:.1f}", ha="center", va="bottom")
    ax.set_ylabel("CPU per order, our processes (ms)")
    ax.set_title("(g) what tracing costs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
