from django.apps import AppConfig
from django.core import checks


class CommonConfig(AppConfig):
    """Plumbing shared by the web tier and the workers (no models): API errors and schema,
    health, metrics, logs, correlation ids, rate limits, the admin's look."""

    name = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        checks.register(api_throttle_rates_check)


def api_throttle_rates_check(**kwargs: object) -> list[checks.CheckMessage]:
    """A malformed API_THROTTLE_* value stops `migrate` and `check` with one line, instead
    of failing every API request later."""
    from django.conf import settings

    from common.throttling import rate_parse

    errors: list[checks.CheckMessage] = []
    for scope, rate in settings.API_THROTTLE_RATES.items():
        try:
            rate_parse(rate)
        except ValueError as exc:
            errors.append(checks.Error(f"API_THROTTLE_RATES[{scope!r}]: {exc}", id="common.E001"))
    return errors
