import uuid

from django.conf import settings
from django.db import models


class Notification(models.Model):
    class Kind(models.TextChoices):
        ORDER_CONFIRMED = "order_confirmed", "Order confirmed"
        OUT_OF_STOCK = "out_of_stock", "Out of stock"
        PAYMENT_RECEIVED = "payment_received", "Payment received"
        PAYMENT_FAILED = "payment_failed", "Payment failed"
        SHIPPED = "shipped", "Shipped"
        DELIVERED = "delivered", "Delivered"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        SMS = "sms", "SMS"
        PUSH = "push", "Web Push"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    order_id = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=40, choices=Kind.choices)
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.EMAIL)
    # E-mail: subject and body; SMS: the text in `body`, no subject; push: title and body.
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    # What it was last sent to: an e-mail address, a phone number, or how many push
    # subscriptions (set on delivery).
    recipient = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The event that caused this notification; unique with the channel, so that a redelivery
    # adds none, whatever the customer's channels.
    event_id = models.UUIDField()
    # The causing event's correlation id: the e-mail's log line names it (docs/operations.md),
    # so one id leads from the HTTP request to the e-mail.
    correlation_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id", "channel"], name="notification_once_per_event_and_channel"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} by {self.get_channel_display()} → {self.customer} "
            f"({self.status})"
        )


class NotificationPreferences(models.Model):
    """How a customer wants to hear about their orders. A customer without a row has the
    defaults: e-mail on, SMS and push off. SMS needs a phone number and push a registered
    subscription (`PushSubscription`) before they can be turned on."""

    customer = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notification_preferences",
    )
    email_enabled = models.BooleanField("e-mail", default=True)
    sms_enabled = models.BooleanField("SMS", default=False)
    push_enabled = models.BooleanField("push", default=False)
    # E.164, e.g. +4915112345678; empty: none.
    phone_number = models.CharField(max_length=16, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "notification preferences"
        verbose_name_plural = "notification preferences"

    def __str__(self) -> str:
        return f"notification preferences of {self.customer}"


class PushSubscription(models.Model):
    """One browser's Web Push subscription, as its Push API hands it over: the push
    service's endpoint and the keys to encrypt for it. Removed when the push service
    answers that it is gone (404 or 410)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    endpoint = models.CharField(max_length=1000)
    # The browser's P-256 public key and auth secret, base64url as the browser gives them.
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "endpoint"], name="push_subscription_once_per_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"push subscription of {self.customer}"


class RecordedMessage(models.Model):
    """What a recording channel backend would have sent (local runs and tests use them
    instead of a provider): staff read them in the admin."""

    channel = models.CharField(max_length=20, choices=Notification.Channel.choices)
    # The e-mail address, phone number or push endpoint.
    recipient = models.CharField(max_length=1000)
    subject = models.CharField(max_length=200, blank=True)
    body = models.TextField()
    # What the real backend would have put on the wire, as JSON (the SMS provider's request
    # body, the push payload before encryption).
    payload = models.JSONField(default=dict, blank=True)
    notification = models.ForeignKey(
        Notification, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} to {self.recipient}"
