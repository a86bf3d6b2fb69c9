"""The live order status (GET /api/orders/{id}/events/) end to end: real HTTP to a real uvicorn
process (ecommerce.asgi), the saga's real workers, broker, Redis and PostgreSQL.

Every wait has a deadline: a read timeout on the stream's socket, `wait_until` elsewhere."""

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from api_tokens.services import api_token_issue
from orders.models import Order
from orders.services import OrderItemInput, order_cancel, order_create
from testing.factories import customer_create, product_with_stock, staff_create
from testing.polling import wait_until
from testing.saga import wait_for_status
from testing.sse import SseComment, SseEvent, sse_items, sse_items_async
from tools.localservices import free_port, port_open
from tools.supervisor import Child, Supervisor

pytestmark = pytest.mark.integration

EVENT_STREAM = {"Accept": "text/event-stream"}
# No stream waits this long for its next line: a keep-alive comes every second (below).
READ_TIMEOUT = httpx.Timeout(10.0, read=20.0)


@dataclass
class StreamServer:
    url: str
    child: Child

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.child.pid)


def _start_stream_server(
    pipeline: Supervisor, log_dir: Path, **env: str
) -> tuple[Supervisor, StreamServer]:
    # A supervisor of its own: uvicorn exits with SIGTERM's code after a graceful stop,
    # where the pipeline's workers must exit 0.
    servers = Supervisor(env=pipeline.env, log_dir=log_dir)
    port = free_port()
    child = servers.asgi_server(
        port=port,
        ORDERS_LIVE_KEEPALIVE_SECONDS="1",
        ORDERS_LIVE_POLL_SECONDS="0.5",
        **env,
    )
    wait_until(
        lambda: port_open("127.0.0.1", port) or not child.running,
        timeout=30,
        message="uvicorn listening",
    )
    assert child.running, child.log()
    return servers, StreamServer(f"http://127.0.0.1:{port}", child)


def _stop(servers: Supervisor) -> None:
    codes = servers.stop()
    bad = {name: code for name, code in codes.items() if code not in (0, -signal.SIGTERM)}
    assert not bad, f"stream server did not stop cleanly: {bad}\n{servers.logs()[-4000:]}"
    assert "Traceback" not in servers.logs(), servers.logs()[-4000:]


@pytest.fixture
def stream_server(pipeline: Supervisor, tmp_path: Path) -> Iterator[StreamServer]:
    servers, server = _start_stream_server(pipeline, tmp_path / "stream")
    try:
        yield server
    finally:
        _stop(servers)


def _auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}", **headers}


def _events_until_closed(response: httpx.Response) -> list[SseEvent]:
    return [item for item in sse_items(response.iter_lines()) if isinstance(item, SseEvent)]


def _next_event(items: Iterator[SseEvent | SseComment]) -> SseEvent:
    return next(item for item in items if isinstance(item, SseEvent))


def _statuses(events: list[SseEvent]) -> list[tuple[int | None, str]]:
    return [(event.id, event.data["status"]) for event in events]


