"""Draw one trace as a waterfall: one bar per span, labelled `service: span name`, coloured
by service, on a time axis in milliseconds from the trace's first span.

    python -m tools.trace_waterfall .run/traces/order-trace.json docs/img/order-trace.png

The input is a JSON list of spans as `testing.otlp` keeps them (tests/test_tracing.py leaves
one in .run/traces/). Without --trace-id the trace drawn is the one a web server span
started (else the one with the most spans). Spans are listed parent first, children by
start time, so the rows read as the work went.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

Span = dict[str, Any]


def trace_pick(spans: list[Span], trace_id: str | None = None) -> list[Span]:
    """The spans of one trace: `trace_id`'s, else the trace a SERVER span started, else
    the largest."""
    if trace_id is None:
        servers = sorted(
            (s for s in spans if s["kind"] == "SERVER" and not s["parent_span_id"]),
            key=lambda s: s["start_ns"],
        )
        if servers:
            trace_id = servers[0]["trace_id"]
        elif spans:
            trace_id = Counter(s["trace_id"] for s in spans).most_common(1)[0][0]
    return [s for s in spans if s["trace_id"] == trace_id]


def tree_order(spans: list[Span]) -> list[tuple[Span, int]]:
    """(span, depth) with each parent before its children, siblings by start time; spans
    whose parent is missing are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[Span]] = defaultdict(list)
    roots = []
    for span in spans:
        parent = span["parent_span_id"]
        if parent and parent in ids:
            children[parent].append(span)
        else:
            roots.append(span)
    ordered: list[tuple[Span, int]] = []
    stack = [(span, 0) for span in sorted(roots, key=lambda s: s["start_ns"], reverse=True)]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        below = sorted(children[span["span_id"]], key=lambda s: s["start_ns"], reverse=True)
        stack += [(child, depth + 1) for child in below]
    return ordered


def waterfall_draw(spans: list[Span], out: Path) -> Path:
    """Write the waterfall of `spans` (one trace) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = tree_order(spans)
    start = min(s["start_ns"] for s in spans)
    end = max(s["end_ns"] for s in spans)
    total_ms = (end - start) / 1e6
    services = list(dict.fromkeys(s["service"] for s, _ in rows))
    palette = plt.get_cmap("tab10").colors
    colour = {name: palette[i % len(palette)] for i, name in enumerate(services)}

    height = 1.6 + 0.34 * len(rows)
    fig, ax = plt.subplots(figsize=(14, height), dpi=110)
    # A bar never thinner than a few pixels: sub-millisecond spans still show.
    floor = total_ms / 400
    for index, (span, _) in enumerate(rows):
        left = (span["start_ns"] - start) / 1e6
        width = (span["end_ns"] - span["start_ns"]) / 1e6
        ax.barh(index, max(width, floor), left=left, height=0.62, color=colour[span["service"]])
        label = f"{width:.1f} ms" if width >= 0.1 else f"{width * 1000:.0f} µs"
        # the duration beside its bar, inside the axes on the right-hand side
        right = left + max(width, floor)
        if right > total_ms * 0.85:
            ax.text(left - total_ms * 0.005, index, label, va="center", ha="right", fontsize=8)
        else:
            ax.text(right + total_ms * 0.005, index, label, va="center", ha="left", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{span['service']}: {span['name']}" for span, _ in rows],
        fontsize=9,
        fontfamily="monospace",
    )
    ax.invert_yaxis()  # the first span at the top
    ax.set_xlim(0, total_ms * 1.02)
    ax.set_xlabel("time since the trace's first span (ms)")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(
        f"One order, one trace: {len(rows)} spans from {len(services)} services, "
        f"{total_ms:,.0f} ms (trace {spans[0]['trace_id'][:12]}…)",
        fontsize=11,
        loc="left",
    )
    # Below the axis, where no bar can be hidden by it.
    ax.legend(
        handles=[Patch(color=colour[name], label=name) for name in services],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.7 / height - 0.02),
        ncol=len(services),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.trace_waterfall",
        description="Draw one trace of a spans JSON file (testing.otlp's form) as a waterfall PNG.",
    )
    parser.add_argument("spans", type=Path, help="JSON list of spans")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--trace-id", help="the trace to draw (default: the web request's)")
    args = parser.parse_args(argv)
    spans = trace_pick(json.loads(args.spans.read_text()), args.trace_id)
    if not spans:
        print("no such trace in the file", file=sys.stderr)
        return 1
    waterfall_draw(spans, args.out)
    print(f"{len(spans)} spans: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
