"""Event contracts, the mechanism: the envelope every event travels in, the declaration of an
event type (name, topic, versions, upcasters) and the registry of every type the apps declare.
The types themselves live beside the app that owns them (`<app>/events.py`), registered from
its AppConfig.ready().

Producers validate payloads against the current version before writing to the outbox;
consumers decode any version listed here. Adding a field with a default is a compatible
change within a version; anything else is a new version registered beside the old one,
with an upcaster from the version before it: a payload of an older version is validated
against its own schema, then upcast step by step to the current one, so handlers only ever
see the current shape. The released JSON Schema of every (type, version) is checked in under
its app's `schemas/` folder and `manage.py check_event_contracts` keeps the code to it (see
`kafka_bridge.contract_schemas`).
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class EventDecodeError(Exception):
    """The bytes are not an event we understand: bad JSON, envelope, type, version or data."""


class Payload(BaseModel):
    # Unknown fields are ignored so that a newer producer can add optional fields.
    model_config = ConfigDict(extra="ignore", frozen=True)


Upcaster = Callable[[Any], Payload]


@dataclass(frozen=True)
class EventType:
    name: str
    topic: str
    versions: dict[int, type[Payload]]
    # version n → the function turning a payload of version n into one of version n + 1.
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [
            v for v in self.versions if v != self.current_version and v not in self.upcasters
        ]
        if sorted(self.versions) != list(range(1, self.current_version + 1)) or missing:
            raise ValueError(f"{self.name}: versions must be 1..n, each below n with an upcaster")

    @property
    def current_version(self) -> int:
        return max(self.versions)

    def upcast(self, payload: Payload, *, version: int) -> Payload:
        """A payload of `version` as the current version (unchanged if it is current)."""
        for step in range(version, self.current_version):
            payload = self.upcasters[step](payload)
        return payload


# Every event type the apps declared (`<app>/events.py`), by name: filled from each app's
# AppConfig.ready() through `event_types_register`.
EVENT_TYPES: dict[str, EventType] = {}
# Where each event type's released JSON Schemas are checked in: its app's `schemas/`.
SCHEMA_DIRS: dict[str, Path] = {}


def event_types_register(*event_types: EventType, schemas_dir: Path) -> None:
    """Declare event types (from an app's `ready()`), with the folder holding their
    released schemas. A name belongs to one declaration: a second, different one is a bug."""
    for event_type in event_types:
        known = EVENT_TYPES.get(event_type.name)
        if known is not None and known != event_type:
            raise ValueError(f"event type {event_type.name!r} is declared twice")
        EVENT_TYPES[event_type.name] = event_type
        SCHEMA_DIRS[event_type.name] = schemas_dir


def all_topics() -> list[str]:
    """Logical topic names, in a stable order."""
    return sorted({event_type.topic for event_type in EVENT_TYPES.values()})


class Envelope(BaseModel):
    """The wrapper every event travels in; `data` is validated against its schema."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: datetime
    correlation_id: str
    causation_id: uuid.UUID | None = None
    aggregate_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Event:
    envelope: Envelope
    payload: Payload

    @property
    def event_id(self) -> uuid.UUID:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id


def event_type_get(name: str) -> EventType:
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise EventDecodeError(f"unknown event type {name!r}") from None


def payload_validate(*, event_type: str, version: int, data: Any) -> Payload:
    """Validate `data` against the schema of (type, version), not upcast; raise
    EventDecodeError if it does not fit."""
    schema = event_type_get(event_type).versions.get(version)
    if schema is None:
        raise EventDecodeError(f"unsupported version {version} of {event_type}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid {event_type} v{version} payload: {exc}") from exc


def event_decode(raw: bytes | None) -> Event:
    """Parse plain JSON envelope bytes into an Event, or raise EventDecodeError saying why
    not. (Messages in the Schema Registry wire format: `kafka_bridge.wire.message_decode`.)"""
    if not raw:
        raise EventDecodeError("empty message value")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError(f"value is not JSON: {exc}") from exc
    return event_from_document(document)


def event_from_document(document: Any) -> Event:
    """The Event of a parsed envelope: its payload validated against the version it was
    written in, then upcast to the current version. `envelope.schema_version` stays the
    version on the wire."""
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as exc:
        raise EventDecodeError(f"invalid envelope: {exc}") from exc
    version = envelope.schema_version
    payload = payload_validate(event_type=envelope.event_type, version=version, data=envelope.data)
    upcast = event_type_get(envelope.event_type).upcast(payload, version=version)
    return Event(envelope=envelope, payload=upcast)
