"""Which channels a transition's notifications go to: one notification per (event,
channel), by the customer's preferences, loaded for a whole batch in one query."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Notification, NotificationPreferences
from notifications.services import (
    OrderChangeNotice,
    notification_preferences_update,
    notifications_create_for_order_changes,
)
from orders.events import OrderStatusChangedV1
from testing.factories import customer_create, push_subscription_register_for

pytestmark = pytest.mark.django_db

C = Notification.Channel


def _notice(customer, status: str = "paid", **fields: object) -> OrderChangeNotice:  # type: ignore[no-untyped-def]
    change = OrderStatusChangedV1(
        order_id=uuid.uuid4(),
        customer_id=customer.pk,
        previous_status="reserved",
        status=status,
        **fields,
    )
    return OrderChangeNotice(change=change, event_id=uuid.uuid4())


def _customer_on(*channels: str):  # type: ignore[no-untyped-def]
    customer = customer_create()
    if "push" in channels:
        push_subscription_register_for(customer)
    notification_preferences_update(
        customer=customer,
        email_enabled="email" in channels,
        sms_enabled="sms" in channels,
        push_enabled="push" in channels,
        phone_number="+4915112345678" if "sms" in channels else "",
    )
    return customer


def _channels_of(notifications: list[Notification]) -> list[str]:
    return [n.channel for n in notifications]


def test_a_customer_without_preferences_gets_email_only():
    (made,) = notifications_create_for_order_changes(notices=[_notice(customer_create())])

    assert _channels_of(made) == [C.EMAIL]


def test_each_enabled_channel_gets_one_notification_of_its_own():
    # Given a customer on e-mail, SMS and push
    customer = _customer_on("email", "sms", "push")
    notice = _notice(customer, "shipped", tracking_number="TRK123", carrier="UPS")

    # When a transition of their order is notified
    (made,) = notifications_create_for_order_changes(notices=[notice])

    # Then one pending notification per channel, each rendered for its channel
    assert _channels_of(made) == [C.EMAIL, C.SMS, C.PUSH]
    email, sms, push = made
    assert {n.status for n in made} == {Notification.Status.PENDING}
    assert {n.event_id for n in made} == {notice.event_id}
    assert {n.kind for n in made} == {Notification.Kind.SHIPPED}
    assert email.body.startswith("Hello ")
    assert sms.subject == "" and "TRK123" in sms.body and len(sms.body) <= 160
    assert push.subject == f"Order {str(notice.change.order_id)[:8]} has shipped"
    assert "UPS" in push.body


def test_customers_who_turned_email_off_get_only_their_other_channels():
    sms_only = _customer_on("sms")
    nothing = _customer_on()

    made = notifications_create_for_order_changes(notices=[_notice(sms_only), _notice(nothing)])

    assert [_channels_of(m) for m in made] == [[C.SMS], []]


def test_sms_needs_a_phone_number_and_push_a_subscription_at_creation():
    # Given a customer whose SMS and push are on, but whose number and subscription are gone
    customer = _customer_on("email", "sms", "push")
    NotificationPreferences.objects.filter(customer=customer).update(phone_number="")
    customer.push_subscriptions.all().delete()

    (made,) = notifications_create_for_order_changes(notices=[_notice(customer)])

    assert _channels_of(made) == [C.EMAIL]


def test_a_redelivered_event_adds_no_notification_even_after_the_preferences_changed():
    # Given an event notified by e-mail
    customer = customer_create()
    notice = _notice(customer)
    (first,) = notifications_create_for_order_changes(notices=[notice])

    # When the customer turns SMS on and the same event is delivered again
    notification_preferences_update(
        customer=customer,
        email_enabled=True,
        sms_enabled=True,
        push_enabled=False,
        phone_number="+4915112345678",
    )
    (again,) = notifications_create_for_order_changes(notices=[notice])

    # Then nothing is added: the same e-mail notification comes back
    assert [n.id for n in again] == [n.id for n in first]
    assert Notification.objects.count() == 1


def test_an_event_twice_in_one_batch_is_notified_once_per_channel():
    customer = _customer_on("email", "push")
    notice = _notice(customer)

    first, second = notifications_create_for_order_changes(notices=[notice, notice])

    assert _channels_of(first) == _channels_of(second) == [C.EMAIL, C.PUSH]
    assert Notification.objects.count() == 2


def _queries_for(customers: list) -> int:  # type: ignore[type-arg]
    notices = [_notice(customer) for customer in customers]
    with CaptureQueriesContext(connection) as queries:
        notifications_create_for_order_changes(notices=notices)
    return len(queries)


def test_a_batch_costs_the_same_queries_whatever_its_size_and_channels():
    # Given one customer, and twenty with every mix of channels
    one = [_customer_on("email", "sms", "push")]
    many = [
        _customer_on(*mix)
        for mix in [("email",), ("sms",), ("push",), ("email", "sms", "push"), ()] * 4
    ]

    # Then notifying one transition each costs as many queries for twenty as for one
    assert _queries_for(many) == _queries_for(one)
