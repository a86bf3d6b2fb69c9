"""The events the inventory app publishes: stock reserved for an order, or not.
Registered from InventoryConfig.ready(); their released JSON Schemas are in
`inventory/schemas/`."""

import uuid
from typing import Annotated

from pydantic import Field

from kafka_bridge.contracts import EventType, Payload
from orders.events import Quantity, Sku


class StockItem(Payload):
    sku: Sku
    quantity: Quantity


class InventoryReservedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    items: Annotated[list[StockItem], Field(min_length=1)]


class InventoryFailedV1(Payload):
    order_id: uuid.UUID
    customer_id: int
    reason: str
    short_skus: list[str] = []


EVENT_TYPES = [
    EventType("inventory.reserved", topic="inventory", versions={1: InventoryReservedV1}),
    EventType("inventory.failed", topic="inventory", versions={1: InventoryFailedV1}),
]
