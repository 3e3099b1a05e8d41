"""Async clients for the providers' *native* batch APIs: the I/O the native batch mode uses.

`OpenAIBatchClient` speaks OpenAI Files + Batches, and Azure OpenAI's classic flavour of them
(``api-version`` on every call); `AnthropicBatchClient` speaks Anthropic Message Batches.
Both ride on a pooled `HttpUpstream`, so auth lives in its session headers and every
failure arrives as an ``UpstreamError``: 429 and 5xx (and connection errors, timeouts) are
retryable, other 4xx final. A 2xx answer that is
not the expected object is `UpstreamUnavailable` (retryable), as `parse_answer` decides.

Answers are normalized into frozen dataclasses that tolerate Azure's quirks (capitalised
statuses, ``""`` file ids, ``null`` counters, string line numbers). File contents and
results are streamed, never held whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import aiohttp

from batchway.errors import UpstreamUnavailable
from batchway.providers._http import HttpUpstream, parse_answer

__all__ = [
    "AnthropicBatchClient",
    "OpenAIBatchClient",
    "UpstreamBatch",
    "UpstreamBatchError",
    "UpstreamMessageBatch",
]

OPENAI_TERMINAL: Final = frozenset({"completed", "failed", "expired", "cancelled"})
_LIST_LIMIT: Final = 100
_BATCHES: Final = "/v1/messages/batches"

JSONObject = dict[str, Any]


class UpstreamBatchError(NamedTuple):
    """One batch-level validation error (``errors.data[]``); ``line`` is 1-based."""

    code: str
    message: str
    line: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamBatch:
    """An OpenAI/Azure batch object as the provider reported it, normalized.

    ``status`` is lower-case; file ids are None when absent, null or ``""`` (Azure); the
    counters are 0 when null; ``metadata`` is empty when null.
    """

    id: str
    status: str
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    errors: tuple[UpstreamBatchError, ...]
    metadata: dict[str, str]

    @property
    def terminal(self) -> bool:
        """Whether the batch will not change any more."""
        return self.status in OPENAI_TERMINAL


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamMessageBatch:
    """An Anthropic message batch: ``processing_status`` is ``in_progress``, ``canceling``
    or ``ended``; ``results_url`` (absolute) is set once ended; ``counts`` holds
    ``processing``, ``succeeded``, ``errored``, ``canceled`` and ``expired``."""

    id: str
    processing_status: str
    results_url: str | None
    counts: dict[str, int]

    @property
    def ended(self) -> bool:
        """Whether every request has a result."""
        return self.processing_status == "ended"


class OpenAIBatchClient:
    """OpenAI Files + Batches over one `HttpUpstream`.

    OpenAI: ``base_url`` like ``https://api.openai.com/v1`` with a Bearer ``authorization``
    session header. Azure (classic): ``base_url`` ``https://{resource}.openai.azure.com/openai``
    with an ``api-key`` header and ``azure_api_version`` (sent as ``api-version`` on every call).
    """

    def __init__(self, http: HttpUpstream, *, azure_api_version: str | None = None) -> None:
        self._http = http
        self._params: dict[str, str] = (
            {"api-version": azure_api_version} if azure_api_version else {}
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: JSONObject | None = None,
        params: Mapping[str, str] | None = None,
    ) -> JSONObject:
        query = {**self._params, **params} if params else self._params or None
        _, data, _ = await self._http.request(method, path, json=json, params=query)
        return _object(parse_answer(data))

    async def upload(
        self,
        filename: str,
        chunks: AsyncIterable[bytes] | bytes,
        *,
        purpose: str = "batch",
    ) -> str:
        """Upload a file (multipart; an async iterable is streamed, chunked); its file id.

        An async iterable can be read once: to retry a failed upload, pass a fresh one.
        """
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", chunks, filename=filename, content_type="application/jsonl")
        writer = form()
        # the session's default content-type is JSON: name the multipart one explicitly
        _, data, _ = await self._http.request(
            "POST",
            "/files",
            data=writer,
            params=self._params or None,
            headers={"content-type": writer.content_type},
        )
        return _str(_object(parse_answer(data)), "id")

    async def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        *,
        metadata: dict[str, str] | None = None,
        completion_window: str = "24h",
    ) -> UpstreamBatch:
        """Create a batch over an uploaded ``purpose=batch`` file."""
        body: JSONObject = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata is not None:
            body["metadata"] = metadata
        return _batch(await self._call("POST", "/batches", json=body))

    async def retrieve_batch(self, batch_id: str) -> UpstreamBatch:
        return _batch(await self._call("GET", f"/batches/{_seg(batch_id)}"))

    async def cancel_batch(self, batch_id: str) -> UpstreamBatch:
        return _batch(await self._call("POST", f"/batches/{_seg(batch_id)}/cancel"))

    async def find_batch(
        self, metadata_key: str, value: str, *, pages: int = 5
    ) -> UpstreamBatch | None:
        """The newest batch whose metadata has ``metadata_key: value``, looking at most
        ``pages`` pages of 100 (to re-attach after a crash between create and recording)."""
        after: str | None = None
        for _ in range(pages):
            params = {"limit": str(_LIST_LIMIT)}
            if after is not None:
                params["after"] = after
            page = await self._call("GET", "/batches", params=params)
            items = page.get("data")
            if not isinstance(items, list) or not items:
                return None
            for item in items:
                metadata = item.get("metadata") if isinstance(item, dict) else None
                if isinstance(metadata, dict) and metadata.get(metadata_key) == value:
                    return _batch(item)
            # has_more missing: keep going until an empty page, as the SDK does
            if page.get("has_more") is False:
                return None
            after = _str(_object(items[-1]), "id")
        return None

    async def download(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's content as it arrives."""
        path = f"/files/{_seg(file_id)}/content"
        async for chunk in self._http.download(path, params=self._params or None):
            yield chunk

    async def delete_file(self, file_id: str) -> None:
        await self._call("DELETE", f"/files/{_seg(file_id)}")


