"""Notifications: created once per customer-visible order transition and channel, and
queued for delivery by Celery once the transaction commits (`notifications.tasks`; sending
is `notifications.delivery`, the channels `notifications.channels`). Also the customers'
channel preferences and their Web Push subscriptions.

Texts are Django templates per channel and kind (templates/notifications/<channel>/), so
wording changes never touch code: an e-mail subject and body, an SMS text of at most 160
characters, a push title and body as JSON. They are plain text: each template turns
autoescaping off (push templates escape their strings for JSON with `escapejs`).
"""

import base64
import binascii
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.loader import render_to_string

from common import tracing
from common.redis_client import OutageBackoff
from kafka_bridge.sql import rows_where_in
from notifications.channels import CHANNELS
from notifications.metrics import notifications_created_count_on_commit
from notifications.models import Notification, NotificationPreferences, PushSubscription
from notifications.selectors import notification_customers_with_channels
from notifications.tasks import notifications_deliver
from orders.events import OrderStatusChangedV1
from orders.selectors import order_shipping_addresses

logger = logging.getLogger(__name__)

KIND_BY_ORDER_STATUS: dict[str, str] = {
    "reserved": Notification.Kind.ORDER_CONFIRMED,
    "rejected": Notification.Kind.OUT_OF_STOCK,
    "paid": Notification.Kind.PAYMENT_RECEIVED,
    "payment_failed": Notification.Kind.PAYMENT_FAILED,
    "shipped": Notification.Kind.SHIPPED,
    "delivered": Notification.Kind.DELIVERED,
    "cancelled": Notification.Kind.CANCELLED,
    "expired": Notification.Kind.EXPIRED,
}
# A held order back in `reserved` (staff approved it after a risk review): the customer
# heard "order confirmed" when it was first reserved, and hears nothing about the review.
_NOT_NOTIFIED_MOVES = frozenset({("held", "reserved")})


def _notification_kind(change: OrderStatusChangedV1) -> str | None:
    if (change.previous_status, change.status) in _NOT_NOTIFIED_MOVES:
        return None
    return KIND_BY_ORDER_STATUS.get(change.status)


# One SMS segment in the GSM 7-bit alphabet. The templates stay well inside it; a text
# that would not (a very long carrier name) is cut, never split into several messages.
SMS_MAX_LENGTH = 160


def _render_email(kind: str, context: dict[str, object]) -> tuple[str, str]:
    subject = render_to_string(f"notifications/email/{kind}.subject.txt", context)
    body = render_to_string(f"notifications/email/{kind}.body.txt", context)
    return " ".join(subject.split())[:200], body.strip()


def _render_sms(kind: str, context: dict[str, object]) -> tuple[str, str]:
    text = " ".join(render_to_string(f"notifications/sms/{kind}.txt", context).split())
    if len(text) > SMS_MAX_LENGTH:
        text = text[: SMS_MAX_LENGTH - 3].rstrip() + "..."
    return "", text


def _render_push(kind: str, context: dict[str, object]) -> tuple[str, str]:
    rendered = json.loads(render_to_string(f"notifications/push/{kind}.json", context))
    return " ".join(rendered["title"].split())[:200], rendered["body"].strip()


RENDERERS = {"email": _render_email, "sms": _render_sms, "push": _render_push}


def notification_render(*, channel: str, kind: str, context: dict[str, object]) -> tuple[str, str]:
    """(subject, body) of a notification of `kind` on `channel`: the e-mail subject or
    push title (empty for SMS), and the text."""
    return RENDERERS[channel](kind, context)


@dataclass(frozen=True)
class OrderChangeNotice:
    """An order transition to tell the customer about, and the event that reported it."""

    change: OrderStatusChangedV1
    event_id: uuid.UUID
    correlation_id: str = ""


