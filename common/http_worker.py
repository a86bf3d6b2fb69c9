"""gunicorn's threaded worker, answering its own errors in the API's error format.

gunicorn answers a request it cannot parse (a request line over `limit_request_line`, a
malformed request line, header or chunk, headers over their limits) before any application
code runs, with an HTML page. `JsonErrorThreadWorker` keeps gunicorn's decision (status,
reason, log line, access log) and writes the answer as `{"detail": "..."}`
(common.api_errors' `Error`), which the OpenAPI schema declares (common.api_schema). The
request's path is unknown at that point (the request line is what failed), so every such
answer is JSON. `gunicorn.conf.py` sets `worker_class` to it.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

# The longest `detail`: a malformed request line is quoted in gunicorn's message.
DETAIL_MAX = 300


class _Captured:
    """The client's socket, except that what gunicorn writes is kept instead of sent."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.written = b""

    def send(self, data: bytes) -> int:
        self.written += bytes(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.written += bytes(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def error_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail[:DETAIL_MAX]}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrorThreadWorker(ThreadWorker):
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _Captured(client)
        super().handle_error(req, captured, addr, exc)
        status_line = captured.written.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            _, code, reason = status_line.split(" ", 2)
            status = int(code)
        except ValueError:  # nothing written (gunicorn gave up): nothing to answer
            return
        detail = reason if status >= 500 else f"{reason}: {exc}"
        try:
            util.write_nonblock(client, error_response(status, reason, detail))
        except Exception:
            self.log.debug("Failed to send error message.")
