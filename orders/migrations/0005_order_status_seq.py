"""Order.status_seq: the number of statuses each order has had, counted from the events
recorded about it (the outbox and what retention archived), as the services keep it from now
on: one for `orders.created`, one more for each `orders.<status>`."""

from collections import Counter

from django.db import migrations, models

ORDER_EVENT_TYPES = (
    "orders.created",
    "orders.reserved",
    "orders.rejected",
    "orders.paid",
    "orders.payment_failed",
    "orders.shipped",
    "orders.delivered",
    "orders.cancelled",
    "orders.expired",
)


def status_seq_count(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    OutboxEvent = apps.get_model("kafka_bridge", "OutboxEvent")
    ArchivedEvent = apps.get_model("kafka_bridge", "ArchivedEvent")
    counts: Counter[str] = Counter()
    seen: set = set()
    for model in (ArchivedEvent, OutboxEvent):
        rows = (
            model.objects.filter(event_type__in=ORDER_EVENT_TYPES)
            .order_by()
            .values_list("aggregate_id", "event_id")
        )
        for aggregate_id, event_id in rows.iterator(chunk_size=5000):
            if event_id not in seen:  # a replayed dead letter is recorded again, same id
                seen.add(event_id)
                counts[aggregate_id] += 1
    by_count: dict[int, list[str]] = {}
    for aggregate_id, count in counts.items():
        if count > 1:  # 1 is the default
            by_count.setdefault(count, []).append(aggregate_id)
    for count, ids in by_count.items():
        for start in range(0, len(ids), 1000):
            Order.objects.filter(id__in=ids[start : start + 1000]).update(status_seq=count)


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0004_order_sales_channel_shipping_address"),
        ("kafka_bridge", "0005_archived_event"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="status_seq",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.RunPython(status_seq_count, migrations.RunPython.noop),
    ]
