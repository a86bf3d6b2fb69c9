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
    subject = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The event that caused this notification; unique so a redelivery cannot add a second.
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
                fields=["event_id", "kind", "channel"], name="notification_once_per_event"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} → {self.customer} ({self.status})"


class OrderShippingAddress(models.Model):
    """Where an order ships, copied from its orders.created event: the e-mails name it, and
    this consumer learns about orders from their events only, never from the orders tables.
    Orders that ship nowhere (and V1 events, which had no address) have no row."""

    order_id = models.UUIDField(primary_key=True)
    # An `orders.events.ShippingAddress`, as the event carried it.
    address = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"shipping address of {self.order_id}"