class AnthropicBatchClient:
    """Anthropic Message Batches over one `HttpUpstream` whose base URL has no ``/v1``
    (as the Anthropic provider builds it) and whose session sends ``x-api-key`` and
    ``anthropic-version``."""

    def __init__(self, http: HttpUpstream) -> None:
        self._http = http

    async def _call(self, method: str, path: str, json: JSONObject | None = None) -> JSONObject:
        _, data, _ = await self._http.request(method, path, json=json)
        return _object(parse_answer(data))

    async def create_batch(self, requests: list[JSONObject]) -> UpstreamMessageBatch:
        """Create a batch of ``{"custom_id", "params"}`` requests."""
        return _message_batch(await self._call("POST", _BATCHES, {"requests": requests}))

    async def retrieve_batch(self, batch_id: str) -> UpstreamMessageBatch:
        return _message_batch(await self._call("GET", f"{_BATCHES}/{_seg(batch_id)}"))

    async def cancel_batch(self, batch_id: str) -> UpstreamMessageBatch:
        return _message_batch(await self._call("POST", f"{_BATCHES}/{_seg(batch_id)}/cancel"))

    async def delete_batch(self, batch_id: str) -> None:
        await self._call("DELETE", f"{_BATCHES}/{_seg(batch_id)}")

    async def results(self, batch: UpstreamMessageBatch) -> AsyncIterator[JSONObject]:
        """Each result line of an ended batch, parsed as it streams in from ``results_url``.

        Raises ValueError when the batch has no ``results_url`` (it has not ended), and
        `UpstreamUnavailable` for a line that is not a JSON object. Empty lines carry no
        result and are passed over.
        """
        if batch.results_url is None:
            raise ValueError(f"message batch {batch.id} has no results_url (not ended)")
        pending = b""
        async for chunk in self._http.download(batch.results_url):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield _object(parse_answer(line))
        if pending.strip():  # a last line without its newline
            yield _object(parse_answer(pending))


# -- parsing ---------------------------------------------------------------------------------


def _seg(value: str) -> str:
    """An id as one path segment."""
    return quote(value, safe="")


def _object(value: Any) -> JSONObject:
    if not isinstance(value, dict):
        raise UpstreamUnavailable("the upstream answered with JSON that is not an object")
    return value


def _str(obj: JSONObject, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise UpstreamUnavailable(f"the upstream's answer has no {key!r}")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():  # Azure types some ints as strings
        return int(value)
    return 0


def _line(value: Any) -> int | None:
    """A 1-based line number; Azure's 2024-10-21 spec types it as a string."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _batch(obj: JSONObject) -> UpstreamBatch:
    counts = obj.get("request_counts")
    counts = counts if isinstance(counts, dict) else {}
    errors = obj.get("errors")
    items = errors.get("data") if isinstance(errors, dict) else None
    metadata = obj.get("metadata")
    return UpstreamBatch(
        id=_str(obj, "id"),
        status=_str(obj, "status").lower(),
        input_file_id=_optional_str(obj.get("input_file_id")),
        output_file_id=_optional_str(obj.get("output_file_id")),
        error_file_id=_optional_str(obj.get("error_file_id")),
        total=_int(counts.get("total")),
        completed=_int(counts.get("completed")),
        failed=_int(counts.get("failed")),
        errors=tuple(
            UpstreamBatchError(
                code=str(item.get("code") or ""),
                message=str(item.get("message") or ""),
                line=_line(item.get("line")),
            )
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict)
        ),
        metadata=(
            {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
        ),
    )


def _message_batch(obj: JSONObject) -> UpstreamMessageBatch:
    counts = obj.get("request_counts")
    return UpstreamMessageBatch(
        id=_str(obj, "id"),
        processing_status=_str(obj, "processing_status"),
        results_url=_optional_str(obj.get("results_url")),
        counts=({str(k): _int(v) for k, v in counts.items()} if isinstance(counts, dict) else {}),
    )
