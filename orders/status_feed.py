"""The live feed of order status moves: what the status services publish after commit, on
one Redis pub/sub channel, and what the live status stream (`orders.status_stream`) waits
on. A message is a hint that saves the stream a database read; the order's row and its
events stay the truth (see `common.pubsub`)."""

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.db import transaction

from common.pubsub import BackgroundPublisher, ChannelHub

CHANNEL = "orders:status"


@dataclass(frozen=True)
class OrderStatusMove:
    """An order reached `status`: its `seq`-th status (1 is `pending`, when it was placed)."""

    order_id: uuid.UUID
    seq: int
    status: str
    reason: str
    at: datetime

    def as_json(self) -> dict[str, str]:
        """What clients are told (the sequence number travels as the SSE event id)."""
        return {
            "order_id": str(self.order_id),
            "status": self.status,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


def status_move_encode(move: OrderStatusMove) -> bytes:
    return json.dumps({**move.as_json(), "seq": move.seq}).encode()


def status_move_decode(raw: bytes) -> OrderStatusMove | None:
    """The move in a message, or None for a message that is not one (never raises)."""
    try:
        data = json.loads(raw)
        return OrderStatusMove(
            order_id=uuid.UUID(data["order_id"]),
            seq=int(data["seq"]),
            status=str(data["status"]),
            reason=str(data["reason"]),
            at=datetime.fromisoformat(data["at"]),
        )
    except (ValueError, TypeError, KeyError):
        return None


def _message_parse(raw: bytes) -> tuple[str, OrderStatusMove] | None:
    move = status_move_decode(raw)
    return (str(move.order_id), move) if move is not None else None


publisher = BackgroundPublisher("order-status-publisher")


def status_moves_publish_on_commit(moves: Sequence[OrderStatusMove]) -> None:
    """Announce the moves once the caller's transaction commits (never before: a watcher
    told of a move must find it in the database), without waiting for Redis."""
    if moves:
        messages = [status_move_encode(move) for move in moves]
        transaction.on_commit(partial(publisher.publish, CHANNEL, messages))


_hubs: dict[asyncio.AbstractEventLoop, ChannelHub] = {}


def status_hub() -> ChannelHub:
    """This event loop's subscription to the feed (one per process under uvicorn)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        for closed in [other for other in _hubs if other.is_closed()]:
            del _hubs[closed]
        hub = _hubs[loop] = ChannelHub(CHANNEL, parse=_message_parse)
    return hub
