"""Step 1, decode: each Kafka message of a batch becomes a `Received`, with its event or the
reason it cannot be one. Nothing here touches the database, Redis or the broker.

Several groups read one topic, and each handles some of its event types. A message whose
`event_type` header (set by the relay) names a registered type this group does not handle
is another group's: it is not decoded at all. Everything else is decoded, so a message
without the header, or with a type nobody registered, is still checked and dead-lettered
when it is not an event of ours."""

from dataclasses import dataclass

from confluent_kafka import Message

from kafka_bridge.contracts import Event, EventDecodeError
from kafka_bridge.wire import message_decode


@dataclass
class Received:
    message: Message
    event: Event | None = None
    # Why the bytes are not an event we understand: the message goes to the DLQ as it is.
    undecodable: EventDecodeError | None = None
    # Another group's event type (by its header): neither decoded nor handled here.
    foreign: bool = False

    @property
    def position(self) -> str:
        message = self.message
        return f"{message.topic()}[{message.partition()}]@{message.offset()}"

    def log_ids(self) -> dict[str, object]:
        """What identifies this message and its event on a log line (structured_logs)."""
        message = self.message
        ids: dict[str, object] = {
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
        }
        if self.event is not None:
            order_id = getattr(self.event.payload, "order_id", None)
            ids.update(
                event_id=str(self.event.event_id),
                event_type=self.event.event_type,
                correlation_id=self.event.correlation_id,
                order_id=None if order_id is None else str(order_id),
            )
        return ids


def header_event_type(message: Message) -> str | None:
    for name, value in message.headers() or ():
        if name == "event_type":
            return value.decode("utf-8", "replace") if value is not None else None
    return None


def received_decode(
    message: Message, *, raw: bool, foreign_types: frozenset[str] = frozenset()
) -> Received:
    """Decode one message; a raw consumer takes messages as they are, and a message whose
    header names one of `foreign_types` is passed over undecoded."""
    if raw:
        return Received(message)
    if foreign_types and header_event_type(message) in foreign_types:
        return Received(message, foreign=True)
    try:
        return Received(message, event=message_decode(message.value(), topic=message.topic()))
    except EventDecodeError as exc:
        return Received(message, undecodable=exc)
