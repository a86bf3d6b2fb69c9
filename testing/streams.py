"""Order events with chosen times and contents, for the read side's tests (reporting)."""

import uuid
from datetime import datetime
from decimal import Decimal

from kafka_bridge.contracts import Event, event_decode
from reporting.windows import WINDOW, OrderRateWindowRecord
from testing.kafka import event_envelope


def order_created_value(
    occurred_at: datetime,
    *,
    customer_id: int = 1,
    order_id: uuid.UUID | None = None,
    lines: tuple[tuple[str, int, str], ...] = (("SKU-1", 1, "9.99"),),
    event_id: str = "",
) -> bytes:
    """The bytes of an orders.created (V2) event that happened at `occurred_at`; `lines` are
    (sku, quantity, unit price)."""
    order_id = order_id or uuid.uuid4()
    items = [{"sku": s, "quantity": q, "unit_price": p} for s, q, p in lines]
    total = sum((Decimal(p) * q for _, q, p in lines), Decimal("0"))
    data = {
        "order_id": str(order_id),
        "customer_id": customer_id,
        "currency": "EUR",
        "total": str(total),
        "items": items,
        "sales_channel": "web",
    }
    return event_envelope(
        "orders.created",
        data,
        version=2,
        aggregate_id=str(order_id),
        occurred_at=occurred_at,
        event_id=event_id,
    )


def order_status_value(
    occurred_at: datetime, *, order_id: uuid.UUID, customer_id: int, previous: str, status: str
) -> bytes:
    """The bytes of an orders.<status> event."""
    data = {
        "order_id": str(order_id),
        "customer_id": customer_id,
        "previous_status": previous,
        "status": status,
    }
    return event_envelope(
        f"orders.{status}", data, aggregate_id=str(order_id), occurred_at=occurred_at
    )


def as_event(value: bytes) -> Event:
    return event_decode(value)


def order_rate_record(
    start: datetime, *, orders: int, revision: int = 1, too_late: int = 0
) -> OrderRateWindowRecord:
    """A metrics.order.rate record of the window starting at `start` (no late orders)."""
    return OrderRateWindowRecord(
        window_start=start,
        window_end=start + WINDOW,
        orders=orders,
        late_orders=0,
        too_late_orders=too_late,
        revision=revision,
    )
