from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """One connection pool per process; short timeouts so an outage degrades, not hangs."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
    )
