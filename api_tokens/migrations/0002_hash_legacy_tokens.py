"""Existing DRF authtoken tokens (stored in clear) become hashed ApiTokens, so clients keep
working, and their clear copies are deleted. The emptied `authtoken_token` table is left in
place (rest_framework.authtoken is no longer installed); drop it by hand when no rollback to
the old code is needed. The new tokens expire like any new one (API_TOKEN_TTL_DAYS)."""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    days = settings.API_TOKEN_TTL_DAYS
    expires_at = timezone.now() + timedelta(days=days) if days else None
    api_token = apps.get_model("api_tokens", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {LEGACY_TABLE}")
        api_token.objects.bulk_create(
            api_token(
                digest=hashlib.sha256(key.encode()).hexdigest(),
                prefix=key[:8],
                user_id=user_id,
                expires_at=expires_at,
            )
            for key, user_id in cursor.fetchall()
        )
        cursor.execute(f"DELETE FROM {LEGACY_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("api_tokens", "0001_initial")]

    # Irreversible in substance (the clear keys are gone); going back leaves the rows.
    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
