"""How events look on the wire: the plain JSON envelope (the default), or the Confluent Schema
Registry wire format when `SCHEMA_REGISTRY_URL` is set (confluent-kafka's JSONSerializer
and JSONDeserializer: a zero byte, the 4-byte schema id, then the same JSON envelope).

**Registry serialisation happens in the relay, when an event is published**, not when the
outbox records it. The outbox row keeps the plain JSON envelope, validated and serialised
once as before; with a registry the relay hands it to the JSONSerializer of its (type,
version) on the way to Kafka. Why there:
- Recording stays a local database write. Serialising at record time would call the
  registry (on first use of each schema, and whenever its cache is cold) inside the API's
  transaction, so a registry outage would fail requests. At publish time it only holds the
  relay back: rows stay pending and go out once the registry answers, as with a broker outage.
- A schema id means something only to one registry. Bytes framed at record time would carry
  ids into rows that may wait, be replayed from the dead letters, or be published after the
  setting changed; framing at publish time always uses the registry in force.
The cost is the relay's: with a registry it parses each row's JSON and the serializer
validates it against the schema, work the plain path skips.

Schemas are registered per event type and version: the subject is the schema's title,
`<event type>.v<version>` (record name strategy; several event types share a topic), and
the schema is the envelope with `data` replaced by that version's released payload schema
(`kafka_bridge.contract_schemas`). Compatible additions to a version are new versions of
its subject; an incompatible change is a new event version, so a new subject.

Decoding accepts both formats whatever the setting: a topic that moved to the registry still
holds the plain events from before, and a consumer without a registry URL dead-letters framed
messages with a reason instead of misreading them.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError
from django.conf import settings
from pydantic_core import to_json

from kafka_bridge.contract_schemas import payload_json_schema
from kafka_bridge.contracts import (
    Envelope,
    Event,
    EventDecodeError,
    event_decode,
    event_from_document,
)

# confluent-kafka's registry client and serializers are imported where first used: they cost
# every process that imports this module (each consumer, the relay, the web server) ~0.2 s
# of CPU at start-up, for a setting that is off by default.
if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

# The first byte of a value in the Schema Registry wire format; a JSON envelope starts "{".
REGISTRY_MAGIC_BYTE = b"\x00"


def _registry_framed(value: bytes | None) -> bool:
    """Magic byte, 4-byte schema id, then a JSON object: anything else is not an event of
    ours in the registry format (and is reported as the plain bytes it is)."""
    return bool(value) and value[:1] == REGISTRY_MAGIC_BYTE and value[5:6] == b"{"


def registry_url() -> str:
    return settings.SCHEMA_REGISTRY["URL"]


@functools.cache
def _client(url: str, user_info: str) -> SchemaRegistryClient:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    config = {"url": url}
    if user_info:
        config |= {"basic.auth.credentials.source": "USER_INFO", "basic.auth.user.info": user_info}
    # new_client gives the in-memory mock for mock:// URLs (tests). One client per process
    # and URL: its caches (and a mock's schemas) are shared by serializer and deserializer.
    return SchemaRegistryClient.new_client(config)


def registry_client() -> SchemaRegistryClient:
    registry = settings.SCHEMA_REGISTRY
    if not registry["URL"]:
        raise RuntimeError("SCHEMA_REGISTRY_URL is not set")
    return _client(registry["URL"], registry["BASIC_AUTH_USER_INFO"])


def registry_schema(event_type: str, version: int) -> dict[str, Any]:
    """The JSON Schema registered for (type, version): the envelope with that payload."""
    payload = payload_json_schema(event_type, version)
    definitions = payload.pop("$defs", {})
    dialect = payload.pop("$schema")
    envelope = Envelope.model_json_schema()
    envelope["properties"]["data"] = payload
    return {
        "$schema": dialect,
        **envelope,
        "title": f"{event_type}.v{version}",
        **({"$defs": definitions} if definitions else {}),
    }


class RegistryFramer:
    """The relay's side: plain JSON envelope bytes in, registry wire format out."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self._client = client
        self._serializers: dict[tuple[str, int], JSONSerializer] = {}

    def frame(self, value: bytes, *, event_type: str, version: int, topic: str) -> bytes:
        """Raises on a registry that cannot be reached and on a value its schema refuses;
        the relay records either on the row and retries it."""
        serializer = self._serializers.get((event_type, version))
        if serializer is None:
            from confluent_kafka.schema_registry import record_subject_name_strategy
            from confluent_kafka.schema_registry.json_schema import JSONSerializer

            serializer = JSONSerializer(
                json.dumps(registry_schema(event_type, version)),
                self._client,
                conf={"subject.name.strategy": record_subject_name_strategy},
            )
            self._serializers[(event_type, version)] = serializer
        framed = serializer(
            json.loads(bytes(value)), SerializationContext(topic, MessageField.VALUE)
        )
        assert framed is not None  # only None for a None value
        return framed


def registry_framer() -> RegistryFramer | None:
    """A framer when SCHEMA_REGISTRY_URL is set; None means plain JSON envelopes."""
    return RegistryFramer(registry_client()) if registry_url() else None


@functools.cache
def _deserializer(client: SchemaRegistryClient) -> JSONDeserializer:
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer

    # No reader schema: each message is validated against the schema its id names.
    return JSONDeserializer(None, schema_registry_client=client)


def _registry_document(value: bytes, topic: str) -> Any:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if not registry_url():
        raise EventDecodeError("Schema Registry wire format, but SCHEMA_REGISTRY_URL is not set")
    try:
        return _deserializer(registry_client())(
            value, SerializationContext(topic, MessageField.VALUE)
        )
    except SerializationError as exc:
        raise EventDecodeError(f"not a valid registry-framed event: {exc}") from exc
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            raise EventDecodeError(f"schema id unknown to the registry: {exc}") from exc
        raise  # the registry is unavailable: transient, never a reason to dead-letter


def message_decode(value: bytes | None, *, topic: str) -> Event:
    """The Event in a message value of either format, or EventDecodeError saying why not."""
    if _registry_framed(value):
        return event_from_document(_registry_document(value, topic))
    return event_decode(value)


def envelope_json(value: bytes, *, topic: str) -> bytes:
    """The plain JSON envelope of a message value of either format (what the outbox stores):
    a plain value as it is, byte for byte."""
    if not _registry_framed(value):
        return value
    return to_json(_registry_document(value, topic))
