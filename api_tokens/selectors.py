import functools
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection

from api_tokens.models import ApiToken, api_token_digest
from kafka_bridge.sql import Columns


def api_token_get_active(*, key: str) -> ApiToken | None:
    """The unexpired, unrevoked token with this key, with its user (one query).

    Every API request calls this, so it is one plain statement written once per process
    (the token by its unique digest, joined to its user) rather than a queryset compiled on
    each call, which cost more CPU than the rest of an authenticated request's framework
    work. Whether the token is still active is decided here, as `ApiToken.is_active` says."""
    statement = _token_with_user_statement()
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [api_token_digest(key)])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(statement.token_fields)
    token = statement.token_fields.instance(ApiToken, row[:split])
    if not token.is_active:
        return None
    token.user = statement.user_fields.instance(get_user_model(), row[split:])
    return token


@dataclass(frozen=True)
class _Statement:
    sql: str
    token_fields: Columns
    user_fields: Columns


@functools.cache
def _token_with_user_statement() -> _Statement:
    user_model = get_user_model()
    quote = connection.ops.quote_name
    token_fields = Columns("t", ApiToken._meta.concrete_fields)
    user_fields = Columns("u", user_model._meta.concrete_fields)
    user_fk = ApiToken._meta.get_field("user")
    sql = (
        f"SELECT {', '.join(token_fields.sql() + user_fields.sql())} "
        f"FROM {quote(ApiToken._meta.db_table)} t "
        f"JOIN {quote(user_model._meta.db_table)} u "
        f"ON u.{quote(user_model._meta.pk.column)} = t.{quote(user_fk.column)} "
        f"WHERE t.{quote(ApiToken._meta.get_field('digest').column)} = %s"
    )
    return _Statement(sql=sql, token_fields=token_fields, user_fields=user_fields)
