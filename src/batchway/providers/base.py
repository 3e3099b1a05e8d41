"""What every provider offers the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from batchway.providers._native import NativeBatchAPI

__all__ = ["Provider", "UpstreamResponse"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamResponse:
    """A successful (2xx) upstream answer, body untouched."""

    status: int
    body: bytes
    request_id: str | None = None


class Provider(Protocol):
    """An upstream that can run one request of an OpenAI-style endpoint.

    ``send`` returns only 2xx answers; every failure is raised as an
    ``UpstreamError`` subclass carrying the upstream status and body when there was one.
    """

    name: str
    max_concurrency: int
    # the provider's own batch API, when batches may use it (None: lines run as calls)
    native: NativeBatchAPI | None

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        """POST ``body`` (JSON bytes) to ``endpoint`` (e.g. ``/v1/chat/completions``)."""
        ...

    def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        """Run a streaming request; yields Server-Sent Events in the endpoint's dialect.

        An upstream that refuses the request raises ``UpstreamError`` before the first
        chunk, so the caller can still answer with an error status.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