@transaction.atomic(savepoint=False)  # joins a consumer batch's transaction
def notifications_create_for_order_changes(
    *, notices: Sequence[OrderChangeNotice]
) -> list[list[Notification]]:
    """The notifications of each transition, one per channel the customer gets, created
    once per event in a constant number of queries (the customers with their preferences
    in one);
    their delivery is queued after commit, one task per channel. A transition customers do
    not see gives none, and so does an event already notified (a redelivery), whatever
    the customer's channels are now. Raises the customer model's DoesNotExist for an
    unknown customer."""
    kinds = [_notification_kind(notice.change) for notice in notices]
    wanted = [(notice, kind) for notice, kind in zip(notices, kinds, strict=True) if kind]
    found: dict[tuple[uuid.UUID, str], Notification] = {
        (n.event_id, n.channel): n
        for n in rows_where_in(Notification, "event_id", [n.event_id for n, _ in wanted])
    }
    notified = {event_id for event_id, _ in found}
    user_model = get_user_model()
    customers = notification_customers_with_channels(
        customer_ids={notice.change.customer_id for notice, _ in wanted}
    )
    addresses = order_shipping_addresses(order_ids={notice.change.order_id for notice, _ in wanted})
    created: list[Notification] = []
    for notice, kind in wanted:
        if notice.event_id in notified:
            continue
        notified.add(notice.event_id)
        change = notice.change
        if change.customer_id not in customers:
            raise user_model.DoesNotExist(f"customer {change.customer_id} does not exist")
        customer, choice = customers[change.customer_id]
        context = {
            "customer": customer,
            "order_id": change.order_id,
            "short_id": str(change.order_id)[:8],
            "reason": change.reason,
            "tracking_number": change.tracking_number,
            "carrier": change.carrier,
            "shipping_lines": (
                addresses[change.order_id].postal_lines() if change.order_id in addresses else []
            ),
        }
        for channel in choice.channels:
            subject, body = notification_render(channel=channel, kind=kind, context=context)
            notification = Notification(
                customer=customer,
                order_id=change.order_id,
                kind=kind,
                channel=channel,
                subject=subject,
                body=body,
                event_id=notice.event_id,
                correlation_id=notice.correlation_id,
            )
            found[(notice.event_id, channel)] = notification
            created.append(notification)
    Notification.objects.bulk_create(created)
    notifications_created_count_on_commit(n.channel for n in created)
    notifications_enqueue(notifications=created, causes=[n.event_id for n in created])
    return [
        [found[key] for channel in CHANNELS if (key := (notice.event_id, channel)) in found]
        if kind
        else []
        for notice, kind in zip(notices, kinds, strict=True)
    ]


def notification_create_for_order_change(
    *, change: OrderStatusChangedV1, event_id: uuid.UUID
) -> Notification | None:
    """One transition's notifications (see `notifications_create_for_order_changes`);
    returns the first, in channel order (the e-mail for a customer who gets e-mail), or
    None if there is none."""
    (notifications,) = notifications_create_for_order_changes(
        notices=[OrderChangeNotice(change, event_id)]
    )
    return notifications[0] if notifications else None


# After a failed publish, skip publishing for a while: during a broker outage each attempt
# would block the notifications consumer for its timeouts. Pending ones go out via the sweep.
_enqueue_backoff = OutageBackoff()


def notifications_enqueue(
    *, notifications: Sequence[Notification], causes: Sequence[uuid.UUID | None] = ()
) -> None:
    """Queue delivery once the current transaction commits: one task per channel, so that
    a channel's failures never hold up another's. If the Celery broker is down the
    notifications stay pending and the periodic sweep queues them.

    `causes[i]` is the event that caused notification i. With tracing on, each traced
    event's notifications get tasks of their own, published in its trace."""
    items = [(n.id, n.channel) for n in notifications]
    if not items:
        return
    # Taken now: once on_commit runs, the consumer batch's events are no longer in hand.
    batches = []
    for context, group in tracing.grouped_by_cause(items, causes):
        by_channel: dict[str, list[int]] = {}
        for notification_id, channel in group:
            by_channel.setdefault(channel, []).append(notification_id)
        batches.extend((context, ids) for ids in by_channel.values())

    def enqueue() -> None:
        if not _enqueue_backoff.ready():
            return
        try:
            for context, ids in batches:
                with tracing.context_attached(context):
                    notifications_deliver.delay(ids)
        except Exception as exc:  # broker unavailable: the sweep will pick them up
            if _enqueue_backoff.failed():
                logger.warning("notifications not queued (the sweep will): %s", exc)
            return
        _enqueue_backoff.succeeded()

    transaction.on_commit(enqueue)


@transaction.atomic
def notification_resend(*, notification_ids: list[int]) -> int:
    """Staff: queue failed (or pending) notifications again; sent ones are left alone."""
    resendable = list(
        Notification.objects.filter(id__in=notification_ids)
        .exclude(status=Notification.Status.SENT)
        .only("id", "channel")
    )
    Notification.objects.filter(id__in=[n.id for n in resendable]).update(
        status=Notification.Status.PENDING, error=""
    )
    notifications_enqueue(notifications=resendable)
    return len(resendable)


# --- preferences ------------------------------------------------------------------------

