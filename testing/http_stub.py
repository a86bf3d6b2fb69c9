"""A real HTTP server for tests that stands in for a provider (an SMS gateway, a push
service): it listens on 127.0.0.1 on a thread of its own, records every request, and
answers each with the next status of its script, then with `default`."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpStub:
    def __init__(
        self, statuses: Iterable[int] = (), *, default: int = 200, body: bytes = b"{}"
    ) -> None:
        self.script: deque[int] = deque(statuses)
        self.default = default
        self.body = body
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as providers speak it

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = stub._record(
                    RecordedRequest(
                        method="POST",
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                answer = stub.body if 200 <= status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `requests`

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record(self, request: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(request)
            return self.script.popleft() if self.script else self.default

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def received(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> HttpStub:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
