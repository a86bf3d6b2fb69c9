"""Webhook endpoints, the deliveries of order events to them and every attempt made.

A delivery is one (endpoint, event): its body is fixed when the event is recorded, so every
attempt sends the same bytes, signed afresh with the attempt's timestamp.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from webhooks.status import DeliveryStatus, EndpointStatus


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.CharField(max_length=2000)
    # Event type names, or ["*"] for every order event.
    event_types = models.JSONField(default=list)
    # `whsec_` + base64 of 32 random bytes: the HMAC key of the signatures. Kept in clear
    # because signing needs it; shown once, at creation, and never in lists or logs.
    secret = models.CharField(max_length=100)
    status = models.CharField(
        max_length=20, choices=EndpointStatus.choices, default=EndpointStatus.ACTIVE
    )
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The current streak of failed attempts (reset by a success), and when it began.
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url

    def subscribes_to(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    order_id = models.UUIDField()
    # The `webhook-id` header: one per event, the same on every attempt and every endpoint.
    message_id = models.CharField(max_length=64)
    # The JSON body, exactly as sent.
    body = models.TextField()
    status = models.CharField(
        max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set while a dispatcher sends it; another dispatcher may take it over after this.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhook_delivery_once_per_event"
            ),
        ]
        indexes = [
            # What is due: the dispatcher's scan.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status=DeliveryStatus.PENDING),
            ),
            # An earlier pending delivery of the same order to the same endpoint holds a
            # later one back.
            models.Index(
                fields=["endpoint", "order_id", "id"],
                name="webhook_delivery_order_queue",
                condition=Q(status=DeliveryStatus.PENDING),
            ),
            models.Index(fields=["order_id"], name="webhook_delivery_order"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} of {str(self.order_id)[:8]} → {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what came back and how long it took."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "2xx"
        HTTP_ERROR = "http_error", "Non-2xx answer"
        TIMEOUT = "timeout", "Timed out"
        REFUSED = "refused", "Address refused"
        CONNECTION_ERROR = "connection_error", "Connection failed"

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField()
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["delivery", "number"], name="webhook_attempt_delivery")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.outcome}"
