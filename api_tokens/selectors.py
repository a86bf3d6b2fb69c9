from api_tokens.models import ApiToken, api_token_digest


def api_token_get_active(*, key: str) -> ApiToken | None:
    """The unexpired, unrevoked token with this key, with its user (one query)."""
    return (
        ApiToken.objects.active()
        .select_related("user")
        .filter(digest=api_token_digest(key))
        .first()
    )
