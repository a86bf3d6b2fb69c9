"""Handler of the `dead_letters` consumer: copy each dead letter into the database."""

from confluent_kafka import Message

from kafka_bridge.dead_letters import dead_letter_store


def on_dead_letter(message: Message) -> None:
    dead_letter_store(message=message)
