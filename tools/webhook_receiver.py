"""A local webhook receiver that verifies every delivery's signature with the
`standardwebhooks` library: for trying webhooks by hand (docs/webhooks.md), and used by the
tests and the benchmark.

    python -m tools.webhook_receiver --secret whsec_... [--port 9000] [--fail-first N]

Prints one line per delivery (its type, order, `webhook-id` and whether the signature
verified) and answers 204, or 401 for a bad signature (and 500 to the first N requests with
--fail-first, to watch retries). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    # A listen backlog of 5 (socketserver's default) drops connections under a burst,
    # and the sender's SYN is retried a second later.
    request_queue_size = 128


@dataclass(frozen=True)
class Received:
    message_id: str
    body: bytes
    verified: bool
    status: int  # what the receiver answered
    at: float  # time.monotonic() when the request arrived
    error: str = ""

    @property
    def accepted(self) -> bool:
        return self.verified and 200 <= self.status < 300

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_type(self) -> str:
        return self.document["type"]

    @property
    def order_id(self) -> str:
        return self.document["data"]["order_id"]


@dataclass
class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 that verifies and records each POST.

    `fail_first`: answer 500 to that many requests first. `delay`: seconds to wait before
    answering each request (a slow endpoint). `secret` may be set after start (an endpoint
    is registered with the receiver's URL, and the secret comes back)."""

    secret: str = ""
    fail_first: int = 0
    delay: float = 0.0
    port: int = 0
    on_receive: Any = None  # called with each Received (the command line prints them)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per delivery comes from on_receive instead

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in request.headers.items()}
        verified, error = True, ""
        try:
            Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError) as exc:
            verified, error = False, f"{type(exc).__name__}: {exc}"
        with self._lock:
            failing = self.fail_first > 0
            if failing:
                self.fail_first -= 1
        if self.delay:
            time.sleep(self.delay)
        status = 401 if not verified else 500 if failing else 204
        record = Received(
            message_id=headers.get("webhook-id", ""),
            body=body,
            verified=verified,
            status=status,
            at=arrived,
            error=error,
        )
        with self._lock:
            self.received.append(record)
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the sender gave up waiting (its timeout): nothing to answer
        if self.on_receive is not None:
            self.on_receive(record)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [record for record in self.received if record.accepted]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def _print(record: Received) -> None:
    try:
        what = f"{record.event_type} order {record.order_id[:8]}"
    except (ValueError, KeyError, TypeError):
        what = f"{len(record.body)} bytes, not an order event"
    verdict = "signature ok" if record.verified else f"BAD SIGNATURE ({record.error})"
    print(f"{record.status} {what} {record.message_id}: {verdict}", flush=True)
    if record.verified:
        print("    " + record.body.decode(errors="replace"), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", required=True, help="The endpoint's secret (whsec_...).")
    parser.add_argument("--port", type=int, default=9000, help="Port on 127.0.0.1 (9000).")
    parser.add_argument(
        "--fail-first", type=int, default=0, help="Answer 500 to the first N requests."
    )
    args = parser.parse_args(argv)
    try:
        Webhook(args.secret)
    except Exception as exc:
        parser.error(f"not a webhook secret: {exc}")
    receiver = WebhookReceiver(
        secret=args.secret, fail_first=args.fail_first, port=args.port, on_receive=_print
    ).start()
    print(f"listening on {receiver.url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
