from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"

    def ready(self) -> None:
        """Declare the read side's consumers (`reporting/consumers.py`)."""
        from kafka_bridge.registry import consumers_register
        from reporting import consumers

        consumers_register(*consumers.CONSUMERS)
