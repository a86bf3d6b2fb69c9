"""Every event the system emits: its name, topic, versions and payload schema, in one place.

Producers validate payloads against the current version before writing to the outbox;
consumers decode any version listed here. Adding a field with a default is a compatible
change within a version; anything else is a new version registered beside the old one,
with an upcaster from the version before it: a payload of an older version is validated
against its own schema, then upcast step by step to the current one, so handlers only ever
see the current shape. The released JSON Schema of every (type, version) is checked in under
`kafka_bridge/schemas/` and `manage.py check_event_contracts` keeps the code to it (see
`kafka_bridge.contract_schemas`).
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
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


class ShippingAddress(Payload):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    line1: Annotated[str, Field(min_length=1, max_length=200)]
    line2: Annotated[str, Field(max_length=200)] = ""
    postal_code: Annotated[str, Field(min_length=1, max_length=20)]
    city: Annotated[str, Field(min_length=1, max_length=100)]
    # ISO 3166-1 alpha-2.
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]

    def postal_lines(self) -> list[str]:
        """The address as written on a parcel, one line each."""
        street = [self.line1, self.line2] if self.line2 else [self.line1]
        return [self.name, *street, f"{self.postal_code} {self.city}", self.country]


# Before V2 the web shop was the only client of the order API: V1 orders came from there.
SALES_CHANNEL_BEFORE_V2 = "web"


class OrderCreatedV2(Payload):
    """V1 plus where the order came from (required: every producer knows it) and where it
    goes (optional: pick-up and digital orders have no address)."""

    order_id: uuid.UUID
    customer_id: int
    currency: str
    total: Decimal
    items: Annotated[list[OrderItem], Field(min_length=1)]
    # A name, not an enum: a new channel is not a new contract (orders.models.SalesChannel
    # lists the ones the API accepts).
    sales_channel: Annotated[str, Field(min_length=1, max_length=32)]
    shipping_address: ShippingAddress | None = None


def order_created_v1_to_v2(payload: OrderCreatedV1) -> OrderCreatedV2:
    return OrderCreatedV2(
        **dict(payload), sales_channel=SALES_CHANNEL_BEFORE_V2, shipping_address=None
    )


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


Upcaster = Callable[[Any], Payload]


@dataclass(frozen=True)
class EventType:
    name: str
    topic: str
    versions: dict[int, type[Payload]]
    # version n → the function turning a payload of version n into one of version n + 1.
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [
            v for v in self.versions if v != self.current_version and v not in self.upcasters
        ]
        if sorted(self.versions) != list(range(1, self.current_version + 1)) or missing:
            raise ValueError(f"{self.name}: versions must be 1..n, each below n with an upcaster")

    @property
    def current_version(self) -> int:
        return max(self.versions)

    def upcast(self, payload: Payload, *, version: int) -> Payload:
        """A payload of `version` as the current version (unchanged if it is current)."""
        for step in range(version, self.current_version):
            payload = self.upcasters[step](payload)
        return payload


EVENT_TYPES: dict[str, EventType] = {
    event_type.name: event_type
    for event_type in [
        EventType(
            "orders.created",
            topic="orders",
            versions={1: OrderCreatedV1, 2: OrderCreatedV2},
            upcasters={1: order_created_v1_to_v2},
        ),
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
    """Validate `data` against the schema of (type, version), not upcast; raise
    EventDecodeError if it does not fit."""
    schema = event_type_get(event_type).versions.get(version)
    if schema is None:
        raise EventDecodeError(f"unsupported version {version} of {event_type}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid {event_type} v{version} payload: {exc}") from exc


def event_decode(raw: bytes | None) -> Event:
    """Parse plain JSON envelope bytes into an Event, or raise EventDecodeError saying why
    not. (Messages in the Schema Registry wire format: `kafka_bridge.wire.message_decode`.)"""
    if not raw:
        raise EventDecodeError("empty message value")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"value is not JSON: {exc}") from exc
    return event_from_document(document)


def event_from_document(document: Any) -> Event:
    """The Event of a parsed envelope: its payload validated against the version it was
    written in, then upcast to the current version. `envelope.schema_version` stays the
    version on the wire."""
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid envelope: {exc}") from exc
    version = envelope.schema_version
    payload = payload_validate(event_type=envelope.event_type, version=version, data=envelope.data)
    upcast = event_type_get(envelope.event_type).upcast(payload, version=version)
    return Event(envelope=envelope, payload=upcast)
