"""The SSRF guard: which addresses webhooks may reach, what registration accepts, and an
attempt to a refused address never leaving the machine. Only loopback is ever connected to;
the other refused addresses are checked without a packet sent."""

import ipaddress
import uuid
from datetime import UTC, datetime

import pytest

from tools.webhook_receiver import WebhookReceiver
from webhooks.addresses import (
    AddressRefused,
    InvalidWebhookUrl,
    address_refusal,
    target_resolve,
    url_check,
)
from webhooks.sending import DeliveryClaim, attempt_send
from webhooks.services import webhook_secret_generate

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:a00:1::1",  # 6to4 around 10.0.0.1
    "ff02::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str):
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str):
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/h", "http://10.1.2.3/h", "http://169.254.169.254/", "http://[::1]/"]
)
def test_resolving_a_refused_address_refuses_the_target_unless_private_is_allowed(url: str):
    with pytest.raises(AddressRefused, match="refused address"):
        target_resolve(url, allow_private=False)

    assert target_resolve(url, allow_private=True).addresses


def test_localhost_resolves_to_loopback_and_is_refused():
    with pytest.raises(AddressRefused):
        target_resolve("https://localhost:9/x", allow_private=False)


@pytest.mark.parametrize(
    ("url", "allow_private", "message"),
    [
        ("ftp://example.com/", True, "Only http:// and https://"),
        ("https:///path", True, "no host"),
        ("https://user:pw@example.com/", True, "Credentials"),
        ("not a url", True, "Only http:// and https://"),
        ("http://example.com/hook", False, "must use https://"),
        ("https://127.0.0.1/hook", False, "loopback"),
        ("https://10.0.0.5/hook", False, "not a public address"),
        ("https://169.254.169.254/latest", False, "link-local"),
        ("https://[::1]:8443/", False, "loopback"),
        ("https://localhost/", False, "localhost"),
    ],
)
def test_registration_refuses_urls_with_a_reason(url: str, allow_private: bool, message: str):
    with pytest.raises(InvalidWebhookUrl, match=message):
        url_check(url, allow_private=allow_private)


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("https://hooks.example.com/orders?x=1", False),
        ("https://93.184.216.34/hook", False),
        ("http://127.0.0.1:9000/hooks", True),
        ("https://10.0.0.5/hook", True),
    ],
)
def test_registration_accepts(url: str, allow_private: bool):
    url_check(url, allow_private=allow_private)


def _claim(url: str, secret: str) -> DeliveryClaim:
    return DeliveryClaim(
        delivery_id=1,
        endpoint_id=uuid.uuid4(),
        url=url,
        secret=secret,
        message_id="msg_test",
        body='{"type":"orders.paid","timestamp":"2026-12-05T00:00:00Z","data":{}}',
        attempt=1,
    )


def test_an_attempt_to_loopback_is_refused_before_any_request_unless_allowed(
    receiver: WebhookReceiver,
):
    # Given a receiver on 127.0.0.1
    receiver.secret = webhook_secret_generate()
    claim = _claim(receiver.url, receiver.secret)

    # When private addresses are refused, the attempt fails without reaching it
    refused = attempt_send(claim, timeout=2, allow_private=False)
    assert refused.outcome == "refused"
    assert "127.0.0.1 is a loopback address" in refused.error
    assert receiver.all() == []

    # And when they are allowed, the same attempt is delivered, signed
    delivered = attempt_send(claim, timeout=2, allow_private=True)
    assert delivered.ok, delivered.error
    assert [r.message_id for r in receiver.accepted()] == ["msg_test"]


def test_an_answer_after_the_timeout_is_a_timeout(receiver: WebhookReceiver):
    receiver.secret = webhook_secret_generate()
    receiver.delay = 1.0

    outcome = attempt_send(_claim(receiver.url, receiver.secret), timeout=0.2, allow_private=True)

    assert outcome.outcome == "timeout"
    assert outcome.duration_ms < 1000


def test_a_wrong_secret_is_not_verified_by_the_receiver(receiver: WebhookReceiver):
    receiver.secret = webhook_secret_generate()

    outcome = attempt_send(
        _claim(receiver.url, webhook_secret_generate()), timeout=2, allow_private=True
    )

    assert outcome.outcome == "http_error" and outcome.status_code == 401
    assert receiver.accepted() == []


def test_nothing_listening_is_a_connection_error():
    from tools.localservices import free_port

    claim = _claim(f"http://127.0.0.1:{free_port()}/x", webhook_secret_generate())

    outcome = attempt_send(claim, timeout=2, allow_private=True)

    assert outcome.outcome == "connection_error"
    assert outcome.finished_at >= outcome.started_at >= datetime(2026, 1, 1, tzinfo=UTC)
