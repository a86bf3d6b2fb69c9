from pathlib import Path

from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"

    def ready(self) -> None:
        """Declare this app's events and consumers (`events.py`, `consumers.py`)."""
        from inventory import consumers, events
        from kafka_bridge.contracts import event_types_register
        from kafka_bridge.registry import consumers_register

        event_types_register(*events.EVENT_TYPES, schemas_dir=Path(self.path) / "schemas")
        consumers_register(consumers.CONSUMER)
