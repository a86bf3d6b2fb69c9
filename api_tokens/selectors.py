from api_tokens.models import ApiToken, api_token_digest
from kafka_bridge.sql import row_with_user


def api_token_get_active(*, key: str) -> ApiToken | None:
    """The unexpired, unrevoked token with this key, with its user (one query).

    Every API request calls this, so it is one plain statement written once per process
    (the token by its unique digest, joined to its user) rather than a queryset compiled on
    each call, which cost more CPU than the rest of an authenticated request's framework
    work. Whether the token is still active is decided here, as `ApiToken.is_active` says."""
    found = row_with_user(ApiToken, user_field="user", by="digest").fetch(api_token_digest(key))
    if found is None:
        return None
    token, user = found
    if not token.is_active:
        return None
    token.user = user
    return token
