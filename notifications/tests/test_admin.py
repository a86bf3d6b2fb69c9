"""The notifications admin: staff read what the recording backends "sent", edit a
customer's channel preferences through the API's rules, and see and remove push
subscriptions."""

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import Notification, NotificationPreferences, RecordedMessage
from notifications.services import (
    notification_create_for_order_change,
    notification_preferences_update,
)
from notifications.tasks import notification_deliver
from orders.events import OrderStatusChangedV1
from testing.factories import customer_create, push_subscription_register_for

pytestmark = pytest.mark.django_db


def _rows(response) -> list:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def test_staff_read_the_sms_and_push_the_recording_backends_kept(admin_client: Client):
    # Given a customer on SMS and push whose payment notification was delivered
    customer = customer_create()
    push_subscription_register_for(customer)
    notification_preferences_update(
        customer=customer,
        email_enabled=False,
        sms_enabled=True,
        push_enabled=True,
        phone_number="+4915112345678",
    )
    order_id = uuid.uuid4()
    notification_create_for_order_change(
        change=OrderStatusChangedV1(
            order_id=order_id, customer_id=customer.pk, previous_status="reserved", status="paid"
        ),
        event_id=uuid.uuid4(),
    )
    for notification in Notification.objects.all():
        notification_deliver.apply(args=[notification.id])

    # When staff open Recorded messages, and filter on SMS
    url = reverse("admin:notifications_recordedmessage_changelist")
    everything = admin_client.get(url)
    sms_only = _rows(admin_client.get(url, {"channel__exact": "sms"}))

    # Then both messages are listed, with their text, linked to their notifications
    assert {m.channel for m in _rows(everything)} == {"sms", "push"}
    assert [m.recipient for m in sms_only] == ["+4915112345678"]
    page = everything.content.decode()
    assert f"Shop: payment received for order {str(order_id)[:8]}" in page
    sms = RecordedMessage.objects.get(channel="sms")
    assert reverse("admin:notifications_notification_change", args=[sms.notification_id]) in page
    detail = admin_client.get(reverse("admin:notifications_recordedmessage_change", args=[sms.pk]))
    assert detail.status_code == 200


def test_recorded_messages_are_view_only(admin_client: Client):
    add = admin_client.get(reverse("admin:notifications_recordedmessage_add"))

    assert add.status_code == 403


def test_staff_change_preferences_by_the_same_rules_as_the_api(admin_client: Client):
    # Given a customer's preferences
    customer = customer_create()
    preferences = notification_preferences_update(
        customer=customer, email_enabled=True, sms_enabled=False, push_enabled=False
    )
    url = reverse("admin:notifications_notificationpreferences_change", args=[customer.pk])
    form = {"email_enabled": "on", "sms_enabled": "on", "phone_number": ""}

    # When staff turn SMS on without a number, then with a national one, then an E.164 one
    without = admin_client.post(url, form)
    national = admin_client.post(url, {**form, "phone_number": "015112345678"})
    valid = admin_client.post(url, {**form, "phone_number": "+4915112345678"})

    # Then the first two are refused on the phone number field, the third saved
    for refused in (without, national):
        assert refused.status_code == 200
        assert "phone_number" in refused.context["adminform"].form.errors
    assert valid.status_code == 302
    preferences.refresh_from_db()
    assert (preferences.sms_enabled, preferences.phone_number) == (True, "+4915112345678")


def test_staff_cannot_turn_push_on_for_a_customer_without_a_subscription(admin_client: Client):
    customer = customer_create()
    add = reverse("admin:notifications_notificationpreferences_add")

    response = admin_client.post(
        add, {"customer": customer.pk, "email_enabled": "on", "push_enabled": "on"}
    )

    assert "push_enabled" in response.context["adminform"].form.errors
    assert not NotificationPreferences.objects.exists()


def test_staff_see_and_delete_push_subscriptions(admin_client: Client):
    subscription, _ = push_subscription_register_for(customer_create())
    url = reverse("admin:notifications_pushsubscription_changelist")

    assert _rows(admin_client.get(url)) == [subscription]
    delete = reverse("admin:notifications_pushsubscription_delete", args=[subscription.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert _rows(admin_client.get(url)) == []
