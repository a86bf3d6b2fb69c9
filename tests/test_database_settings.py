"""On PostgreSQL, parameters are bound server-side and a statement a connection runs often is
prepared on it; a deployment behind a transaction pooler turns preparing off. The settings
are read in a fresh process, from the environment, as a deployment reads them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from orders.models import Order

REPO_ROOT = Path(__file__).resolve().parents[1]

PRINT_OPTIONS = (
    "import django, json; django.setup(); from django.conf import settings; "
    "print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
)


def _settings_read(**environment: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_OPTIONS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_on_its_connection():
    # Given the same read run more often than the threshold on one connection
    for _ in range(connection.settings_dict["OPTIONS"]["prepare_threshold"] + 1):
        list(Order.objects.filter(customer_id=0).values_list("id"))

    # Then PostgreSQL holds it prepared, with its parameter bound apart from the text
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    orders = [s for s in prepared if Order._meta.db_table in s and "customer_id" in s]
    assert orders, prepared
    assert "$1" in orders[0]


def test_preparing_can_be_turned_off_for_a_transaction_pooler():
    result = _settings_read(DATABASE_PREPARE_THRESHOLD="none")

    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    assert options["prepare_threshold"] is None
    assert options["server_side_binding"] is True


def test_a_threshold_that_is_not_a_number_is_refused_in_one_line():
    result = _settings_read(DATABASE_PREPARE_THRESHOLD="often")

    assert result.returncode != 0
    assert (
        "DATABASE_PREPARE_THRESHOLD must be a whole number or 'none', not 'often'"
        in result.stderr.splitlines()[-1]
    )