# E.164: a plus, a country code (no leading zero), at most 15 digits in all.
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def notification_preferences_validate(
    *, customer_id: int, sms_enabled: bool, push_enabled: bool, phone_number: str
) -> None:
    """Raise ValidationError, by field, for preferences that cannot hold: a phone number
    that is not E.164, SMS without a phone number, push without a subscription."""
    errors: dict[str, list[str]] = {}
    if phone_number and not E164.match(phone_number):
        errors["phone_number"] = [
            "Enter the number in international E.164 form: a plus, the country code and "
            "the number, digits only (e.g. +4915112345678)."
        ]
    elif sms_enabled and not phone_number:
        errors["phone_number"] = ["A phone number is needed to turn SMS on."]
    if push_enabled and not PushSubscription.objects.filter(customer_id=customer_id).exists():
        errors["push_enabled"] = [
            "Register a push subscription (POST /api/push-subscriptions/) before turning push on."
        ]
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def notification_preferences_update(
    *,
    customer: AbstractBaseUser,
    email_enabled: bool,
    sms_enabled: bool,
    push_enabled: bool,
    phone_number: str = "",
) -> NotificationPreferences:
    """Set all of a customer's channel preferences at once (validated first; see
    `notification_preferences_validate`). They apply to notifications created after."""
    notification_preferences_validate(
        customer_id=customer.pk,
        sms_enabled=sms_enabled,
        push_enabled=push_enabled,
        phone_number=phone_number,
    )
    preferences, _ = NotificationPreferences.objects.update_or_create(
        customer_id=customer.pk,
        defaults={
            "email_enabled": email_enabled,
            "sms_enabled": sms_enabled,
            "push_enabled": push_enabled,
            "phone_number": phone_number,
        },
    )
    return preferences


# --- push subscriptions -----------------------------------------------------------------


def _b64url_decode(value: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def push_p256dh_validate(value: str) -> None:
    """A browser's subscription key, as the Push API gives it: a P-256 public key,
    uncompressed (65 bytes), base64url."""
    key = _b64url_decode(value)
    if key is None or len(key) != 65 or key[0] != 4:
        raise ValidationError("Not a P-256 public key (65 bytes, uncompressed, base64url).")


def push_auth_validate(value: str) -> None:
    """A browser's subscription auth secret: 16 bytes, base64url."""
    secret = _b64url_decode(value)
    if secret is None or len(secret) != 16:
        raise ValidationError("Not an auth secret (16 bytes, base64url).")


def push_subscription_validate(*, endpoint: str, p256dh: str, auth: str) -> None:
    """Raise ValidationError, by field, for a subscription we will not send to: an endpoint
    that is not HTTPS on a known push service's host (WEBPUSH_ENDPOINT_HOSTS: the workers
    POST to it), or keys that are not what the Push API gives."""
    errors: dict[str, list[str]] = {}
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    hosts = settings.NOTIFICATIONS["WEBPUSH"]["ENDPOINT_HOSTS"]
    if parts.scheme != "https" or not any(host == h or host.endswith(f".{h}") for h in hosts):
        errors["endpoint"] = [
            f"Not a push service endpoint: an https:// URL on {', '.join(hosts)} is expected."
        ]
    for field, validate, value in (
        ("p256dh", push_p256dh_validate, p256dh),
        ("auth", push_auth_validate, auth),
    ):
        try:
            validate(value)
        except ValidationError as exc:
            errors[field] = exc.messages
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def push_subscription_register(
    *, customer: AbstractBaseUser, endpoint: str, p256dh: str, auth: str
) -> tuple[PushSubscription, bool]:
    """Register a browser's push subscription for the customer; the same endpoint again
    updates its keys. Returns (subscription, created). At most WEBPUSH_MAX_SUBSCRIPTIONS
    per customer."""
    push_subscription_validate(endpoint=endpoint, p256dh=p256dh, auth=auth)
    # Serialises a customer's registrations, so that the limit holds under concurrency.
    get_user_model().objects.select_for_update().filter(pk=customer.pk).first()
    existing = PushSubscription.objects.filter(customer_id=customer.pk, endpoint=endpoint).first()
    if existing is not None:
        existing.p256dh, existing.auth = p256dh, auth
        existing.save(update_fields=["p256dh", "auth"])
        return existing, False
    limit = settings.NOTIFICATIONS["WEBPUSH"]["MAX_SUBSCRIPTIONS"]
    if PushSubscription.objects.filter(customer_id=customer.pk).count() >= limit:
        raise ValidationError(
            f"At most {limit} push subscriptions per customer: delete one you no longer use."
        )
    subscription = PushSubscription.objects.create(
        customer_id=customer.pk, endpoint=endpoint, p256dh=p256dh, auth=auth
    )
    return subscription, True


@transaction.atomic
def push_subscription_delete(*, customer: AbstractBaseUser, subscription_id: uuid.UUID) -> bool:
    """Remove one of the customer's own subscriptions; False if they have no such one."""
    deleted, _ = PushSubscription.objects.filter(
        customer_id=customer.pk, id=subscription_id
    ).delete()
    return deleted > 0
