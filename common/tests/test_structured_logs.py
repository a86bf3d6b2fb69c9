"""Structured logs: JSON lines with the ids of the request, batch, event or task in hand,
and one correlation id from the HTTP request to the e-mail (docs/operations.md)."""

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from common.structured_logs import formatter, log_context
from notifications.models import Notification
from testing.factories import customer_create, order_place_via_api, product_with_stock
from testing.polling import wait_until


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the root logger writes, rendered as in production (LOG_FORMAT=json)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _parsed(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_json_line_carries_its_context_its_extras_and_its_exception(json_lines):
    log = logging.getLogger("kafka_bridge.example")
    with log_context(order_id="o-1", event_id=None):
        log.warning("stock low for %s", "MUG", extra={"sku": "MUG"})
    try:
        raise ValueError("broken")
    except ValueError:
        log.exception("failed")

    warning, error = _parsed(json_lines.getvalue())
    assert warning["message"] == "stock low for MUG"
    assert warning["level"] == "warning" and warning["logger"] == "kafka_bridge.example"
    assert warning["order_id"] == "o-1" and warning["sku"] == "MUG"
    assert "event_id" not in warning  # None is left out
    assert str(warning["timestamp"]).endswith("Z")
    assert "order_id" not in error  # the context ended with its block
    assert "ValueError: broken" in str(error["exception"])


def test_console_lines_are_readable_text_with_the_ids():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("console"))
    log = logging.getLogger("ecommerce.console_example")
    log.addHandler(handler)
    try:
        with log_context(correlation_id="c-1"):
            log.warning("hello")
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert not line.startswith("{")
    assert "hello" in line and "correlation_id=c-1" in line and "[warning" in line


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT must be one of console, json"):
        formatter("xml")


@pytest.mark.django_db
def test_each_request_is_one_line_with_its_correlation_user_and_order_ids(json_lines):
    customer, product = customer_create(), product_with_stock()
    order_id = order_place_via_api(customer, product.sku, correlation_id="req-42")

    (line,) = [r for r in _parsed(json_lines.getvalue()) if r["logger"] == "ecommerce.requests"]
    assert line["correlation_id"] == "req-42"
    assert line["order_id"] == order_id
    assert line["user_id"] == customer.pk
    assert line["status"] == 201 and line["route"] == "api/orders/"
    assert line["http_method"] == "POST" and line["http_path"] == "/api/orders/"
    assert float(line["duration_ms"]) > 0


@pytest.mark.integration
def test_one_correlation_id_leads_from_the_request_to_the_e_mail(pipeline):
    # Given workers that log JSON, with every applied event at DEBUG
    json_debug = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    pipeline.relay(**json_debug)
    for name in ("inventory", "orders", "notifications"):
        pipeline.consumer(name, **json_debug)
    pipeline.celery_worker(LOG_FORMAT="json")

    # When an order comes in with a correlation id
    correlation_id = f"trace-{uuid.uuid4()}"
    customer, product = customer_create(), product_with_stock()
    order_id = order_place_via_api(customer, product.sku, correlation_id=correlation_id)
    wait_until(
        lambda: Notification.objects.filter(
            order_id=order_id, status=Notification.Status.SENT
        ).exists(),
        timeout=60,
        message="the order's e-mail sent",
    )

    # Then each worker's lines are JSON, and that id is on the consumers' and the e-mail's
    logs = {child.name: _parsed(child.log()) for child in pipeline.children}
    applied = [
        line
        for name, lines in logs.items()
        if name.startswith("consumer-inventory")
        for line in lines
        if line.get("message") == "event applied"
    ]
    assert applied, logs.keys()
    reserved = next(line for line in applied if line["correlation_id"] == correlation_id)
    assert reserved["order_id"] == order_id
    assert reserved["event_type"] == "orders.created"
    assert reserved["consumer_group"].endswith("inventory")
    assert {"topic", "partition", "offset", "event_id"} <= reserved.keys()
    sent = [
        line
        for name, lines in logs.items()
        if name.startswith("celery-worker")
        for line in lines
        if str(line.get("message", "")).startswith("e-mail sent")
    ]
    mine = [line for line in sent if line.get("correlation_id") == correlation_id]
    assert mine, sent
    assert all(line["order_id"] == order_id for line in mine)
    assert all({"notification_id", "event_id"} <= line.keys() for line in mine)
    relay = next(lines for name, lines in logs.items() if name.startswith("relay"))
    assert any(line.get("message") == "outbox batches recorded" for line in relay)
