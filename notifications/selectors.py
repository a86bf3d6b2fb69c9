"""Reads of the notifications app: customers' channel preferences and push subscriptions."""

import functools
from collections.abc import Collection
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import QuerySet

from kafka_bridge.sql import Columns, in_list_param, in_list_sql
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
    customer who never set preferences gets `DEFAULT_CHOICE`; unknown ids are left out.

    The notifications consumer asks for every batch, however small: one statement written
    once per process, whose rows become the model instances a queryset would give (its
    compilation cost several times the read)."""
    if not customer_ids:
        return {}
    statement = _customers_with_channels_statement(connection.vendor)
    user_model = get_user_model()
    ids = in_list_param(user_model._meta.pk, customer_ids)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [ids])
        rows = cursor.fetchall()
    found: dict[int, tuple[AbstractBaseUser, ChannelChoice]] = {}
    split = len(statement.customer)
    for row in rows:
        customer = statement.customer.instance(user_model, row[:split])
        preferences_row, has_push = row[split:-1], bool(row[-1])
        if preferences_row[0] is None:  # never set: the defaults
            choice = DEFAULT_CHOICE
        else:
            preferences = statement.preferences.instance(NotificationPreferences, preferences_row)
            choice = ChannelChoice(
                channels=_channels(preferences, has_push=has_push),
                phone_number=preferences.phone_number,
            )
        found[customer.pk] = (customer, choice)
    return found


@dataclass(frozen=True)
class _CustomersWithChannels:
    sql: str
    customer: Columns
    preferences: Columns


@functools.cache
def _customers_with_channels_statement(vendor: str) -> _CustomersWithChannels:
    user_model = get_user_model()
    quote = connection.ops.quote_name
    customer = Columns("u", user_model._meta.concrete_fields)
    preferences = Columns("p", NotificationPreferences._meta.concrete_fields)
    user_pk = f"u.{quote(user_model._meta.pk.column)}"
    preferences_fk = quote(NotificationPreferences._meta.get_field("customer").column)
    push_fk = quote(PushSubscription._meta.get_field("customer").column)
    ids = in_list_sql("%s", vendor)
    sql = (
        f"SELECT {', '.join(customer.sql() + preferences.sql())}, "
        f"EXISTS (SELECT 1 FROM {quote(PushSubscription._meta.db_table)} s "
        f"WHERE s.{push_fk} = {user_pk}) "
        f"FROM {quote(user_model._meta.db_table)} u "
        f"LEFT JOIN {quote(NotificationPreferences._meta.db_table)} p "
        f"ON p.{preferences_fk} = {user_pk} "
        f"WHERE {user_pk} {ids}"
    )
    return _CustomersWithChannels(sql, customer, preferences)


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
