"""One multi-row INSERT that stays cheap for the client at consumer-batch sizes.

Django's psycopg backend binds parameters client-side: a VALUES list of 500 rows by 13
columns is a statement of 6,500 placeholders that psycopg parses and quotes one by one in
Python, which cost more CPU than PostgreSQL spent inserting the rows (measured on the
outbox: about 65 ms of 95 ms per 500 events). `bulk_create` avoids that with UNNEST, but
not for models with a BinaryField, such as the outbox. Here PostgreSQL gets a short,
constant statement with one array per column; other databases (SQLite for `make run`)
get the plain VALUES list.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection, models


def rows_insert(
    model: type[models.Model],
    field_names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    suffix: str = "",
) -> list[tuple[Any, ...]]:
    """Insert `rows` (values in `field_names` order) into `model`'s table in one statement;
    `suffix` follows it (ON CONFLICT, RETURNING). Returns the RETURNING rows.

    Values are plain Python values of the fields' types (str, int, bytes, UUID, Decimal,
    aware datetime): PostgreSQL gets them as they are, other databases through the fields'
    own preparation."""
    if not rows:
        return []
    fields = [model._meta.get_field(name) for name in field_names]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    if connection.vendor == "postgresql":
        # psycopg adapts str, int, bytes, UUID, Decimal and aware datetimes as they are;
        # the fields' per-value preparation was a third of this function's time.
        # db_type without its length, e.g. varchar[] rather than varchar(100)[].
        arrays = ", ".join(f"%s::{field.db_type(connection).split('(')[0]}[]" for field in fields)
        sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"
        params: list[Any] = [list(column) for column in zip(*rows, strict=True)]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([placeholders] * len(rows))
        params = [
            field.get_db_prep_save(value, connection)
            for row in rows
            for field, value in zip(fields, row, strict=True)
        ]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} {suffix}".rstrip(), params)
        return cursor.fetchall() if "RETURNING" in suffix.upper() else []
