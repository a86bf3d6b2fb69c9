"""The keeper of the dead letters: one consumer of every `<topic>.dlq` that copies each dead
letter into the database, where staff see and replay it."""

from confluent_kafka import Message

from kafka_bridge.dead_letters import dead_letter_store
from kafka_bridge.registry import ConsumerSpec


def on_dead_letter(message: Message) -> None:
    dead_letter_store(message=message)


DEAD_LETTERS_CONSUMER = ConsumerSpec(
    name="dead_letters", message_handler=on_dead_letter, reads_dead_letters=True
)
