"""The events the orders app publishes: an order placed (`orders.created`), every move of
its status (`orders.<new status>`, one schema for all) and the payments it takes and gives
back (`payments.*`). Registered from OrdersConfig.ready(); their released JSON Schemas are
in `orders/schemas/`.

Adding a field with a default is a compatible change within a version; anything else is a
new version registered beside the old one, with an upcaster from the version before it
(`kafka_bridge.contracts` says how they are read).
"""

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import Field

from kafka_bridge.contracts import EventType, Payload

Sku = Annotated[str, Field(min_length=1, max_length=64)]
Quantity = Annotated[int, Field(gt=0)]


class OrderItem(Payload):
    sku: Sku
    quantity: Quantity
    unit_price: Decimal


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


class PaymentRefundDueV1(OrderRef):
    """A charge was captured for an order that had ended (cancelled or expired) while the
    charge was in flight: the money goes back."""

    payment_id: uuid.UUID
    amount: Decimal
    currency: str
    provider_reference: str
    order_status: str


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
    "orders.held",
    "orders.rejected",
    "orders.paid",
    "orders.payment_failed",
    "orders.shipped",
    "orders.delivered",
    "orders.cancelled",
    "orders.expired",
)


EVENT_TYPES = [
    EventType(
        "orders.created",
        topic="orders",
        versions={1: OrderCreatedV1, 2: OrderCreatedV2},
        upcasters={1: order_created_v1_to_v2},
    ),
    EventType("payments.processed", topic="payments", versions={1: PaymentProcessedV1}),
    EventType("payments.failed", topic="payments", versions={1: PaymentFailedV1}),
    EventType("payments.refund_due", topic="payments", versions={1: PaymentRefundDueV1}),
    EventType("payments.refunded", topic="payments", versions={1: PaymentRefundedV1}),
    *(
        EventType(name, topic="orders", versions={1: OrderStatusChangedV1})
        for name in ORDER_TRANSITION_EVENTS
    ),
]
