from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"

    def ready(self) -> None:
        """Declare this app's consumer (`webhooks/consumers.py`)."""
        from kafka_bridge.registry import consumers_register
        from webhooks import consumers

        consumers_register(consumers.CONSUMER)
