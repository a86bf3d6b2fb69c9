"""gunicorn's own answers (before any application code runs) are JSON in the API's error
format, over real HTTP against gunicorn with gunicorn.conf.py (common/http_worker.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from testing.polling import wait_until
from tools.localservices import free_port
from tools.supervisor import REPO_ROOT


@pytest.fixture(scope="module")
def gunicorn_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
    }
    argv = [sys.executable, "-m", "gunicorn", "--config", str(REPO_ROOT / "gunicorn.conf.py")]
    web = subprocess.Popen(
        [*argv, "ecommerce.wsgi:application"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _accepts(port) or web.poll() is not None, timeout=60)
        assert web.poll() is None, "gunicorn exited"
        yield port
    finally:
        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=30) == 0


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def _error_detail(headers: dict[str, str], body: bytes) -> str:
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    document = json.loads(body)
    assert set(document) == {"detail"}
    return document["detail"]


def test_a_request_line_over_the_limit_is_414_in_the_error_format(gunicorn_port: int):
    # When a report is asked for with a customer id far longer than a request line may be
    long_id = "1" * 5000
    request = f"GET /api/reports/customers/?customer_id={long_id} HTTP/1.1\r\nHost: x\r\n\r\n"

    status, headers, body = _exchange(gunicorn_port, request.encode())

    # Then gunicorn refuses it as 414, in JSON, and closes the connection
    assert status == 414
    assert _error_detail(headers, body).startswith("URI Too Long: ")
    assert headers["connection"] == "close"


def test_a_malformed_request_line_is_400_in_the_error_format(gunicorn_port: int):
    status, headers, body = _exchange(gunicorn_port, b"NOT A REQUEST\r\n\r\n")

    assert status == 400
    assert _error_detail(headers, body).startswith("Bad Request: ")


def test_too_many_headers_are_431_in_the_error_format(gunicorn_port: int):
    many = "".join(f"X-Header-{i}: {i}\r\n" for i in range(150))
    request = f"GET /api/products/ HTTP/1.1\r\nHost: x\r\n{many}\r\n"

    status, headers, body = _exchange(gunicorn_port, request.encode())

    assert status == 431
    assert _error_detail(headers, body).startswith("Request Header Fields Too Large: ")


def test_requests_gunicorn_parses_still_reach_the_application(gunicorn_port: int):
    # An ordinary API request without credentials: the application's own 401, in JSON
    request = b"GET /api/products/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

    status, headers, body = _exchange(gunicorn_port, request)

    assert status == 401
    assert _error_detail(headers, body)


def test_a_host_django_does_not_allow_is_400_in_the_error_format(gunicorn_port: int):
    # Django's refusal, before any view runs, under /api/
    request = b"GET /api/products/ HTTP/1.1\r\nHost: elsewhere.invalid\r\nConnection: close\r\n\r\n"

    status, headers, body = _exchange(gunicorn_port, request)

    assert status == 400
    assert _error_detail(headers, body) == "Bad Request"
