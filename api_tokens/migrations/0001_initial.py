"""API tokens, in an app of their own. Databases made before the move hold the table as
`ecommerce_apitoken` (the tokens lived in the project package): it is renamed, rows kept, so
every issued token keeps working. A new database gets the table created."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

TABLE_BEFORE_THE_MOVE = "ecommerce_apitoken"


def adopt_or_create_table(apps, schema_editor):  # type: ignore[no-untyped-def]
    api_token = apps.get_model("api_tokens", "ApiToken")
    if TABLE_BEFORE_THE_MOVE in schema_editor.connection.introspection.table_names():
        schema_editor.alter_db_table(api_token, TABLE_BEFORE_THE_MOVE, api_token._meta.db_table)
    else:
        schema_editor.create_model(api_token)


def drop_table(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.delete_model(apps.get_model("api_tokens", "ApiToken"))


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('digest', models.CharField(editable=False, max_length=64, unique=True)),
                ('prefix', models.CharField(editable=False, max_length=8)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('expires_at', models.DateTimeField(blank=True, help_text='Empty: never expires.', null=True)),
                ('revoked_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ('-created_at',),
            },
        )]),
        migrations.RunPython(adopt_or_create_table, drop_table),
    ]
