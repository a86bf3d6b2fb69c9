"""The circuit breaker around the payment provider's charges (common.circuit_breaker): one
state for every process that charges (the orders consumers, the charge sweep), in Redis.

Settings: PAYMENTS["BREAKER"] (fail_max, reset and probe timeouts). Its key carries
KAFKA_NAMESPACE, as topics and consumer groups do, so that environments and test runs
sharing a Redis keep a breaker each.
"""

from functools import cache

from django.conf import settings

from common.circuit_breaker import CircuitBreaker

PAYMENT_GATEWAY = "payment_gateway"


@cache
def payment_breaker() -> CircuitBreaker:
    config = settings.PAYMENTS["BREAKER"]
    breaker = CircuitBreaker(
        PAYMENT_GATEWAY,
        fail_max=config["FAIL_MAX"],
        reset_timeout=config["RESET_TIMEOUT_SECONDS"],
        probe_timeout=config["PROBE_TIMEOUT_SECONDS"],
        key=f"{settings.KAFKA['NAMESPACE']}circuit:{PAYMENT_GATEWAY}",
    )
    breaker.export()
    return breaker