def test_a_watched_order_streams_every_status_and_the_stream_ends_when_delivered(
    pipeline, stream_server
):
    # Given a customer's order, placed over HTTP while the saga's workers are not yet running
    customer, staff = customer_create(), staff_create()
    token, staff_token = api_token_issue(user=customer), api_token_issue(user=staff)
    product = product_with_stock(on_hand=5)
    http = httpx.Client(base_url=stream_server.url, timeout=READ_TIMEOUT)
    placed = http.post(
        "/api/orders/",
        json={"items": [{"sku": product.sku, "quantity": 1}]},
        headers=_auth(token),
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    url = f"/api/orders/{order_id}/events/"

    # When the customer watches it
    with http.stream("GET", url, headers=_auth(token, **EVENT_STREAM)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        items = sse_items(response.iter_lines())

        # Then the status now comes at once
        first = _next_event(items)
        assert (first.id, first.event, first.data["status"]) == (1, "status", "pending")
        assert first.data["order_id"] == order_id
        assert set(first.data) == {"order_id", "status", "reason", "at"}

        # And while nothing happens, keep-alive comments
        assert isinstance(next(items), SseComment)

        # And each move of the saga as it happens: reserved, paid
        pipeline.start_saga()
        assert _statuses([_next_event(items), _next_event(items)]) == [
            (2, "reserved"),
            (3, "paid"),
        ]

        # And staff's shipping and delivery, after which the stream ends
        for action, body in (("ship", {"carrier": "DHL"}), ("deliver", None)):
            moved = http.post(
                f"/api/orders/{order_id}/{action}/", json=body, headers=_auth(staff_token)
            )
            assert moved.status_code == 200, moved.text
        rest = [item for item in items if isinstance(item, SseEvent)]
        assert _statuses(rest) == [(4, "shipped"), (5, "delivered")]
    assert Order.objects.get(id=order_id).status_seq == 5


def test_a_reconnect_with_last_event_id_gets_the_missed_moves_once(pipeline, stream_server):
    # Given a watched order whose first event the client saw before its connection dropped
    customer = customer_create()
    token = api_token_issue(user=customer)
    product = product_with_stock(on_hand=5)
    http = httpx.Client(base_url=stream_server.url, timeout=READ_TIMEOUT)
    placed = http.post(
        "/api/orders/", json={"items": [{"sku": product.sku, "quantity": 1}]}, headers=_auth(token)
    )
    order_id = placed.json()["id"]
    url = f"/api/orders/{order_id}/events/"
    with http.stream("GET", url, headers=_auth(token, **EVENT_STREAM)) as response:
        seen = _next_event(sse_items(response.iter_lines()))
    assert (seen.id, seen.data["status"]) == (1, "pending")

    # And the saga moved on meanwhile
    pipeline.start_saga()
    wait_for_status(order_id, "paid")

    # When the client reconnects with the id of the last event it has
    resumed = {**_auth(token, **EVENT_STREAM), "Last-Event-ID": str(seen.id)}
    with http.stream("GET", url, headers=resumed) as response:
        items = sse_items(response.iter_lines())

        # Then it gets what it missed, from the database, and nothing twice
        assert _statuses([_next_event(items), _next_event(items)]) == [
            (2, "reserved"),
            (3, "paid"),
        ]

        # And, live again, the customer's cancellation, after which the stream ends
        cancelled = http.post(f"/api/orders/{order_id}/cancel/", headers=_auth(token))
        assert cancelled.status_code == 200, cancelled.text
        rest = [item for item in items if isinstance(item, SseEvent)]
        assert _statuses(rest) == [(4, "cancelled")]
        assert rest[0].data["reason"] == "cancelled by customer"

    # And a reconnect after the final status is told there is nothing more (204)
    final = {**_auth(token, **EVENT_STREAM), "Last-Event-ID": "4"}
    assert http.get(url, headers=final).status_code == 204


def test_refusals_over_http(pipeline, stream_server):
    owner, intruder = customer_create(), customer_create()
    order, _ = order_create(customer=owner, items=[OrderItemInput(product_with_stock().sku, 1)])
    url = f"{stream_server.url}/api/orders/{order.id}/events/"
    owner_token = api_token_issue(user=owner)

    # another customer's order: 404, as the detail view answers
    response = httpx.get(url, headers=_auth(api_token_issue(user=intruder), **EVENT_STREAM))
    assert (response.status_code, response.json()) == (404, {"detail": "No such order."})

    # anonymous: 401 in JSON, with the Token challenge
    response = httpx.get(url, headers=EVENT_STREAM)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Token"

    # JSON, or anything that does not name text/event-stream: 406 in JSON
    for accept in ("application/json", "*/*", "text/*"):
        response = httpx.get(url, headers=_auth(owner_token, Accept=accept))
        assert response.status_code == 406, accept
        assert response.json()["detail"].endswith("Accept: text/event-stream.")

    # a Last-Event-ID that is no id of ours: 400
    response = httpx.get(url, headers=_auth(owner_token, **EVENT_STREAM, **{"Last-Event-ID": "x"}))
    assert response.status_code == 400
    assert list(response.json()) == ["Last-Event-ID"]


def test_without_redis_the_stream_polls_the_database(pipeline, tmp_path):
    # Given a stream process whose Redis is unreachable (a port nobody listens on)
    servers, server = _start_stream_server(
        pipeline, tmp_path / "stream", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        customer = customer_create()
        token = api_token_issue(user=customer)
        order, _ = order_create(
            customer=customer, items=[OrderItemInput(product_with_stock().sku, 1)]
        )
        url = f"{server.url}/api/orders/{order.id}/events/"
        with httpx.stream(
            "GET", url, headers=_auth(token, **EVENT_STREAM), timeout=READ_TIMEOUT
        ) as response:
            assert response.status_code == 200
            items = sse_items(response.iter_lines())
            assert _next_event(items).data["status"] == "pending"

            # When the order is cancelled
            order_cancel(order_id=order.id, actor="customer")

            # Then the stream still hears of it, from the database, and ends
            rest = [item for item in items if isinstance(item, SseEvent)]
            assert _statuses(rest) == [(2, "cancelled")]
        assert "watchers poll" in server.child.log()
    finally:
        _stop(servers)


STREAMS = 200


def test_one_uvicorn_process_carries_200_streams(pipeline, stream_server):
    # Given 200 orders, each watched by its own stream on one uvicorn process
    customer = customer_create()
    token = api_token_issue(user=customer)
    sku = product_with_stock(on_hand=STREAMS + 1).sku
    order_ids = [
        order_create(customer=customer, items=[OrderItemInput(sku, 1)])[0].id
        for _ in range(STREAMS)
    ]
    # (one stream first, so that what the first one costs, once, is not counted per stream)
    warm_up = order_create(customer=customer, items=[OrderItemInput(sku, 1)])[0]
    with httpx.stream(
        "GET",
        f"{stream_server.url}/api/orders/{warm_up.id}/events/",
        headers=_auth(token, **EVENT_STREAM),
        timeout=READ_TIMEOUT,
    ) as response:
        assert _next_event(sse_items(response.iter_lines())).data["status"] == "pending"
    process = stream_server.process
    rss_idle = process.memory_info().rss
    cpu_idle = process.cpu_times()
    all_open = threading.Event()
    heard: dict[uuid.UUID, list[str]] = {}

    async def watch(client: httpx.AsyncClient, order_id: uuid.UUID, opened: list) -> None:
        url = f"/api/orders/{order_id}/events/"
        async with client.stream("GET", url, headers=_auth(token, **EVENT_STREAM)) as response:
            assert response.status_code == 200
            statuses = heard.setdefault(order_id, [])
            async for item in sse_items_async(response.aiter_lines()):
                if isinstance(item, SseEvent):
                    statuses.append(item.data["status"])
                    if len(statuses) == 1:
                        opened.append(order_id)
                        if len(opened) == STREAMS:
                            all_open.set()

    async def watch_all() -> None:
        limits = httpx.Limits(max_connections=STREAMS + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=stream_server.url, timeout=httpx.Timeout(60.0, read=30.0), limits=limits
        ) as client:
            opened: list[uuid.UUID] = []
            await asyncio.gather(*(watch(client, order_id, opened) for order_id in order_ids))

    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(watch_all())
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
            all_open.set()

    clients = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    clients.start()
    assert all_open.wait(120), "the 200 streams did not all open"
    assert not failures, failures
    opened_in = time.monotonic() - started
    rss_open = process.memory_info().rss
    cpu_open = process.cpu_times()

    # When every order is cancelled
    changed = time.monotonic()
    for order_id in order_ids:
        order_cancel(order_id=order_id, actor="customer")

    # Then every stream hears of it, and ends
    clients.join(120)
    assert not clients.is_alive(), "some streams did not end"
    assert not failures, failures
    delivered_in = time.monotonic() - changed
    assert heard == {order_id: ["pending", "cancelled"] for order_id in order_ids}
    cpu_done = process.cpu_times()

    def cpu(a: Any, b: Any) -> float:
        return (b.user + b.system) - (a.user + a.system)

    mib = 1024 * 1024
    print(
        f"\n{STREAMS} streams on one uvicorn process (pid {process.pid}, {os.cpu_count()} CPUs):"
        f"\n  RSS idle {rss_idle / mib:.1f} MiB, with {STREAMS} streams open "
        f"{rss_open / mib:.1f} MiB (+{(rss_open - rss_idle) / 1024 / STREAMS:.1f} KiB a stream)"
        f"\n  CPU opening them {cpu(cpu_idle, cpu_open):.2f} s in {opened_in:.1f} s; "
        f"a status change to each, to the end of every stream "
        f"{cpu(cpu_open, cpu_done):.2f} s in {delivered_in:.1f} s"
    )
