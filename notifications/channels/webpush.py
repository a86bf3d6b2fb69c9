"""Web Push (RFC 8030) with VAPID (RFC 8292), through pywebpush.

Each message goes to one subscription: a POST to its endpoint, the payload encrypted for the
browser's keys (RFC 8291, `Content-Encoding: aes128gcm`), signed with our VAPID key
(`Authorization: vapid t=<JWT>, k=<our public key>`), with a `TTL` of WEBPUSH_TTL_SECONDS.
The payload is JSON: `{"title", "body", "kind", "order_id"}`.

201 or 202 is sent. 404 and 410 mean the subscription is gone: the caller removes it. 429
and 5xx, timeouts and refused connections are transient (retried). Any other answer (400,
403 for a VAPID key the subscription was not made with, 413) fails for good.
"""

import functools
import json

import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from py_vapid import Vapid, b64urlencode
from pywebpush import WebPushException, webpush

from notifications.channels import (
    ChannelUnavailable,
    DeliveryOutcome,
    DeliveryResult,
    OutboundMessage,
)

GONE_STATUSES = frozenset({404, 410})


def vapid_key_load(private_key: str) -> Vapid:
    """The VAPID key from its setting: raw (32 bytes) or DER, base64url, or PEM."""
    text = private_key.strip()
    if text.startswith("-----BEGIN"):
        return Vapid.from_pem(text.encode())
    return Vapid.from_string(private_key=text)


def vapid_application_server_key() -> str:
    """Our VAPID public key as browsers take it (`applicationServerKey` of
    `pushManager.subscribe`): the uncompressed P-256 point, base64url. Empty when no key is
    configured."""
    return _public_key_of(settings.NOTIFICATIONS["WEBPUSH"]["VAPID_PRIVATE_KEY"])


@functools.lru_cache(maxsize=4)
def _public_key_of(private_key: str) -> str:
    if not private_key:
        return ""
    point = vapid_key_load(private_key).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64urlencode(point)


class WebPushChannel:
    def __init__(self) -> None:
        config = settings.NOTIFICATIONS["WEBPUSH"]
        if not config["VAPID_PRIVATE_KEY"] or not config["VAPID_SUBJECT"]:
            raise ImproperlyConfigured(
                "the Web Push backend needs WEBPUSH_VAPID_PRIVATE_KEY and WEBPUSH_VAPID_SUBJECT"
            )
        self.subject: str = config["VAPID_SUBJECT"]
        self.ttl: int = config["TTL_SECONDS"]
        self.timeout: float = config["TIMEOUT_SECONDS"]
        try:
            self.vapid = vapid_key_load(config["VAPID_PRIVATE_KEY"])
        except Exception as exc:  # whatever the key parsers raise for a bad key
            raise ImproperlyConfigured(
                f"WEBPUSH_VAPID_PRIVATE_KEY is no P-256 private key ({type(exc).__name__}): "
                "raw or DER, base64url, or PEM"
            ) from None
        # One session per process: connections to each push service are kept alive.
        self.session = requests.Session()

    def send(self, message: OutboundMessage) -> DeliveryResult:
        subscription = {
            "endpoint": message.recipient,
            "keys": {"p256dh": message.data["p256dh"], "auth": message.data["auth"]},
        }
        try:
            webpush(
                subscription,
                data=json.dumps(message.data["payload"], separators=(",", ":")),
                vapid_private_key=self.vapid,
                # A fresh dict each time: pywebpush writes `aud` and `exp` into it.
                vapid_claims={"sub": self.subject},
                timeout=self.timeout,
                ttl=self.ttl,
                requests_session=self.session,
            )
        except WebPushException as exc:
            status = exc.status_code
            if status is None:  # refused before sending: a malformed subscription
                return DeliveryResult(DeliveryOutcome.REJECTED, detail=exc.message[:500])
            reason = f"push service answered {status}"
            if status in GONE_STATUSES:
                return DeliveryResult(DeliveryOutcome.GONE, detail=reason)
            if status == 429 or status >= 500:
                raise ChannelUnavailable(reason) from exc
            return DeliveryResult(DeliveryOutcome.REJECTED, detail=reason)
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"push service unreachable: {exc}") from exc
        return DeliveryResult(DeliveryOutcome.SENT)
