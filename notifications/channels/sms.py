"""SMS through an HTTP provider: one JSON POST per message.

    POST <SMS_PROVIDER_URL>
    Authorization: Bearer <SMS_PROVIDER_TOKEN>        (or Basic, from SMS_PROVIDER_USERNAME
                                                       and SMS_PROVIDER_PASSWORD)
    Content-Type: application/json
    Idempotency-Key: notification-<id>

    {"from": "<SMS_FROM>", "to": "+4915112345678", "text": "...",
     "reference": "notification-<id>"}

A 2xx answer is sent (its JSON `id`, if any, is kept as the provider's id). 408, 429 and
5xx, timeouts and refused connections are transient: the task retries. Any other 4xx means
the provider will never take this message (an invalid number, say): it fails at once.
"""

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifications.channels import (
    ChannelUnavailable,
    DeliveryOutcome,
    DeliveryResult,
    OutboundMessage,
)

TRANSIENT_STATUSES = frozenset({408, 425, 429})


class HttpSmsChannel:
    def __init__(self) -> None:
        config = settings.NOTIFICATIONS["SMS"]
        if not config["PROVIDER_URL"]:
            raise ImproperlyConfigured("the HTTP SMS backend needs SMS_PROVIDER_URL")
        self.url: str = config["PROVIDER_URL"]
        self.sender: str = config["FROM"]
        self.timeout: float = config["TIMEOUT_SECONDS"]
        # One session per process: connections to the provider are kept alive.
        self.session = requests.Session()
        if config["PROVIDER_TOKEN"]:
            self.session.headers["Authorization"] = f"Bearer {config['PROVIDER_TOKEN']}"
        elif config["PROVIDER_USERNAME"]:
            self.session.auth = (config["PROVIDER_USERNAME"], config["PROVIDER_PASSWORD"])

    def send(self, message: OutboundMessage) -> DeliveryResult:
        try:
            response = self.session.post(
                self.url,
                json={
                    "from": self.sender,
                    "to": message.recipient,
                    "text": message.body,
                    "reference": message.reference,
                },
                headers={"Idempotency-Key": message.reference},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"SMS provider unreachable: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return DeliveryResult(DeliveryOutcome.SENT, detail=_provider_id(response))
        reason = f"SMS provider answered {status}: {response.text[:500]}"
        if status >= 500 or status in TRANSIENT_STATUSES:
            raise ChannelUnavailable(reason)
        return DeliveryResult(DeliveryOutcome.REJECTED, detail=reason)


def _provider_id(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("id", ""))[:200] if isinstance(body, dict) else ""
