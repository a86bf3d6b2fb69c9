"""Observations of an order's saga used by the end-to-end tests."""

import json
from collections import Counter
from collections.abc import Iterator

from inventory.models import Reservation, StockLevel
from kafka_bridge.client import group_name
from kafka_bridge.contracts import Event, event_decode
from kafka_bridge.models import OutboxEvent, ProcessedEvent
from notifications.models import Notification
from orders.models import FakeGatewayTransaction, Order, Payment
from testing.polling import wait_until
from tools.supervisor import SAGA_CONSUMERS


def order_status(order_id: str) -> str:
    return Order.objects.get(id=order_id).status


def wait_for_status(order_id: str, status: str, timeout: float = 30) -> None:
    wait_until(
        lambda: order_status(order_id) == status,
        timeout=timeout,
        message=f"order {order_id} {status} (is {order_status(order_id)})",
    )


def notification_kinds(order_id: str) -> Counter[str]:
    return Counter(Notification.objects.filter(order_id=order_id).values_list("kind", flat=True))


def wait_for_notifications(order_id: str, *kinds: str, sent: bool = True, timeout: float = 30):
    """Wait until exactly these kinds exist (once each) and, if `sent`, were delivered."""

    def done() -> bool:
        rows = Notification.objects.filter(order_id=order_id)
        if notification_kinds(order_id) != Counter(kinds):
            return False
        return not sent or all(n.status == Notification.Status.SENT for n in rows)

    wait_until(done, timeout=timeout, message=f"notifications {kinds} for {order_id}")


def stock_of(sku: str) -> tuple[int, int]:
    stock = StockLevel.objects.get(product__sku=sku)
    return stock.on_hand, stock.reserved


def gateway_calls(order_id: str) -> Counter[str]:
    keys = FakeGatewayTransaction.objects.filter(idempotency_key__startswith=f"order-{order_id}-")
    return Counter(keys.values_list("kind", flat=True))


def snapshot(order_id: str, sku: str) -> dict[str, object]:
    """Everything a redelivered event must not change."""
    payment = Payment.objects.filter(order_id=order_id).first()
    return {
        "status": order_status(order_id),
        "stock": stock_of(sku),
        "reservations": sorted(
            Reservation.objects.filter(order_id=order_id).values_list("status", "quantity")
        ),
        "payment": payment.status if payment else None,
        "gateway": gateway_calls(order_id),
        "notifications": notification_kinds(order_id),
        "events": Counter(
            OutboxEvent.objects.filter(aggregate_id=order_id).values_list("event_type", flat=True)
        ),
        # The saga's groups: the read side (reporting) may still be catching up when the
        # snapshot is taken, which no redelivery causes.
        "processed": ProcessedEvent.objects.filter(
            consumer_group__in=[group_name(n) for n in SAGA_CONSUMERS]
        ).count(),
    }


def events_recorded_after(outbox_id: int) -> Iterator[Event]:
    """The outbox's events after `outbox_id`, oldest first, decoded as a consumer would get
    them; read one at a time, so events recorded while the caller handles one come too."""
    while row := OutboxEvent.objects.filter(id__gt=outbox_id).order_by("id").first():
        outbox_id = row.id
        yield event_decode(json.dumps(row.envelope).encode())
