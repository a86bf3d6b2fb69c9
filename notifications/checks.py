"""System checks (`manage.py check`, and every command's start): each channel's backend can
be imported and made from its settings, so a worker with a missing SMS_PROVIDER_URL or a bad
VAPID key refuses to start instead of failing every notification of that channel."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string


@register("notifications")
def channel_backends_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for channel, config in settings.NOTIFICATIONS["CHANNELS"].items():
        setting = f"NOTIFICATIONS_{channel.upper()}_BACKEND"
        try:
            backend = import_string(config["BACKEND"])
        except ImportError as exc:
            hint = "A dotted path to a class."
            errors.append(Error(f"{setting}: {exc}", hint=hint, id="notifications.E001"))
            continue
        try:
            backend()
        except ImproperlyConfigured as exc:
            errors.append(Error(f"{setting}: {exc}", id="notifications.E002"))
    return errors
