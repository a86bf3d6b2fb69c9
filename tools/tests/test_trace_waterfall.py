"""The waterfall tool: the trace a web request started, parents before children, a PNG."""

import json

from tools.trace_waterfall import main, trace_pick, tree_order


def _span(name: str, span_id: str, parent: str = "", *, start: int, trace: str = "t1") -> dict:
    return {
        "service": name.split(":")[0],
        "name": name.split(":")[1],
        "kind": "SERVER" if not parent else "INTERNAL",
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "start_ns": start * 1_000_000,
        "end_ns": (start + 5) * 1_000_000,
        "links": [],
    }


SPANS = [
    _span("relay:outbox publish", "b1", start=1, trace="t2"),
    _span("consumer-x:process b", "c2", "p1", start=30),
    _span("web:POST api/orders/", "w1", start=0),
    _span("relay:send a", "p1", "w1", start=10),
    _span("consumer-y:process a", "c1", "p1", start=20),
]


def test_the_request_trace_is_drawn_parent_first_children_by_start_time(tmp_path):
    picked = trace_pick(SPANS)
    assert {s["trace_id"] for s in picked} == {"t1"}
    assert [(s["span_id"], depth) for s, depth in tree_order(picked)] == [
        ("w1", 0),
        ("p1", 1),
        ("c1", 2),
        ("c2", 2),
    ]

    source, out = tmp_path / "spans.json", tmp_path / "trace.png"
    source.write_text(json.dumps(SPANS))
    assert main([str(source), str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
    assert main([str(source), str(tmp_path / "none.png"), "--trace-id", "nope"]) == 1
