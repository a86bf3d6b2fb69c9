import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from orders.status import OrderStatus


class SalesChannel(models.TextChoices):
    """Where an order was placed (the API accepts these; events carry the name)."""

    WEB = "web", "Web shop"
    MOBILE_APP = "mobile_app", "Mobile app"
    MARKETPLACE = "marketplace", "Marketplace"


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING, db_index=True
    )
    status_reason = models.CharField(max_length=200, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The number of statuses the order has had: 1 when placed, one more with every move, so
    # always the count of its `orders.created` and `orders.<status>` events. The live status
    # stream (GET /api/orders/{id}/events/) sends it as each event's id.
    status_seq = models.PositiveIntegerField(default=1)
    # Wider than a price: up to 100 lines of 1000 units each must always fit.
    total = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Client-chosen key that makes a retried POST return this order instead of a new one.
    # NULL (not "") for "no key": the partial unique constraint below ignores NULLs.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # Opaque token from the client's payment form; never a card number.
    payment_token = models.CharField(max_length=100, blank=True)
    sales_channel = models.CharField(
        max_length=32, choices=SalesChannel.choices, default=SalesChannel.WEB
    )
    # The `ShippingAddress` of the orders.created contract, as validated; NULL when the order
    # ships nowhere (pick-up, digital). Stored whole: it is read whole and never queried.
    shipping_address = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="order_idempotency_key_once_per_customer",
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="order_total_gte_0"),
        ]
        indexes = [
            # The risk check's velocity counts: a customer's orders, and any orders paid
            # with one token, within a window (orders.selectors, "reads for the risk check").
            models.Index(fields=["customer", "created_at"], name="order_customer_created"),
            models.Index(
                fields=["payment_token", "created_at"],
                name="order_token_created",
                condition=~Q(payment_token=""),
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.id} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64)
    product_name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    # Captured at order time: later price changes never alter an existing order.
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sku"], name="order_line_sku_once_per_order"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_line_quantity_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} x{self.quantity}"

    @property
    def line_total(self):  # type: ignore[no-untyped-def]
        return self.unit_price * self.quantity


class Payment(models.Model):
    """The charge of one order: at most one per order, refunded at most once."""

    class Status(models.TextChoices):
        CAPTURED = "captured", "Captured"
        FAILED = "failed", "Failed"
        REFUNDED = "refunded", "Refunded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="payment")
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices)
    provider = models.CharField(max_length=50)
    provider_reference = models.CharField(max_length=100, blank=True)
    failure_reason = models.CharField(max_length=200, blank=True)
    refund_reference = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The risk check counts recent declines for every order it assesses: a small
            # index of the failed ones, so that count never scans the payments table.
            models.Index(
                fields=["created_at"], condition=Q(status="failed"), name="payment_failed_created"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} for {self.order_id} ({self.status})"


class FakeGatewayTransaction(models.Model):
    """The fake payment provider's own ledger (stands in for the provider's records).

    Keyed by the idempotency key we send, like a real provider: a retried call returns
    the first result and never moves money twice. Tests count rows here to prove it.
    """

    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    reference = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    currency = models.CharField(max_length=3)
    succeeded = models.BooleanField()
    decline_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} ({'ok' if self.succeeded else 'declined'})"


class Shipment(models.Model):
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="shipment")
    carrier = models.CharField(max_length=50)
    tracking_number = models.CharField(max_length=50, unique=True)
    shipped_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.carrier} {self.tracking_number}"
