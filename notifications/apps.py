from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        """Declare this app's consumer (`notifications/consumers.py`) and the check of its
        channel backends (`notifications/checks.py`)."""
        from kafka_bridge.registry import consumers_register
        from notifications import checks, consumers  # noqa: F401 (checks register themselves)

        consumers_register(consumers.CONSUMER)
