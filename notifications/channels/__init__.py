"""Delivery channels: e-mail, SMS and Web Push behind one small interface.

A channel backend sends one `OutboundMessage` to one recipient and answers with a
`DeliveryResult`: sent, gone (the recipient no longer exists: a push subscription the push
service has dropped) or rejected (the provider refuses this message for good). Anything it
raises is a transient failure, retried by the delivery task with the channel's back-off.

Which backend serves a channel is a setting, a dotted path as EMAIL_BACKEND is
(`settings.NOTIFICATIONS["CHANNELS"][<channel>]["BACKEND"]`); each backend reads its own
settings when it is made. Backends are made once per process (`channel_backend`), so an
HTTP backend keeps its connections open between messages.
"""

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

# The channels, in the order a transition's notifications are made and shown.
CHANNELS = ("email", "sms", "push")


@dataclass(frozen=True)
class OutboundMessage:
    """One message to one recipient.

    `recipient` is an e-mail address, an E.164 phone number or a push endpoint. `subject`
    is the e-mail subject or the push title (empty for SMS). `data` carries what a channel
    needs besides: a push subscription's `p256dh` and `auth` keys, and the push payload."""

    channel: str
    kind: str
    recipient: str
    subject: str
    body: str
    notification_id: int
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """Ours for the message, the same on every attempt: providers that take an
        idempotency key get this one."""
        return f"notification-{self.notification_id}"


class DeliveryOutcome(enum.StrEnum):
    SENT = "sent"
    GONE = "gone"
    REJECTED = "rejected"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: DeliveryOutcome
    # The provider's id for the message, when it gives one; for REJECTED and GONE, why.
    detail: str = ""


class Channel(Protocol):
    """A channel backend. `send` raises for a failure that may pass (a provider's 5xx, a
    timeout, a refused connection); the task then retries."""

    def send(self, message: OutboundMessage) -> DeliveryResult: ...


class ChannelUnavailable(Exception):
    """The provider could not take the message now (5xx, 429, timeout): try again later."""


@functools.cache
def channel_backend(channel: str) -> Channel:
    """The configured backend of `channel`, made once per process."""
    backend: Channel = import_string(settings.NOTIFICATIONS["CHANNELS"][channel]["BACKEND"])()
    return backend


@receiver(setting_changed)
def _forget_backends(setting: str, **kwargs: Any) -> None:
    # Tests that override the settings get backends made from the new ones.
    if setting == "NOTIFICATIONS":
        channel_backend.cache_clear()
