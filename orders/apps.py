from pathlib import Path

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self) -> None:
        """Declare this app's events and consumers (`events.py`, `consumers.py`)."""
        from kafka_bridge.contracts import event_types_register
        from kafka_bridge.registry import consumers_register
        from orders import consumers, events
        from orders.breaker import payment_breaker

        event_types_register(*events.EVENT_TYPES, schemas_dir=Path(self.path) / "schemas")
        consumers_register(consumers.CONSUMER)
        # The payment circuit breaker's state gauge exists from the start in every process
        # (read from Redis when scraped, so any worker reports the shared state).
        payment_breaker()
