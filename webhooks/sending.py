"""One attempt of one delivery: sign the body per Standard Webhooks (the `standardwebhooks`
package), resolve and check the host (`webhooks.addresses`), POST to a checked address,
and say what came back. Never raises: every failure is an outcome.

Runs on the dispatcher's pool threads, with no database access.
"""

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

from webhooks.addresses import AddressRefused, Target, target_resolve
from webhooks.models import WebhookAttempt

Outcome = WebhookAttempt.Outcome
USER_AGENT = "ecommerce-webhooks/1"
# What is kept of an answer's body in the attempt log (an error page's first words).
EXCERPT_BYTES = 200


@dataclass(frozen=True)
class DeliveryClaim:
    """A delivery a dispatcher took to send now."""

    delivery_id: int
    endpoint_id: object
    url: str
    secret: str
    message_id: str
    body: str
    attempt: int  # this attempt's number, 1 for the first


@dataclass(frozen=True)
class AttemptOutcome:
    delivery_id: int
    endpoint_id: object
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str  # a WebhookAttempt.Outcome
    status_code: int | None
    duration_ms: float
    error: str

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.SUCCESS


def signed_headers(*, secret: str, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: id, timestamp (this attempt's, so a
    retry hours later still passes the receivers' freshness check) and signature."""
    signature = Webhook(secret).sign(message_id, now, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to one given address; the Host header still names the URL's host."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one given address; the certificate is checked against the URL's host."""

    def __init__(
        self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


_TLS = ssl.create_default_context()


def _connection(target: Target, address: str, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPSConnection(
            target.host, target.port, address=address, timeout=timeout, context=_TLS
        )
    return _PinnedHTTPConnection(target.host, target.port, address=address, timeout=timeout)


def attempt_send(claim: DeliveryClaim, *, timeout: float, allow_private: bool) -> AttemptOutcome:
    """POST the claim's body to its endpoint once, within about `timeout` seconds."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    deadline = started + timeout
    status_code: int | None = None

    def outcome(kind: str, error: str = "") -> AttemptOutcome:
        return AttemptOutcome(
            delivery_id=claim.delivery_id,
            endpoint_id=claim.endpoint_id,
            attempt=claim.attempt,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            outcome=kind,
            status_code=status_code,
            duration_ms=(time.monotonic() - started) * 1000,
            error=error[:2000],
        )

    try:
        target = target_resolve(claim.url, allow_private=allow_private)
    except AddressRefused as exc:
        return outcome(Outcome.REFUSED, f"refused: {exc}")
    except OSError as exc:
        return outcome(Outcome.CONNECTION_ERROR, f"cannot resolve: {exc}")
    body = claim.body.encode()
    headers = {
        **signed_headers(
            secret=claim.secret, message_id=claim.message_id, body=claim.body, now=started_at
        ),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    errors = []
    for address in target.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return outcome(Outcome.TIMEOUT, f"no answer within {timeout:g}s")
        connection = _connection(target, address, remaining)
        try:
            try:
                connection.connect()
            except (TimeoutError, OSError) as exc:
                errors.append(f"{address}: {exc}")
                continue  # the next address, if any
            connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.request("POST", target.path, body=body, headers=headers)
            connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
            response = connection.getresponse()
            status_code = response.status
            excerpt = response.read(EXCERPT_BYTES).decode(errors="replace")
        except TimeoutError:
            return outcome(Outcome.TIMEOUT, f"no answer within {timeout:g}s")
        except (OSError, http.client.HTTPException) as exc:
            return outcome(Outcome.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
        if 200 <= status_code < 300:
            return outcome(Outcome.SUCCESS)
        return outcome(Outcome.HTTP_ERROR, f"HTTP {status_code}: {' '.join(excerpt.split())}")
    if any("timed out" in error for error in errors):
        return outcome(Outcome.TIMEOUT, "; ".join(errors))
    return outcome(Outcome.CONNECTION_ERROR, "cannot connect: " + "; ".join(errors))
