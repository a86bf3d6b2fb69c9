"""Figures from the timestamps the tables already hold: Order.created_at,
OutboxEvent.created_at / published_at, ProcessedEvent.processed_at (per consumer group and
event), Notification.created_at. Nothing in the product is instrumented for the bench."""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kafka_bridge.models import OutboxEvent, ProcessedEvent
from notifications.models import Notification
from orders.models import Order

# The last notification an order gets without staff action: paid, or refused.
FINAL_KINDS = (
    Notification.Kind.PAYMENT_RECEIVED,
    Notification.Kind.OUT_OF_STOCK,
    Notification.Kind.CANCELLED,
)
QUANTILES = (("p50", 50), ("p95", 95), ("p99", 99))


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    return {name: percentile(values, q) for name, q in QUANTILES}


def rate_from_timestamps(stamps: Iterable[datetime]) -> float | None:
    """Events/s of a drain, from the moments its events were done: the events after the
    first moment, over the time from the first moment to the last. Start-up (process
    start, group join, first fetch) falls before the first moment and is excluded; rows
    stamped per batch (the relay's published_at) count correctly. None if all share one
    moment (too few events to tell)."""
    ordered = sorted(stamps)
    if len(ordered) < 2:
        return None
    first, last = ordered[0], ordered[-1]
    span = (last - first).total_seconds()
    if span <= 0:
        return None
    return sum(1 for stamp in ordered if stamp > first) / span


def final_notice_times(order_ids: Sequence[str]) -> dict[str, datetime]:
    """Order id → when its last automatic notification was created (if it has one yet)."""
    found: dict[str, datetime] = {}
    for order_id, created in Notification.objects.filter(
        order_id__in=order_ids, kind__in=FINAL_KINDS
    ).values_list("order_id", "created_at"):
        key = str(order_id)
        found[key] = max(created, found.get(key, created))
    return found


def created_times(order_ids: Sequence[str]) -> dict[str, datetime]:
    return {
        str(k): v for k, v in Order.objects.filter(id__in=order_ids).values_list("id", "created_at")
    }


def seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


@dataclass
class HopStats:
    """One step of the saga's critical path: an event waits in the outbox, travels relay →
    Kafka → consumer, and the consumer's handler produces the next event (or the notice)."""

    event_type: str
    group: str
    outbox_wait_ms: list[float] = field(default_factory=list)
    relay_to_consumer_ms: list[float] = field(default_factory=list)
    handler_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "hop": f"{self.event_type} → {self.group}",
            "orders": len(self.handler_ms),
            "outbox_wait_ms": percentiles(self.outbox_wait_ms),
            "relay_to_consumer_ms": percentiles(self.relay_to_consumer_ms),
            "handler_ms": percentiles(self.handler_ms),
        }


NOTICE = "notification"
# Which consumer group records each step of the saga's critical path.
PRODUCED_BY = {
    "inventory.reserved": "inventory",
    "inventory.failed": "inventory",
    "orders.paid": "orders",
    NOTICE: "notifications",
}


def critical_path_breakdown(order_ids: Sequence[str], namespace: str) -> dict[str, object]:
    """Split created → last notice into hops along the chain of causes, read backwards from
    the final notice (each envelope names its causation event):
    - outbox wait: outbox row created → published_at (stamped once the broker acknowledged
      its batch; the first hop counts from Order.created_at);
    - relay → consumer: published_at → the consumer group's ProcessedEvent.processed_at
      (Kafka, fetch wait and the consumer's queue; can be ≈0 or slightly negative because
      published_at is stamped after the whole batch was acknowledged);
    - handler: processed_at → the next event's outbox row (or the notification) created.
    Per hop, and summed per order ("total")."""
    created = created_times(order_ids)
    notices = {
        str(order_id): (created_at, event_id)
        for order_id, created_at, event_id in Notification.objects.filter(
            order_id__in=order_ids, kind__in=FINAL_KINDS
        ).values_list("order_id", "created_at", "event_id")
    }
    events = {
        row["event_id"]: row
        for row in OutboxEvent.objects.filter(aggregate_id__in=list(order_ids)).values(
            "event_id", "event_type", "created_at", "published_at", "value"
        )
    }
    processed: dict[uuid.UUID, list[tuple[str, datetime]]] = defaultdict(list)
    for group, event_id, processed_at in ProcessedEvent.objects.filter(
        consumer_group__startswith=namespace, event_id__in=list(events)
    ).values_list("consumer_group", "event_id", "processed_at"):
        processed[event_id].append((group.removeprefix(namespace), processed_at))

    hops: dict[tuple[int, str, str], HopStats] = {}
    totals: dict[str, list[float]] = defaultdict(list)
    complete = 0
    for order_id, (notice_at, cause_id) in notices.items():
        chain = []  # (event row, when its successor was created, the successor's kind)
        successor_at, successor_kind, event_id = notice_at, NOTICE, cause_id
        while event_id is not None and event_id in events and len(chain) < 20:
            row = events[event_id]
            chain.append((row, successor_at, successor_kind))
            successor_at, successor_kind = row["created_at"], row["event_type"]
            causation = json.loads(bytes(row["value"])).get("causation_id")
            event_id = uuid.UUID(causation) if causation else None
        chain.reverse()
        if not chain or chain[0][0]["event_type"] != "orders.created":
            continue
        parts = []
        for index, (row, next_at, next_kind) in enumerate(chain):
            start = created[order_id] if index == 0 else row["created_at"]
            # The group that produced the next step (several groups read some events, e.g.
            # orders.created), else the last to process this one before then.
            candidates = [
                (at, group)
                for group, at in processed.get(row["event_id"], [])
                if at <= next_at and PRODUCED_BY.get(next_kind, group) == group
            ]
            if row["published_at"] is None or not candidates:
                break
            processed_at, group = max(candidates)
            parts.append(
                (
                    (index, row["event_type"], group),
                    seconds(start, row["published_at"]) * 1000,
                    seconds(row["published_at"], processed_at) * 1000,
                    seconds(processed_at, next_at) * 1000,
                )
            )
        else:
            complete += 1
            for key, wait, transport, handler in parts:
                hop = hops.setdefault(key, HopStats(event_type=key[1], group=key[2]))
                hop.outbox_wait_ms.append(wait)
                hop.relay_to_consumer_ms.append(transport)
                hop.handler_ms.append(handler)
            totals["outbox_wait_ms"].append(sum(p[1] for p in parts))
            totals["relay_to_consumer_ms"].append(sum(p[2] for p in parts))
            totals["handler_ms"].append(sum(p[3] for p in parts))
    return {
        "orders": complete,
        "hops": [hops[key].summary() for key in sorted(hops)],
        "total": {name: percentiles(values) for name, values in totals.items()},
    }


def latencies_ms(order_ids: Sequence[str]) -> tuple[list[float], int]:
    """created → last notice of every order that has one, and how many have none yet."""
    created = created_times(order_ids)
    notices = final_notice_times(order_ids)
    values = [seconds(created[k], v) * 1000 for k, v in notices.items() if k in created]
    return values, len(order_ids) - len(values)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
