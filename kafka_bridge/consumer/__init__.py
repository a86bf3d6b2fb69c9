"""The consumer runtime shared by every registered consumer (`manage.py run_consumer`).

Built from small steps, each with one job; `runner.py` describes how they fit together."""

from .failures import PERMANENT_ERRORS, PermanentEventError
from .idempotency import idempotency_redis_key
from .runner import ConsumerRunner, ProcessingStats

__all__ = [
    "PERMANENT_ERRORS",
    "ConsumerRunner",
    "PermanentEventError",
    "ProcessingStats",
    "idempotency_redis_key",
]
