"""Step 3, apply: the events of a batch, handed to their set-based handlers in one database
transaction together with their ProcessedEvent rows.

Order: within a partition Kafka gives events in order, and what must stay in order is what
happens to one aggregate (an order). A batch is cut into waves: an aggregate's first event is
in wave 0, its second in wave 1, and so on. Within a wave every event concerns a different
aggregate, so events can be grouped by handler (in order of first appearance) without
reordering anything that matters; each handler gets its events in offset order. A group
whose one handler folds an aggregate's events itself (`ConsumerSpec.whole_batches`) gets the
batch in one wave.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from common.correlation import causing_events
from kafka_bridge.contracts import Event
from kafka_bridge.registry import Handler, TwoPhaseHandler
from kafka_bridge.selectors import processed_events_known
from kafka_bridge.services import processed_events_mark


@dataclass
class Applied:
    processed: list[Event]
    duplicates: list[Event]  # already processed by this group (the database said so)
    # Seconds each handler spent on this unit, both phases and every wave together.
    handler_seconds: dict[Handler, float] = field(default_factory=dict)


def waves(events: Sequence[Event]) -> list[list[Event]]:
    """Split events so that each wave holds at most one event per aggregate, keeping offset
    order within each wave and per aggregate across waves."""
    result: list[list[Event]] = []
    seen: dict[str, int] = {}
    for event in events:
        index = seen.get(event.envelope.aggregate_id, 0)
        seen[event.envelope.aggregate_id] = index + 1
        if index == len(result):
            result.append([])
        result[index].append(event)
    return result


HandlerBatch = tuple[Handler, list[Event]]


def by_handler(events: Sequence[Event], handlers: dict[str, Handler]) -> list[HandlerBatch]:
    """Group events by their handler object, in order of first appearance."""
    groups: dict[int, HandlerBatch] = {}
    for event in events:
        handler = handlers[event.event_type]
        groups.setdefault(id(handler), (handler, []))[1].append(event)
    return list(groups.values())


def events_apply(
    *,
    group: str,
    events: Sequence[Event],
    handlers: dict[str, Handler],
    whole_batches: bool = False,
) -> Applied:
    """Apply `events` (decoded, handled here, unique) as one unit: all effects and all
    ProcessedEvent rows commit together, or nothing does. With `whole_batches` (the
    group's one handler folds several events of an aggregate itself) they are one wave."""
    two_phase = [
        (handler, batch)
        for handler, batch in by_handler(events, handlers)
        if isinstance(handler, TwoPhaseHandler)
    ]
    seconds: dict[Handler, float] = {}

    def timed(handler: Handler, started: float) -> None:
        seconds[handler] = seconds.get(handler, 0.0) + time.perf_counter() - started

    with causing_events(events):
        # I/O that must not hold a transaction open runs first, for the whole batch, on
        # the events the database does not already know as processed.
        done = processed_events_known(group=group, events=events) if two_phase else set()
        prepared: dict[int, Any] = {}
        for handler, batch in two_phase:
            started = time.perf_counter()
            prepared[id(handler)] = handler.prepare([e for e in batch if e.event_id not in done])
            timed(handler, started)
        with transaction.atomic():
            new_ids = processed_events_mark(group=group, events=events)
            fresh = [e for e in events if e.event_id in new_ids]
            for wave in [fresh] if whole_batches else waves(fresh):
                for handler, batch in by_handler(wave, handlers):
                    started = time.perf_counter()
                    if isinstance(handler, TwoPhaseHandler):
                        handler.apply(batch, prepared[id(handler)])
                    else:
                        handler(batch)
                    timed(handler, started)
    return Applied(
        processed=fresh,
        duplicates=[e for e in events if e.event_id not in new_ids],
        handler_seconds=seconds,
    )
