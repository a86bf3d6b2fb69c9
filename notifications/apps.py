from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        """Declare this app's consumer (`notifications/consumers.py`)."""
        from kafka_bridge.registry import consumers_register
        from notifications import consumers

        consumers_register(consumers.CONSUMER)
