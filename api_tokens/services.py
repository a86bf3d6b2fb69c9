import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from api_tokens.models import ApiToken, api_token_digest


def api_token_default_expiry() -> datetime | None:
    days = settings.API_TOKEN_TTL_DAYS
    return timezone.now() + timedelta(days=days) if days else None


def api_token_key_assign(token: ApiToken) -> str:
    """Give an unsaved token a new random key; return the key (its only copy)."""
    key = secrets.token_hex(20)
    token.digest, token.prefix = api_token_digest(key), key[:8]
    return key


def api_tokens_issue(
    *, users: Sequence[AbstractBaseUser], expires_at: datetime | None = None
) -> list[str]:
    """One new token per user (one INSERT); return their keys, in the users' order. Tokens
    expire after API_TOKEN_TTL_DAYS unless `expires_at` says otherwise."""
    expires_at = expires_at or api_token_default_expiry()
    tokens = [ApiToken(user=user, expires_at=expires_at) for user in users]
    keys = [api_token_key_assign(token) for token in tokens]
    ApiToken.objects.bulk_create(tokens)
    return keys


def api_token_issue(*, user: AbstractBaseUser, expires_at: datetime | None = None) -> str:
    (key,) = api_tokens_issue(users=[user], expires_at=expires_at)
    return key


@transaction.atomic
def api_tokens_revoke(*, tokens: QuerySet[ApiToken]) -> int:
    """Revoke tokens at once (kept, marked revoked, for the record); return how many were
    still unrevoked."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
