"""Server-Sent Events: reading an upstream stream into events, writing events back out."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

__all__ = ["DONE", "sse_data", "sse_event", "sse_events"]

DONE = b"[DONE]"


async def sse_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """``(event name, data)`` for each event of a byte stream, however its chunks fall."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            event = _parse(block)
            if event is not None:
                yield event
    event = _parse(buffer)
    if event is not None:
        yield event


def _parse(block: bytes) -> tuple[str | None, bytes] | None:
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode()
    return (name, b"\n".join(data)) if data else None


def sse_event(event: dict[str, Any]) -> bytes:
    """An Anthropic-style event: ``event: <type>`` and its JSON."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def sse_data(data: dict[str, Any] | bytes) -> bytes:
    """An OpenAI-style event: just ``data: <json>`` (or ``[DONE]``)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"data: " + payload + b"\n\n"
