"""The read side's tables. Every row here is derived from events (Kafka topics) alone, and
can be thrown away and built again by replaying them; nothing here is written by the
domain apps' services.

- Orders per minute: the aggregator's working state (`OrderRateWatermark`,
  `OrderRateWindowState`), and the table fed by its output topic (`OrderRateWindow`), which
  the staff API and the admin read.
- Read models (`OrderFacts`, `ProductDailySales`, `CustomerOrderSummary`): every row belongs
  to a generation; `ReadModelState.live_generation` says which one readers see. A rebuild
  fills a new generation from the topics and swaps it in (`reporting.rebuild`).
"""

from django.db import models
from django.db.models import F, Q

from reporting.windows import WINDOW, WindowState


class OrderRateCounts(models.Model):
    """A window's figures, as the aggregator keeps them and as the topic carries them."""

    window_start = models.DateTimeField(unique=True)
    orders = models.PositiveIntegerField(default=0)
    late_orders = models.PositiveIntegerField(
        default=0, help_text="Arrived after the window closed, within the allowed lateness."
    )
    too_late_orders = models.PositiveIntegerField(
        default=0, help_text="Arrived beyond the allowed lateness: counted apart, not in orders."
    )
    # Bumped by the aggregator each time a reader must see the window again.
    revision = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["-window_start"]

    @property
    def window_end(self):  # type: ignore[no-untyped-def]
        return self.window_start + WINDOW


class OrderRateWatermark(models.Model):
    """The aggregator's event-time clock: the latest `occurred_at` it has counted. One row,
    locked by every batch, so instances of the aggregator apply their batches one at a time."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    event_time = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"watermark {self.event_time}"


class OrderRateWindowState(OrderRateCounts):
    """The aggregator's own state of one window (readers use OrderRateWindow). Committed
    with the events' ProcessedEvent marks, before anything is published: a crash loses
    nothing, and a revision above `published_revision` is still to be published."""

    state = models.CharField(max_length=10, choices=WindowState.choices, default=WindowState.OPEN)
    published_revision = models.PositiveIntegerField(default=0)

    class Meta(OrderRateCounts.Meta):
        indexes = [
            models.Index(
                fields=["window_start"],
                name="order_rate_unpublished_idx",
                condition=Q(revision__gt=F("published_revision")),
            ),
            models.Index(
                fields=["window_start"],
                name="order_rate_open_idx",
                condition=Q(state=WindowState.OPEN),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.window_start:%Y-%m-%d %H:%M} {self.state}: {self.orders}"


class OrderRateWindow(OrderRateCounts):
    """One window as published on `metrics.order.rate`, kept by the order_rate_windows
    consumer (the highest revision wins). The staff API and the admin read this."""

    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.window_start:%Y-%m-%d %H:%M}: {self.orders} orders"


class ReadModelState(models.Model):
    """Which generation of the read-model tables readers and the live consumer use. One
    row: the live consumer holds a shared lock on it for each batch, a swap an exclusive one."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    live_generation = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"generation {self.live_generation} is live"


class ReadModelRebuild(models.Model):
    """One run of `manage.py rebuild_read_models` (states: reporting.rebuild)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SWAPPED = "swapped", "Swapped in"
        FAILED = "failed", "Failed"

    generation = models.PositiveIntegerField(unique=True)
    consumer_group = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    messages_read = models.PositiveBigIntegerField(default=0)
    events_applied = models.PositiveBigIntegerField(default=0)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-generation"]

    def __str__(self) -> str:
        return f"rebuild of generation {self.generation} ({self.status})"


class GenerationRow(models.Model):
    generation = models.PositiveIntegerField()

    class Meta:
        abstract = True


class OrderFacts(GenerationRow):
    """What the events have said about one order: the read models' memory of it, from which
    every change to the report tables is computed."""

    order_id = models.UUIDField()
    customer_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    total = models.DecimalField(max_digits=18, decimal_places=2)
    # [{"sku", "quantity", "unit_price"}] as orders.created carried them.
    lines = models.JSONField()
    status = models.CharField(max_length=20)
    placed_at = models.DateTimeField()
    status_changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["generation", "order_id"], name="order_facts_once"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.status})"


class ProductDailySales(GenerationRow):
    """Sales of one product on one day (UTC, event time): an order counts as sold on the day
    it was paid, and as refunded on the day a paid order was cancelled."""

    day = models.DateField()
    sku = models.CharField(max_length=64)
    currency = models.CharField(max_length=3)
    units_sold = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    units_refunded = models.PositiveIntegerField(default=0)
    refunds = models.DecimalField(max_digits=18, decimal_places=2, default=0)

    class Meta:
        ordering = ["-day", "sku"]
        verbose_name_plural = "product daily sales"
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "day", "sku", "currency"], name="product_daily_sales_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.sku}: {self.units_sold} sold"


class CustomerOrderSummary(GenerationRow):
    """One customer's orders: how many are in each status, and their lifetime value (paid
    orders, less refunds)."""

    customer_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    orders_placed = models.PositiveIntegerField(default=0)
    # {status: number of this customer's orders now in it}; statuses with none are left out.
    orders_by_status = models.JSONField(default=dict)
    lifetime_value = models.DecimalField(max_digits=18, decimal_places=2, default=0)
    first_order_at = models.DateTimeField(null=True)
    last_order_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-lifetime_value", "customer_id"]
        verbose_name_plural = "customer order summaries"
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "customer_id"], name="customer_order_summary_once"
            ),
        ]

    def __str__(self) -> str:
        return f"customer {self.customer_id}: {self.orders_placed} orders"
