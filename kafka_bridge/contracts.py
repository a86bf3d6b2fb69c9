"""Every event the system emits: its name, topic, versions and payload schema, in one place.

Producers validate payloads against the current version before writing to the outbox;
consumers decode any version listed here. Adding a field with a default is a compatible
change within a version; anything else is a new version registered beside the old one.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class EventDecodeError(Exception):
    """The bytes are not an event we understand: bad JSON, envelope, type, version or data."""


class Payload(BaseModel):
    # Unknown fields are ignored so that a newer producer can add optional fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


Sku = Annotated[str, Field(min_length=1, max_length=64)]
Quantity = Annotated[int, Field(gt=0)]


class OrderItem(Payload):
    sku: Sku
    quantity: Quantity
    unit_price: Decimal


class StockItem(Payload):
    sku: Sku
    quantity: Quantity


class OrderCreatedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    currency: str
    total: Decimal
    items: Annotated[list[OrderItem], Field(min_length=1)]


class InventoryReservedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    items: Annotated[list[StockItem], Field(min_length=1)]


class InventoryFailedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    reason: str
    short_skus: list[str] = []


class OrderRef(Payload):
    """Fields every order-saga event carries."""

    order_id: uuid.UUID
    customer_id: int


class PaymentProcessedV1(OrderRef):
    payment_id: uuid.UUID
    amount: Decimal
    currency: str
    provider_reference: str


class PaymentFailedV1(OrderRef):
    amount: Decimal
    currency: str
    reason: str


class PaymentRefundedV1(OrderRef):
    payment_id: uuid.UUID
    amount: Decimal
    currency: str
    provider_reference: str


class OrderStatusChangedV1(OrderRef):
    """One schema for every order transition; the event type names the new status."""

    previous_status: str
    status: str
    reason: str = ""
    actor: str = "system"  # "customer", "staff" or "system"
    tracking_number: str = ""
    carrier: str = ""


# Every order transition is published as `orders.<new status>`, on the orders topic.
ORDER_TRANSITION_EVENTS = (
    "orders.reserved",
    "orders.rejected",
    "orders.paid",
    "orders.payment_failed",
    "orders.shipped",
    "orders.delivered",
    "orders.cancelled",
    "orders.expired",
)


@dataclass(frozen=True)
class EventType:
    name: str
    topic: str
    versions: dict[int, type[Payload]]

    @property
    def current_version(self) -> int:
        return max(self.versions)


EVENT_TYPES: dict[str, EventType] = {
    event_type.name: event_type
    for event_type in [
        EventType("orders.created", topic="orders", versions={1: OrderCreatedV1}),
        EventType("payments.processed", topic="payments", versions={1: PaymentProcessedV1}),
        EventType("payments.failed", topic="payments", versions={1: PaymentFailedV1}),
        EventType("payments.refunded", topic="payments", versions={1: PaymentRefundedV1}),
        EventType("inventory.reserved", topic="inventory", versions={1: InventoryReservedV1}),
        EventType("inventory.failed", topic="inventory", versions={1: InventoryFailedV1}),
    ]
    + [
        EventType(name, topic="orders", versions={1: OrderStatusChangedV1})
        for name in ORDER_TRANSITION_EVENTS
    ]
}


def all_topics() -> list[str]:
    """Logical topic names, in a stable order."""
    return sorted({event_type.topic for event_type in EVENT_TYPES.values()})


class Envelope(BaseModel):
    """The wrapper every event travels in; `data` is validated against its schema."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: datetime
    correlation_id: str
    causation_id: uuid.UUID | None = None
    aggregate_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Event:
    envelope: Envelope
    payload: Payload

    @property
    def event_id(self) -> uuid.UUID:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id


def event_type_get(name: str) -> EventType:
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise EventDecodeError(f"unknown event type {name!r}") from None


def payload_validate(*, event_type: str, version: int, data: Any) -> Payload:
    """Validate `data` against the schema of (type, version); raise EventDecodeError if not."""
    schema = event_type_get(event_type).versions.get(version)
    if schema is None:
        raise EventDecodeError(f"unsupported version {version} of {event_type}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid {event_type} v{version} payload: {exc}") from exc


def event_decode(raw: bytes | None) -> Event:
    """Parse message bytes into an Event, or raise EventDecodeError saying why not."""
    if not raw:
        raise EventDecodeError("empty message value")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"value is not JSON: {exc}") from exc
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid envelope: {exc}") from exc
    payload = payload_validate(
        event_type=envelope.event_type, version=envelope.schema_version, data=envelope.data
    )
    return Event(envelope=envelope, payload=payload)
