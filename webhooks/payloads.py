"""What external systems receive: the order events they can subscribe to, and the JSON body
of each delivery (`{"type", "timestamp", "data": {...}}`, as Standard Webhooks suggests).

The body is built once, when the event is recorded for delivery, and sent unchanged on every
attempt. Fields are only ever added to `data`; receivers must ignore the ones they do not
know.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from kafka_bridge.contracts import Event
from orders.events import ORDER_TRANSITION_EVENTS, OrderCreatedV2, OrderStatusChangedV1

# Every event an endpoint can subscribe to, in the order of an order's life.
SUBSCRIBABLE_EVENT_TYPES: tuple[str, ...] = ("orders.created", *ORDER_TRANSITION_EVENTS)
ALL_EVENTS = "*"


@dataclass(frozen=True)
class OrderEventMessage:
    """One order event as the webhooks show it."""

    event_id: uuid.UUID
    event_type: str
    order_id: uuid.UUID
    occurred_at: datetime
    data: dict[str, Any]

    @property
    def message_id(self) -> str:
        """The `webhook-id`: stable for the event, whichever endpoint and attempt."""
        return f"msg_{self.event_id.hex}"

    def body(self) -> str:
        timestamp = self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        document = {"type": self.event_type, "timestamp": timestamp, "data": self.data}
        return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"))


def order_event_message(event: Event) -> OrderEventMessage:
    """The webhook view of an `orders.*` event."""
    payload = event.payload
    data: dict[str, Any] = {"event_id": str(event.event_id)}
    if isinstance(payload, OrderCreatedV2):
        data.update(
            order_id=str(payload.order_id),
            status="pending",
            customer_id=payload.customer_id,
            total=str(payload.total),
            currency=payload.currency,
            sales_channel=payload.sales_channel,
            items=[
                {"sku": item.sku, "quantity": item.quantity, "unit_price": str(item.unit_price)}
                for item in payload.items
            ],
        )
    elif isinstance(payload, OrderStatusChangedV1):
        data.update(
            order_id=str(payload.order_id),
            status=payload.status,
            previous_status=payload.previous_status,
            customer_id=payload.customer_id,
            reason=payload.reason,
            actor=payload.actor,
        )
        if payload.tracking_number:
            data.update(carrier=payload.carrier, tracking_number=payload.tracking_number)
    else:
        raise TypeError(f"{event.event_type} is no order event")
    return OrderEventMessage(
        event_id=event.event_id,
        event_type=event.event_type,
        order_id=payload.order_id,
        occurred_at=event.envelope.occurred_at,
        data=data,
    )
