"""Plain statements for hot paths: multi-row INSERT and UPDATE that stay cheap for the
client at consumer-batch sizes, and the columns of a SELECT written once per process.

Django's psycopg backend binds parameters client-side: a VALUES list of 500 rows by 13
columns is a statement of 6,500 placeholders that psycopg parses and quotes one by one in
Python, which cost more CPU than PostgreSQL spent inserting the rows (measured on the
outbox: about 65 ms of 95 ms per 500 events). `bulk_create` avoids that with UNNEST, but
not for models with a BinaryField, such as the outbox. Here PostgreSQL gets a short,
constant statement with one array per column, in PostgreSQL's binary format; other
databases (SQLite for `make run`) get the plain VALUES list. A single row, the common case
at everyday rates where most consumer batches hold one event, goes as one row of scalar
parameters instead: psycopg adapts each array in Python (finding its element type, then
writing element by element), which cost more than the row's whole INSERT or UPDATE on
PostgreSQL.

A queryset is compiled again on every call, which for a small read can cost more CPU than
the read itself; a statement run for every request or batch can be written once per
process instead, its rows converted by `Columns` as a queryset would convert them.
"""

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import connection, models

Converter = Callable[[Any, Any, Any], Any]
Row = TypeVar("Row", bound=models.Model)


