"""Reads of the notifications app: customers' channel preferences and push subscriptions."""

from collections.abc import Collection
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, OuterRef, QuerySet

from notifications.channels import CHANNELS
from notifications.models import NotificationPreferences, PushSubscription

# What a customer without a preferences row gets.
DEFAULT_PREFERENCES = {"email_enabled": True, "sms_enabled": False, "push_enabled": False}


@dataclass(frozen=True)
class ChannelChoice:
    """The channels a customer is notified on now, and their phone number."""

    channels: tuple[str, ...]
    phone_number: str = ""


DEFAULT_CHOICE = ChannelChoice(channels=("email",))


def _channels(preferences: NotificationPreferences, *, has_push: bool) -> tuple[str, ...]:
    wanted = {
        "email": preferences.email_enabled,
        "sms": preferences.sms_enabled and bool(preferences.phone_number),
        "push": preferences.push_enabled and has_push,
    }
    return tuple(channel for channel in CHANNELS if wanted[channel])


def notification_customers_with_channels(
    *, customer_ids: Collection[int]
) -> dict[int, tuple[AbstractBaseUser, ChannelChoice]]:
    """Each customer with their channels, in one query for any number of customers (the
    customers, their preferences joined, and whether each has a push subscription): e-mail
    if on; SMS if on and a phone number is known; push if on and a subscription exists. A
    customer who never set preferences gets `DEFAULT_CHOICE`; unknown ids are left out."""
    customers = (
        get_user_model()
        .objects.filter(pk__in=customer_ids)
        .select_related("notification_preferences")
        .annotate(has_push=Exists(PushSubscription.objects.filter(customer_id=OuterRef("pk"))))
    )
    found: dict[int, tuple[AbstractBaseUser, ChannelChoice]] = {}
    for customer in customers:
        preferences = getattr(customer, "notification_preferences", None)
        choice = (
            ChannelChoice(
                channels=_channels(preferences, has_push=customer.has_push),
                phone_number=preferences.phone_number,
            )
            if preferences is not None
            else DEFAULT_CHOICE
        )
        found[customer.pk] = (customer, choice)
    return found


def notification_preferences_get(*, customer_id: int) -> NotificationPreferences:
    """The customer's preferences; an unsaved row with the defaults if they never set any."""
    found = NotificationPreferences.objects.filter(customer_id=customer_id).first()
    return found or NotificationPreferences(customer_id=customer_id, **DEFAULT_PREFERENCES)


def notification_channels_active(*, preferences: NotificationPreferences) -> tuple[str, ...]:
    """The channels these preferences notify on now (one query, for push)."""
    has_push = PushSubscription.objects.filter(customer_id=preferences.customer_id).exists()
    return _channels(preferences, has_push=has_push)


def push_subscription_list(*, customer_id: int) -> QuerySet[PushSubscription]:
    return PushSubscription.objects.filter(customer_id=customer_id).order_by("created_at")
