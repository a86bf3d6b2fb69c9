"""Kafka handler of the webhooks consumer: each order event becomes one pending delivery per
endpoint subscribed to it, recorded in the batch's transaction. Nothing here waits on HTTP:
`run_webhook_dispatcher` sends them."""

from collections.abc import Sequence

from kafka_bridge.contracts import Event
from kafka_bridge.registry import OFF_PATH_BATCH_MAX_WAIT_MS, ConsumerSpec
from webhooks.payloads import SUBSCRIBABLE_EVENT_TYPES, order_event_message
from webhooks.services import webhook_deliveries_record


def on_order_events(events: Sequence[Event]) -> None:
    webhook_deliveries_record(messages=[order_event_message(event) for event in events])


CONSUMER = ConsumerSpec(
    name="webhooks",
    handlers=dict.fromkeys(SUBSCRIBABLE_EVENT_TYPES, on_order_events),
    # Deliveries are sent by the dispatcher, over HTTP, with retries.
    batch_max_wait_ms=OFF_PATH_BATCH_MAX_WAIT_MS,
    whole_batches=True,  # deliveries are inserted in event order
)
