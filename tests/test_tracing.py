"""One trace per order across real processes (docs/tracing.md): gunicorn, the relay, the
saga's consumers and a Celery worker export their spans over OTLP/HTTP to a receiver in
this process, and one order placed over HTTP is one trace from the request to its e-mails.
"""

import json
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from api_tokens.services import api_token_issue
from testing.factories import customer_create, product_with_stock
from testing.otlp import OtlpReceiver, Spans, spans_write
from testing.polling import wait_until
from testing.saga import wait_for_status
from tools.localservices import free_port
from tools.supervisor import REPO_ROOT, SAGA_CONSUMERS

pytestmark = pytest.mark.integration

# Where the test leaves the trace it collected: `python -m tools.trace_waterfall` draws it.
SPANS_JSON = REPO_ROOT / ".run" / "traces" / "order-trace.json"

DELIVER = "notifications.tasks.notifications_deliver"
# A paid order's trace, span by span: (service, span name) → how many.
EXPECTED = Counter(
    {
        ("web", "POST api/orders/"): 1,
        ("relay", "send orders.created"): 1,
        ("consumer-inventory", "process orders.created"): 1,
        ("relay", "send inventory.reserved"): 1,
        ("consumer-orders", "process inventory.reserved"): 1,
        ("relay", "send orders.reserved"): 1,
        ("relay", "send payments.processed"): 1,
        ("consumer-notifications", "process orders.reserved"): 1,
        ("relay", "send orders.paid"): 1,
        ("consumer-notifications", "process orders.paid"): 1,
        # one e-mail task per notification: order confirmed, payment received
        ("consumer-notifications", f"apply_async/{DELIVER}"): 2,
        ("celery-worker", f"run/{DELIVER}"): 2,
    }
)


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _post_order(base: str, token: str, sku: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/orders/",
        data=json.dumps({"items": [{"sku": sku, "quantity": 1}]}).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        return str(json.loads(response.read())["id"])


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz/", timeout=2) as response:
            return response.status == 200
    except OSError:  # refused, reset or timed out while it starts
        return False


def _order_trace(spans: Spans) -> Spans:
    """The spans of the trace the order request started (none before it arrived)."""
    roots = [s for s in spans if s["service"] == "web" and s["kind"] == "SERVER"]
    if not roots:
        return []
    return [s for s in spans if s["trace_id"] == roots[0]["trace_id"]]


def test_one_order_is_one_trace_from_the_request_to_its_e_mails(pipeline, otlp_receiver, tmp_path):
    # Given gunicorn, the relay, the saga's consumers and a Celery worker, each exporting
    # its spans to the receiver (batched every 200 ms, so the test need not wait 5 s)
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", str(REPO_ROOT / "gunicorn.conf.py")]
    web = pipeline.spawn(
        [*gunicorn, "ecommerce.wsgi:application"],
        label="web",
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        **traced,
    )
    pipeline.relay(**traced)
    for name in SAGA_CONSUMERS:
        pipeline.consumer(name, **traced)
    pipeline.celery_worker(**traced)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(base) or not web.running, timeout=90, message="gunicorn up")
    customer, product = customer_create(), product_with_stock(on_hand=5)
    token = api_token_issue(user=customer)

    # When one order is placed over HTTP
    order_id = _post_order(base, token, product.sku)

    # Then, once it is paid and both e-mails went out, its trace holds every step
    wait_for_status(order_id, "paid", timeout=90)

    def complete() -> Spans:
        trace = _order_trace(otlp_receiver.spans())
        found = Counter((s["service"], s["name"]) for s in trace)
        return trace if found >= EXPECTED else []

    trace = wait_until(complete, timeout=90, message="every span of the order's trace")
    spans = otlp_receiver.spans()
    spans_write(spans, SPANS_JSON)
    assert Counter((s["service"], s["name"]) for s in trace) == EXPECTED

    # one trace: every span but the relay's batch spans (a trace of their own) is in it
    batches = [s for s in spans if s["name"] == "outbox publish"]
    assert {s["trace_id"] for s in spans if s not in batches} == {trace[0]["trace_id"]}
    # one root, the web server span; every other span's parent is a span of the trace
    ids = {s["span_id"] for s in trace}
    (root,) = [s for s in trace if not s["parent_span_id"]]
    assert (root["service"], root["kind"]) == ("web", "SERVER")
    assert all(s["parent_span_id"] in ids for s in trace if s is not root)
    # each hop is parented as the context travelled
    by_id = {s["span_id"]: s for s in trace}

    def parent(span: dict) -> dict:
        return by_id[span["parent_span_id"]]

    for span in trace:
        if span["name"].startswith("send "):  # stored with the outbox row
            assert span["kind"] == "PRODUCER"
            assert parent(span)["kind"] in ("SERVER", "CONSUMER")
            assert parent(span)["service"] in ("web", "consumer-inventory", "consumer-orders")
        elif span["name"].startswith("process "):  # from the Kafka headers
            assert span["kind"] == "CONSUMER"
            assert parent(span)["service"] == "relay"
            assert parent(span)["name"] == span["name"].replace("process", "send", 1)
        elif span["name"].startswith("apply_async/"):  # queued for the event in hand
            assert parent(span)["name"] in ("process orders.reserved", "process orders.paid")
        elif span["name"].startswith("run/"):
            assert parent(span)["name"].startswith("apply_async/")
    assert parent(next(s for s in trace if s["name"] == "send orders.created")) is root
    # the relay's batch spans link to the events they carried
    sends = {s["span_id"] for s in trace if s["service"] == "relay"}
    linked = {link["span_id"] for s in batches for link in s["links"]}
    assert batches and all(s["service"] == "relay" and s["links"] for s in batches)
    assert sends <= linked