@dataclass(frozen=True)
class Columns:
    """A model's fields as selected, with the database backend's converters (the ones a
    queryset would apply: SQLite, say, returns naive datetimes and UUIDs as hex)."""

    alias: str
    fields: "Sequence[models.Field[Any, Any]]"

    def __len__(self) -> int:
        return len(self.fields)

    def sql(self) -> list[str]:
        quote = connection.ops.quote_name
        return [f"{self.alias}.{quote(field.column)}" for field in self.fields]

    @functools.cached_property
    def _converters(self) -> list[tuple[Any, list[Converter]]]:
        columns = [field.get_col(self.alias) for field in self.fields]
        return [
            (
                column,
                connection.ops.get_db_converters(column) + column.get_db_converters(connection),
            )
            for column in columns
        ]

    def values(self, row: Sequence[Any]) -> list[Any]:
        """The fields' values in `row` (one value per field, in order), as Python values."""
        converted = []
        for value, (column, converters) in zip(row, self._converters, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            converted.append(value)
        return converted

    def instance(self, model: type[models.Model], row: Sequence[Any]) -> Any:
        return model.from_db(connection.alias, [f.attname for f in self.fields], self.values(row))


def in_list_sql(placeholder: str, vendor: str) -> str:
    """`<column> <this>`: the column is one of a list passed as the single parameter
    `placeholder` (`in_list_param`), so that a statement written once serves any number
    of values: an array on PostgreSQL, a JSON list elsewhere (SQLite, for `make run`)."""
    if vendor == "postgresql":
        return f"= ANY({placeholder})"
    return f"IN (SELECT value FROM json_each({placeholder}))"


def in_list_param(field: "models.Field[Any, Any]", values: Iterable[Any]) -> Any:
    """The parameter of `in_list_sql` for these values of `field`."""
    if connection.vendor == "postgresql":
        return list(values)
    return json.dumps([field.get_db_prep_value(value, connection) for value in values])


@dataclass(frozen=True)
class RowWithUser:
    """One row of a model found by a column's value, with the user its foreign key names:
    a statement written once per process (`row_with_user`)."""

    model: type[models.Model]
    sql: str
    fields: Columns
    user_fields: Columns

    def fetch(self, value: Any) -> tuple[Any, Any] | None:
        """(the instance, its user), or None if no row has that value."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [value])
            row = cursor.fetchone()
        if row is None:
            return None
        split = len(self.fields)
        instance = self.fields.instance(self.model, row[:split])
        user = self.user_fields.instance(get_user_model(), row[split:])
        return instance, user


@functools.cache
def row_with_user(
    model: type[models.Model], *, user_field: str, by: str, lock: bool = False
) -> RowWithUser:
    """The statement of `model`'s row whose `by` field equals a value, joined to the user
    of its `user_field`; with `lock`, the row (not the user) is locked until the
    transaction ends (SQLite has no row locks: a write locks the database)."""
    user_model = get_user_model()
    quote = connection.ops.quote_name
    fields = Columns("t", model._meta.concrete_fields)
    user_fields = Columns("u", user_model._meta.concrete_fields)
    locks = lock and connection.features.has_select_for_update_of
    sql = (
        f"SELECT {', '.join(fields.sql() + user_fields.sql())} "
        f"FROM {quote(model._meta.db_table)} t "
        f"JOIN {quote(user_model._meta.db_table)} u "
        f"ON u.{quote(user_model._meta.pk.column)} = "
        f"t.{quote(model._meta.get_field(user_field).column)} "
        f"WHERE t.{quote(model._meta.get_field(by).column)} = %s"
        f"{' FOR UPDATE OF t' if locks else ''}"
    )
    return RowWithUser(model, sql, fields, user_fields)


def rows_where_in(
    model: type[Row], field_name: str, values: Iterable[Any], *, lock: bool = False
) -> list[Row]:
    """`model`'s rows whose `field_name` is one of `values`, in primary-key order; with
    `lock`, locked until the transaction ends (in that order, so that two batches locking
    the same rows queue instead of deadlocking). The statement is written once per process:
    this is the read every consumer batch starts with, and compiling it as a queryset cost
    more CPU than running it."""
    field = model._meta.get_field(field_name)
    columns, sql = _where_in_statement(model, field_name, connection.vendor, lock=lock)
    with connection.cursor() as cursor:
        cursor.execute(sql, [in_list_param(field, values)])
        return [columns.instance(model, row) for row in cursor.fetchall()]


@functools.cache
def _where_in_statement(
    model: type[models.Model], field_name: str, vendor: str, *, lock: bool
) -> tuple[Columns, str]:
    quote = connection.ops.quote_name
    columns = Columns("t", model._meta.concrete_fields)
    column = quote(model._meta.get_field(field_name).column)
    pk = model._meta.pk
    assert pk is not None
    locks = lock and connection.features.has_select_for_update
    sql = (
        f"SELECT {', '.join(columns.sql())} FROM {quote(model._meta.db_table)} t "
        f"WHERE t.{column} {in_list_sql('%s', vendor)} ORDER BY t.{quote(pk.column)}"
        f"{' FOR UPDATE' if locks else ''}"
    )
    return columns, sql


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
    aware datetime, and what a JSONField holds): PostgreSQL gets them as they are (JSON as
    text, cast), other databases through the fields' own preparation."""
    if not rows:
        return []
    single = connection.vendor == "postgresql" and len(rows) == 1
    fields, sql = _insert_statement(model, tuple(field_names), connection.vendor, single=single)
    params: list[Any]
    if single:
        params = [_param(field, value) for field, value in zip(fields, rows[0], strict=True)]
    elif connection.vendor == "postgresql":
        # psycopg adapts str, int, bytes, UUID, Decimal and aware datetimes as they are (the
        # fields' per-value preparation was a third of this function's time); JSON goes as
        # text and is cast back, as in rows_update: psycopg adapts no list of documents as
        # jsonb[] by itself.
        params = [
            [_param(field, v) for v in column] if _is_json(field) else list(column)
            for field, column in zip(fields, zip(*rows, strict=True), strict=True)
        ]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql += " VALUES " + ", ".join([placeholders] * len(rows))
        params = [
            field.get_db_prep_save(value, connection)
            for row in rows
            for field, value in zip(fields, row, strict=True)
        ]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} {suffix}".rstrip(), params)
        return cursor.fetchall() if "RETURNING" in suffix.upper() else []


@functools.cache
def _insert_statement(
    model: type[models.Model], field_names: tuple[str, ...], vendor: str, *, single: bool
) -> tuple[list[models.Field], str]:
    """The fields and the statement of `rows_insert` for one table and column list, built
    once per process (a consumer inserts into the same few tables batch after batch; the
    building was a few per cent of its CPU). Other databases get the head of the INSERT:
    the VALUES list depends on the rows."""
    fields = [model._meta.get_field(name) for name in field_names]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    if vendor != "postgresql":
        return fields, f"INSERT INTO {table} ({columns})"
    if single:
        values = ", ".join(_scalar_placeholder(field) for field in fields)
        return fields, f"INSERT INTO {table} ({columns}) VALUES ({values})"
    arrays = [_array_placeholder(field) for field in fields]
    selected = [
        f"v.c{i}::jsonb" if _is_json(field) else f"v.c{i}" for i, field in enumerate(fields)
    ]
    names = ", ".join(f"c{index}" for index in range(len(fields)))
    return fields, (
        f"INSERT INTO {table} ({columns}) SELECT {', '.join(selected)} "
        f"FROM unnest({', '.join(arrays)}) AS v({names})"
    )


