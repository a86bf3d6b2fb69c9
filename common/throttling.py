"""API rate limits (DRF throttling), counted in the shared cache so that every web process
sees the same counts. Rates come from settings.API_THROTTLE_RATES and are read on each
request; settings.API_THROTTLING=false turns every limit off.

- per customer, on the whole API (`customer`);
- per customer, on order creation, on top of that (`order_create`);
- per client address, on requests without valid credentials (`anonymous`): anonymous calls
  to public endpoints, and refused tokens, so a token guesser is slowed down too.

If the cache (Redis) is down, requests are let through: an outage of the counters must not
take the API down with it. One warning line per outage.
"""

import logging
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from redis import RedisError
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from common.redis_client import OutageBackoff

logger = logging.getLogger(__name__)

RATE = re.compile(r"^(?P<requests>\d+)/(?P<count>\d*)(?P<unit>[smhd])[a-z]*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# After the cache failed, requests skip it for a few seconds instead of each waiting for
# its timeout.
_cache_backoff = OutageBackoff()


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or with settings.TRUSTED_PROXY_COUNT proxies in
    front (REST_FRAMEWORK NUM_PROXIES), the address the outermost of them saw. The same for
    the rate limits and django-axes' login lockouts (AXES_CLIENT_IP_CALLABLE)."""
    return BaseThrottle().get_ident(request) or ""


def rate_parse(rate: str) -> tuple[int, int]:
    """'20/10s' → (20, 10); DRF's own forms ('30/min', '1000/day') parse as DRF parses them."""
    match = RATE.match(rate.strip())
    if match is None:
        raise ValueError(f"not a rate: {rate!r} (expected e.g. '60/min' or '20/10s')")
    count = int(match["count"] or 1)
    if count == 0:
        raise ValueError(f"not a rate: {rate!r} (a period of zero)")
    return int(match["requests"]), count * UNIT_SECONDS[match["unit"]]


class SettingsRateThrottle(SimpleRateThrottle):
    """DRF's sliding-window throttle, with its rate read from settings on each request."""

    def get_rate(self) -> str:
        return settings.API_THROTTLE_RATES[self.scope]

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:  # type: ignore[override]
        return (None, None) if rate is None else rate_parse(rate)

    def allow_request(self, request: Any, view: Any) -> bool:
        if not settings.API_THROTTLING or not _cache_backoff.ready():
            return True
        try:
            allowed = super().allow_request(request, view)
        except RedisError as exc:
            if _cache_backoff.failed():
                logger.warning("rate limits off while the cache is unreachable: %s", exc)
            return True
        if _cache_backoff.succeeded():
            logger.warning("rate limits back on: the cache answers again")
        return allowed

    def wait(self) -> float | None:
        # Retry-After is whole seconds; never 0, which would tell a client to retry at once.
        wait = super().wait()
        return None if wait is None else max(wait, 1.0)

    def _key(self, ident: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": ident}


class CustomerRateThrottle(SettingsRateThrottle):
    """Every API request of one customer (or staff user)."""

    scope = "customer"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self._key(request.user.pk) if request.user.is_authenticated else None


class OrderCreateRateThrottle(CustomerRateThrottle):
    """Orders one customer creates (POST), on top of the customer's limit on the whole API."""

    scope = "order_create"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return super().get_cache_key(request, view) if request.method == "POST" else None


class AnonymousRateThrottle(SettingsRateThrottle):
    """Requests without credentials, per client address."""

    scope = "anonymous"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return None if request.user.is_authenticated else self._key(client_address(request))


class RefusedCredentialsThrottle(AnonymousRateThrottle):
    """The anonymous limit, counted on requests whose token was refused. Called by the
    authentication class: DRF runs its throttles only after authentication succeeded, so a
    token guesser would otherwise never be slowed. Shares the anonymous counter."""

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        # `request.user` is not to be touched here: authentication is still running.
        return self._key(client_address(request))
