from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from api_tokens.models import ApiToken
from api_tokens.selectors import api_token_get_active
from common.throttling import RefusedCredentialsThrottle


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's `Authorization: Token <key>` scheme against hashed, expiring, revocable
    tokens (api_tokens.models.ApiToken). Refused tokens count against the anonymous rate
    limit of the client's address, so guessing tokens is slowed down like anything else
    anonymous."""

    model = ApiToken

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle = RefusedCredentialsThrottle()
            if not throttle.allow_request(request, None):
                raise exceptions.Throttled(throttle.wait()) from None
            raise

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = api_token_get_active(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token
