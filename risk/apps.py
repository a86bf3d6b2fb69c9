from pathlib import Path

from django.apps import AppConfig


class RiskConfig(AppConfig):
    name = "risk"

    def ready(self) -> None:
        """Declare this app's events (`events.py`). It has no consumer of its own: the
        orders consumer runs the check before each charge (docs/risk.md says why)."""
        from kafka_bridge.contracts import event_types_register
        from risk import events

        event_types_register(*events.EVENT_TYPES, schemas_dir=Path(self.path) / "schemas")
