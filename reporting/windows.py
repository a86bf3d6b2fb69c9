"""Orders per minute: one-minute tumbling windows in event time, in one place.

A window counts the `orders.created` events whose `occurred_at` falls in [start, start + 1
minute). Time is event time throughout: the aggregator's **watermark** is the latest
`occurred_at` it has seen, whatever the wall clock says. A window's states:

    open ──▶ closed

- **open** while the watermark is before the window's end: orders are counted, nothing is
  published yet.
- **closed** once the watermark reaches its end: the window is published, with its full count,
  to `metrics.order.rate` (key: the window start).

An order is judged against the watermark as it was just before the order arrived:
- **on time** (watermark < end): counted;
- **late** (end ≤ watermark < end + allowed lateness): counted, and the window is published
  again with the new count;
- **too late** (watermark ≥ end + allowed lateness): not in the count, counted apart in
  `too_late_orders`, and the window is published again: nothing is dropped silently.

The lateness is `settings.REPORTING["ORDER_RATE_ALLOWED_LATENESS_SECONDS"]`.
"""

import enum
from datetime import UTC, datetime, timedelta

from django.db import models
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt

WINDOW = timedelta(minutes=1)


class WindowState(models.TextChoices):
    OPEN = "open", "Open (counting, not published)"
    CLOSED = "closed", "Closed (published; late orders still counted)"


TRANSITIONS: dict[str, frozenset[str]] = {
    WindowState.OPEN: frozenset({WindowState.CLOSED}),
    WindowState.CLOSED: frozenset(),
}


class InvalidWindowTransition(Exception):
    pass


def window_transition_check(*, current: str, target: str) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidWindowTransition(f"a window cannot go from {current} to {target}")


class Arrival(enum.Enum):
    ON_TIME = "on time"
    LATE = "late"
    TOO_LATE = "too late"


def window_start(moment: datetime) -> datetime:
    """The start of the window holding `moment` (an aware datetime), in UTC."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def window_closed(start: datetime, *, watermark: datetime | None) -> bool:
    return watermark is not None and watermark >= start + WINDOW


def arrival(start: datetime, *, watermark: datetime | None, lateness: timedelta) -> Arrival:
    """How an order of the window starting at `start` arrives, given the watermark before it."""
    if not window_closed(start, watermark=watermark):
        return Arrival.ON_TIME
    assert watermark is not None
    return Arrival.LATE if watermark < start + WINDOW + lateness else Arrival.TOO_LATE


class OrderRateWindowRecord(BaseModel):
    """One record of `metrics.order.rate`: a window's full figures, never a delta. A reader
    keeps the record with the highest `revision` per window, so one that arrives twice or
    out of order changes nothing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    window_start: datetime
    window_end: datetime
    orders: NonNegativeInt
    late_orders: NonNegativeInt  # arrived after the window closed; included in `orders`
    too_late_orders: NonNegativeInt  # arrived beyond the allowed lateness; not in `orders`
    revision: PositiveInt

    @property
    def key(self) -> bytes:
        return window_key(self.window_start)


def window_key(start: datetime) -> bytes:
    """The message key of a window: its start, ISO 8601 in UTC."""
    return start.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()
