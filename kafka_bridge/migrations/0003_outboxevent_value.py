"""Store each outbox event's message bytes (`value`) instead of its JSON envelope.

The backfill writes the bytes the relay used to send for an envelope (compact json.dumps), so
rows published before and after the migration read the same; it is reversible.
"""

import json

from django.db import migrations, models

CHUNK = 1000


def envelope_to_value(apps, schema_editor):
    OutboxEvent = apps.get_model("kafka_bridge", "OutboxEvent")
    rows = []
    for row in OutboxEvent.objects.only("id", "envelope").iterator(chunk_size=CHUNK):
        row.value = json.dumps(row.envelope, separators=(",", ":")).encode()
        rows.append(row)
        if len(rows) == CHUNK:
            OutboxEvent.objects.bulk_update(rows, ["value"])
            rows = []
    OutboxEvent.objects.bulk_update(rows, ["value"])


def value_to_envelope(apps, schema_editor):
    OutboxEvent = apps.get_model("kafka_bridge", "OutboxEvent")
    rows = []
    for row in OutboxEvent.objects.only("id", "value").iterator(chunk_size=CHUNK):
        row.envelope = json.loads(bytes(row.value))
        rows.append(row)
        if len(rows) == CHUNK:
            OutboxEvent.objects.bulk_update(rows, ["envelope"])
            rows = []
    OutboxEvent.objects.bulk_update(rows, ["envelope"])


class Migration(migrations.Migration):

    dependencies = [
        ("kafka_bridge", "0002_alter_outboxevent_event_id_deadletter_and_more"),
    ]

    # Each step is undone in reverse order, so the envelope is refilled before it becomes
    # NOT NULL again.
    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="value",
            field=models.BinaryField(null=True),
        ),
        migrations.AlterField(
            model_name="outboxevent",
            name="envelope",
            field=models.JSONField(null=True),
        ),
        migrations.RunPython(envelope_to_value, value_to_envelope, elidable=True),
        migrations.AlterField(
            model_name="outboxevent",
            name="value",
            field=models.BinaryField(
                help_text="The message value sent to Kafka: the JSON envelope."
            ),
        ),
        migrations.RemoveField(
            model_name="outboxevent",
            name="envelope",
        ),
    ]
