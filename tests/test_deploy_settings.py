"""Production settings (DJANGO_SECURE=true, as docker-compose sets it) pass Django's deploy
check without a single warning, and behave as HTTPS behind a TLS-terminating proxy; the
local defaults (`make run`) stay plain HTTP. Production settings are read in a fresh
process, from the environment, exactly as a deployment reads them."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

REPO_ROOT = Path(__file__).resolve().parents[1]


def _environment(**overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return {**base, "DJANGO_SETTINGS_MODULE": "ecommerce.settings", **overrides}


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE": "true",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "shop.example.com,testserver",
}


def _deploy_check(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_reports_nothing_with_production_settings():
    # When the deploy check runs with production settings
    result = _deploy_check(_environment(**PRODUCTION))

    # Then it reports no issue at all, not even a warning
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_deploy_check_fails_without_the_https_switch():
    # Given production settings without DJANGO_SECURE
    environment = _environment(**{**PRODUCTION, "DJANGO_SECURE": "false"})

    # When the deploy check runs
    result = _deploy_check(environment)

    # Then it fails on exactly what the switch sets
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr, result.stderr


# Run in a fresh process with production settings: plain HTTP from the proxy or a health
# check, and HTTPS as the proxy reports it (X-Forwarded-Proto).
PROBE = """
import json
import django

django.setup()
from django.conf import settings
from django.test import Client

client = Client()
plain = client.get("/api/products/")
healthz = client.get("/healthz/")
secure = client.get("/healthz/", HTTP_X_FORWARDED_PROTO="https")
# Prometheus and the readiness check come over plain HTTP too (ready or not, no redirect).
metrics = client.get("/metrics")
readyz = client.get("/readyz/")
print(json.dumps({
    "metrics": metrics.status_code,
    "readyz": readyz.status_code,
    "plain": [plain.status_code, plain.headers.get("Location")],
    "healthz": [healthz.status_code, healthz.content.decode()],
    "secure_hsts": secure.headers.get("Strict-Transport-Security"),
    "cookies_secure": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def test_production_redirects_to_https_except_the_health_check():
    # When requests reach the production settings over plain HTTP, and over HTTPS
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO_ROOT,
        env=_environment(**PRODUCTION),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    # Then plain HTTP is redirected to HTTPS, except /healthz/, /readyz/ and /metrics
    # (compose's health check and Prometheus)
    assert seen["plain"] == [301, "https://testserver/api/products/"]
    assert seen["healthz"] == [200, "ok"]
    assert seen["metrics"] == 200
    assert seen["readyz"] in (200, 503)
    # And HTTPS answers carry HSTS, for subdomains too; cookies are secure-only
    assert seen["secure_hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["cookies_secure"] == [True, True]


@pytest.mark.django_db
def test_local_settings_stay_plain_http():
    # Given the default settings (`make run`, the tests): no DJANGO_SECURE
    client = Client()

    # When requests come over plain HTTP
    api = client.get("/api/products/")
    healthz = client.get("/healthz/")

    # Then they are answered, not redirected, and no HSTS is announced
    assert api.status_code == 401
    assert healthz.status_code == 200
    assert "Strict-Transport-Security" not in healthz.headers