def rows_update(
    model: type[models.Model], rows: Sequence[models.Model], field_names: Sequence[str]
) -> None:
    """Save `field_names` of `rows` (instances with a primary key) in one statement.

    Django's `bulk_update` writes one CASE WHEN per row per field, and building those
    expressions cost more CPU than PostgreSQL spent on the update (72% of the read-models
    consumer's time at saturation). On PostgreSQL this sends `UPDATE … FROM unnest(…)`: one
    array per column, joined on the primary key (one row: a plain UPDATE of that row).
    Other databases get `bulk_update`."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(rows, field_names)
        return
    single = len(rows) == 1
    fields, sql = _update_statement(model, tuple(field_names), single=single)
    params: list[Any]
    if single:
        row = rows[0]
        params = [_param(field, getattr(row, field.attname)) for field in fields]
        params.append(row.pk)
    else:
        params = [[row.pk for row in rows]]
        for field in fields:
            values = [getattr(row, field.attname) for row in rows]
            if _is_json(field):
                # sent as text, cast back: psycopg adapts a list of dicts as no jsonb[]
                values = [_param(field, v) for v in values]
            elif field.get_internal_type() == "DecimalField":
                # an unsaved default may still be the int 0: psycopg refuses mixed lists
                values = [field.to_python(value) for value in values]
            params.append(values)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.cache
def _update_statement(
    model: type[models.Model], field_names: tuple[str, ...], *, single: bool
) -> tuple[list[models.Field], str]:
    """The fields and the PostgreSQL statement of `rows_update` for one table and field
    list, built once per process."""
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    pk = model._meta.pk
    assert pk is not None
    fields = [model._meta.get_field(name) for name in field_names]
    if single:
        assignments = [f"{quote(f.column)} = {_scalar_placeholder(f)}" for f in fields]
        where = f"WHERE {quote(pk.column)} = %s"
        return fields, f"UPDATE {table} SET {', '.join(assignments)} {where}"
    arrays = [_array_placeholder(pk)]
    assignments = []
    for index, field in enumerate(fields):
        arrays.append(_array_placeholder(field))
        cast = "::jsonb" if _is_json(field) else ""
        assignments.append(f"{quote(field.column)} = v.c{index}{cast}")
    columns = ", ".join(["pk", *(f"c{index}" for index in range(len(fields)))])
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "
        f"FROM unnest({', '.join(arrays)}) AS v({columns}) "
        f"WHERE {table}.{quote(pk.column)} = v.pk"
    )
    return fields, sql


def _array_placeholder(field: models.Field) -> str:
    """A column's array parameter, in PostgreSQL's binary format (`%b`): psycopg writes a
    binary array with no quoting, where the text format runs a regular expression over
    every element (and hex-encodes bytes first), which cost a consumer draining a backlog
    a sixth of its time. JSON goes as text, cast back."""
    return "%b::text[]" if _is_json(field) else f"%b::{_array_type(field)}"


def _scalar_placeholder(field: models.Field) -> str:
    """A one-row statement's placeholder for `field`: JSON goes as text, cast back."""
    return "%s::jsonb" if _is_json(field) else "%s"


def _param(field: models.Field, value: Any) -> Any:
    """A value of `field` as PostgreSQL gets it, alone or in an array: as it is, JSON as
    its text (cast back in the statement)."""
    if _is_json(field) and value is not None:
        return json.dumps(value, cls=field.encoder)
    return value


def _is_json(field: models.Field) -> bool:
    return field.get_internal_type() == "JSONField"


def _array_type(field: models.Field) -> str:
    """The PostgreSQL array type of a field's column: varchar[] rather than varchar(100)[]."""
    return f"{field.db_type(connection).split('(')[0]}[]"
