"""Reading Server-Sent Events (the live order status) as a client would, line by line."""

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SseEvent:
    id: int | None
    event: str
    data: dict


@dataclass(frozen=True)
class SseComment:
    text: str


@dataclass
class SseParser:
    """Feed it the stream's lines; it returns an event at each blank line that ends one, a
    comment for each comment line, None otherwise. `retry` keeps the last retry field."""

    retry: int | None = None
    _fields: dict[str, str] = field(default_factory=dict)

    def feed(self, line: str) -> SseEvent | SseComment | None:
        if line.startswith(":"):
            return SseComment(line[1:].strip())
        if line == "":
            fields, self._fields = self._fields, {}
            if "data" not in fields:
                return None
            event_id = fields.get("id")
            return SseEvent(
                id=int(event_id) if event_id else None,
                event=fields.get("event", "message"),
                data=json.loads(fields["data"]),
            )
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "retry":
            self.retry = int(value)
        elif name == "data" and "data" in self._fields:
            self._fields["data"] += "\n" + value
        else:
            self._fields[name] = value
        return None


def sse_items(lines: Iterator[str]) -> Iterator[SseEvent | SseComment]:
    parser = SseParser()
    for line in lines:
        item = parser.feed(line)
        if item is not None:
            yield item


async def sse_items_async(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent | SseComment]:
    parser = SseParser()
    async for line in lines:
        item = parser.feed(line)
        if item is not None:
            yield item
