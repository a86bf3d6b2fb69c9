import time
from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process; short timeouts so an outage degrades, not hangs."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
    )


class OutageBackoff:
    """Skip calls to a service for a while after one failed, so that an outage costs one
    timeout every few seconds instead of one per message or request."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self.down = False
        self._retry_at = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failed(self) -> bool:
        """Record a failure; True if it starts an outage (log it once)."""
        starts = not self.down
        self.down = True
        self._retry_at = time.monotonic() + self.seconds
        return starts

    def reset(self) -> None:
        self.down = False
        self._retry_at = 0.0

    def succeeded(self) -> bool:
        """Record a success; True if it ends an outage."""
        ends = self.down
        self.down = False
        return ends
