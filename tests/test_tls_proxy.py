"""HTTPS as compose serves it: deploy/caddy/Caddyfile, unchanged, run by Debian's caddy
(`make caddy`) in front of a real gunicorn (gunicorn.conf.py) with production settings
(DJANGO_SECURE=true, TRUSTED_PROXY_COUNT=1), on free ports of the loopback. Only the
environment differs from compose: the site address carries its port, and Caddy's data
(its local CA) goes to a temporary directory, whose root certificate the client trusts.

The client connects from 127.0.0.2 and Caddy reaches gunicorn from 127.0.0.1, so the address
Django records shows whether the forwarded one (X-Forwarded-For) arrived."""

import http.client
import os
import re
import secrets
import shutil
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from axes.models import AccessAttempt

from testing.polling import wait_until
from tools.localservices import free_port
from tools.supervisor import REPO_ROOT, Supervisor, current_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CADDYFILE = REPO_ROOT / "deploy" / "caddy" / "Caddyfile"
CLIENT_ADDRESS = "127.0.0.2"  # the browser; Caddy connects to gunicorn from 127.0.0.1
SPOOFED_ADDRESS = "203.0.113.9"  # what a client claims in its own X-Forwarded-For
HSTS = "max-age=31536000; includeSubDomains; preload"
STYLESHEET = "body { margin: 0 }\n"


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Stack:
    http_port: int
    https_port: int
    web_port: int
    ca_file: Path
    processes: Supervisor

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.https_port}"

    def https(self, method: str, path: str, *, body: str | None = None, **headers: str) -> Response:
        """One request through Caddy over TLS, trusting only Caddy's local root; redirects
        are not followed."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection(
            "localhost",
            self.https_port,
            context=context,
            timeout=10,
            source_address=(CLIENT_ADDRESS, 0),
        )
        return _send(connection, method, path, body, headers)

    def http(self, path: str, **headers: str) -> Response:
        """Plain HTTP to Caddy's port 80 equivalent."""
        connection = http.client.HTTPConnection(
            "localhost", self.http_port, timeout=10, source_address=(CLIENT_ADDRESS, 0)
        )
        return _send(connection, "GET", path, None, headers)

    def direct(self, path: str) -> Response:
        """Plain HTTP to gunicorn itself, as Prometheus and health checks reach it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=10)
        return _send(connection, "GET", path, None, {})


def _send(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
) -> Response:
    try:
        connection.request(method, path, body=body, headers=_header_names(headers))
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read().decode(errors="replace"))
    finally:
        connection.close()


def _header_names(headers: dict[str, str]) -> dict[str, str]:
    # Keyword arguments name headers in Python style: X_Forwarded_For → X-Forwarded-For.
    return {name.replace("_", "-"): value for name, value in headers.items()}


def _answers(stack: Stack) -> bool:
    if not stack.ca_file.exists():
        return False
    try:
        return stack.https("GET", "/healthz/").status == 200
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False


@pytest.fixture
def stack(tmp_path: Path, transactional_db: None) -> Iterator[Stack]:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("no caddy binary: run `make caddy` (Debian's package)")
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    caddy_home = tmp_path / "caddy"
    # What compose's "static" service copies out of the image (STATIC_ROOT).
    static_root = tmp_path / "static"
    (static_root / "admin" / "css").mkdir(parents=True)
    (static_root / "admin" / "css" / "base.css").write_text(STYLESHEET)
    processes = Supervisor(
        env={
            **os.environ,
            "DATABASE_URL": current_database_url(),
            # The production switches, as docker-compose.yml sets them.
            "DJANGO_SECURE": "true",
            "TRUSTED_PROXY_COUNT": "1",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
            "WEB_CONCURRENCY": "1",
            "WEB_THREADS": "2",
            "PYTHONUNBUFFERED": "1",
        },
        log_dir=tmp_path,
    )
    stack = Stack(
        http_port=http_port,
        https_port=https_port,
        web_port=web_port,
        ca_file=caddy_home / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt",
        processes=processes,
    )
    try:
        processes.spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                str(REPO_ROOT / "gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{web_port}",
                "ecommerce.wsgi:application",
            ],
            label="web",
        )
        processes.spawn(
            [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
            label="caddy",
            # Caddy keeps its local CA under XDG_DATA_HOME: a fresh one per test, never the
            # machine's, and never added to the system's trust store (skip_install_trust).
            HOME=str(caddy_home),
            XDG_DATA_HOME=str(caddy_home / "data"),
            XDG_CONFIG_HOME=str(caddy_home / "config"),
            CADDY_SITE_ADDRESS=f"localhost:{https_port}",
            CADDY_HTTP_PORT=str(http_port),
            CADDY_UPSTREAM=f"127.0.0.1:{web_port}",
            CADDY_STATIC_ROOT=str(static_root),
            CADDY_BIND="127.0.0.1",
            CADDY_ADMIN="off",
        )
        wait_until(
            lambda: _answers(stack) or processes.exited(),
            timeout=90,
            interval=0.2,
            message="caddy and gunicorn to answer /healthz/ over HTTPS",
        )
        assert processes.exited() is None, processes.logs()[-5000:]
        yield stack
    finally:
        codes = processes.stop()
    assert set(codes.values()) == {0}, f"{codes}\n{processes.logs()[-5000:]}"


def test_plain_http_is_redirected_to_https_without_hsts(stack: Stack):
    # When a client asks over plain HTTP, claiming HTTPS in its own header
    response = stack.http("/api/products/?page=2", X_Forwarded_Proto="https")

    # Then Caddy redirects it to the same URL over HTTPS, and announces no HSTS over HTTP
    assert response.status == 308
    assert response.headers["Location"] == f"{stack.origin}/api/products/?page=2"
    assert "Strict-Transport-Security" not in response.headers


def test_django_sees_https_through_the_proxy_and_sends_hsts_once(stack: Stack):
    # When a client asks over HTTPS
    api = stack.https("GET", "/api/products/")
    login = stack.https("GET", "/admin/login/")

    # Then Django answers instead of redirecting again (it saw X-Forwarded-Proto: https)
    assert api.status == 401, api.body[:500]
    assert login.status == 200
    # And the one HSTS header is Django's (SecurityMiddleware sends it on secure requests
    # only); Caddy adds none
    assert api.headers.get_all("Strict-Transport-Security") == [HSTS]
    assert login.headers.get_all("Strict-Transport-Security") == [HSTS]
    # And cookies are secure-only
    csrf_cookie = next(c for c in login.headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
    assert "; Secure" in csrf_cookie


def test_the_client_address_reaches_django_and_a_forged_one_does_not(stack: Stack):
    # Given the admin login form, over HTTPS
    form = stack.https("GET", "/admin/login/")
    cookie = next(
        c.split(";")[0] for c in form.headers.get_all("Set-Cookie") if c.startswith("csrftoken=")
    )
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.body)
    assert match is not None

    # When a client posts a wrong password with its own X-Forwarded-For
    response = stack.https(
        "POST",
        "/admin/login/?next=/admin/",
        body=urlencode(
            {
                "csrfmiddlewaretoken": match[1],
                "username": "boss",
                "password": "wrong",
                "next": "/admin/",
            }
        ),
        Content_Type="application/x-www-form-urlencoded",
        Cookie=cookie,
        # CSRF's origin check passes only if Django sees the request as HTTPS
        Origin=stack.origin,
        X_Forwarded_For=SPOOFED_ADDRESS,
    )

    # Then Django accepts the form (the login page again, with its error: not a CSRF 403)
    assert response.status == 200, response.body[:500]
    assert "Please enter the correct username and password" in response.body
    # And the failed login is counted against the client's own address, the one Caddy saw:
    # not Caddy's (127.0.0.1), not the forged one (Caddy replaced the client's header)
    attempts = wait_until(lambda: list(AccessAttempt.objects.filter(username="boss")))
    assert [attempt.ip_address for attempt in attempts] == [CLIENT_ADDRESS]


def test_health_checks_answer_through_the_proxy_and_directly(stack: Stack):
    # When a probe asks for /healthz/ through Caddy, and directly on the web port
    proxied = stack.https("GET", "/healthz/")
    direct = stack.direct("/healthz/")

    # Then both answer
    assert (proxied.status, proxied.body) == (200, "ok")
    assert (direct.status, direct.body) == (200, "ok")


def test_metrics_are_refused_through_the_proxy_but_served_internally(stack: Stack):
    # When /metrics is asked for through Caddy, however spelled
    refused = [stack.https("GET", path) for path in ("/metrics", "/metrics/", "/%6Detrics")]

    # Then Caddy refuses it without asking gunicorn
    for response in refused:
        assert response.status == 404
        assert "# HELP" not in response.body
    # While Prometheus, on the internal network, still gets it from gunicorn directly
    internal = stack.direct("/metrics")
    assert internal.status == 200
    assert "# HELP" in internal.body


def test_static_files_are_served_by_caddy(stack: Stack):
    # When the admin's stylesheet is asked for
    response = stack.https("GET", "/static/admin/css/base.css")

    # Then Caddy serves it from the collected files (gunicorn serves none)
    assert response.status == 200
    assert response.body == STYLESHEET
    assert response.headers["Content-Type"].startswith("text/css")
