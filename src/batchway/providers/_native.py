"""Providers' native batch APIs behind one interface, for the worker's native batch mode.

`OpenAINativeBatches` (OpenAI and Azure: an uploaded input file, a batch with metadata, output
and error files) and `AnthropicNativeBatches` (Message Batches: inline requests, a results
stream) translate between the gateway's lines and each API. A line's upstream ``custom_id``
is the line's own id; what comes back is turned into that line's `ItemOutcome`, in the
dialect of the line's endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from batchway.core.endpoints import Endpoint
from batchway.core.models import BatchItem, ItemOutcome
from batchway.core.ports import NativeStatus
from batchway.core.states import ItemState
from batchway.core.usage import usage_of
from batchway.core.validation import split_lines
from batchway.dialects.chat_messages.errors import dialect_error_body
from batchway.dialects.chat_messages.replies import (
    chat_to_messages_response,
    messages_to_chat_response,
    status_for_anthropic_error_type,
)
from batchway.dialects.chat_messages.requests import (
    chat_to_messages_request,
    messages_to_chat_request,
)
from batchway.errors import UntranslatableRequest, UpstreamRejected
from batchway.providers._batch_clients import (
    AnthropicBatchClient,
    OpenAIBatchClient,
    UpstreamBatch,
    UpstreamMessageBatch,
)

__all__ = [
    "METADATA_KEY",
    "AnthropicNativeBatches",
    "OpenAINativeBatches",
]

METADATA_KEY = "batchway_upstream"
OPENAI_MAX_BYTES = 190 * 1024 * 1024  # under the 200 MB input file limit, with room to spare
ANTHROPIC_MAX_BYTES = 240 * 1024 * 1024  # under the 256 MB request limit
_NOT_RUN = {"batch_expired", "batch_cancelled"}


def _translated(
    lines: list[BatchItem], endpoint: str, translate: Callable[[bytes], bytes]
) -> tuple[list[tuple[BatchItem, bytes]], list[ItemOutcome]]:
    """Each line's body as the upstream takes it, and the lines that cannot be sent."""
    ready: list[tuple[BatchItem, bytes]] = []
    refused: list[ItemOutcome] = []
    for item in lines:
        try:
            ready.append((item, translate(item.body)))
        except UntranslatableRequest as error:
            body = dialect_error_body(error, endpoint)
            refused.append(
                ItemOutcome(item_id=item.id, state=ItemState.FAILED, status_code=400, response=body)
            )
    return ready, refused


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _succeeded(item_id: str, answer: Any, request_id: str | None) -> ItemOutcome:
    return ItemOutcome(
        item_id=item_id,
        state=ItemState.SUCCEEDED,
        status_code=200,
        response=orjson.dumps(answer),
        request_id=request_id,
        usage=usage_of(answer),
    )


# -- OpenAI and Azure ---------------------------------------------------------------------------


class OpenAINativeBatches:
    """OpenAI's (and Azure's) Files + Batches API. Messages lines go in as chat completions."""

    can_find = True

    def __init__(
        self,
        client: OpenAIBatchClient,
        *,
        endpoints: frozenset[Endpoint],
        max_lines: int,
        fallback: bool,
        poll_seconds: tuple[float, float],
    ) -> None:
        self._client = client
        self.endpoints = endpoints
        self.max_lines = max_lines
        self.max_bytes = OPENAI_MAX_BYTES
        self.fallback = fallback
        self.poll_seconds = poll_seconds

    @staticmethod
    def _upstream_endpoint(endpoint: str) -> str:
        return Endpoint.CHAT if endpoint == Endpoint.MESSAGES else endpoint

    @staticmethod
    def _translate(endpoint: str) -> Callable[[bytes], bytes]:
        if endpoint != Endpoint.MESSAGES:
            return lambda body: body
        return lambda body: orjson.dumps(messages_to_chat_request(orjson.loads(body)))

    async def prepare(
        self, ref: str, endpoint: str, lines: list[BatchItem]
    ) -> tuple[str | None, list[ItemOutcome]]:
        ready, refused = _translated(lines, endpoint, self._translate(endpoint))
        if not ready:
            return None, refused
        url = orjson.dumps(self._upstream_endpoint(endpoint))
        data = b"".join(
            b'{"custom_id":"' + item.id.encode() + b'","method":"POST","url":' + url
            + b',"body":' + body + b"}\n"
            for item, body in ready
        )  # fmt: skip
        return await self._client.upload(f"{ref}.jsonl", data), refused

    async def create(
        self, ref: str, endpoint: str, file_id: str | None, lines: list[BatchItem]
    ) -> NativeStatus:
        assert file_id is not None
        batch = await self._client.create_batch(
            file_id, self._upstream_endpoint(endpoint), metadata={METADATA_KEY: ref}
        )
        return self._status(batch)

    async def find(self, ref: str) -> NativeStatus | None:
        batch = await self._client.find_batch(METADATA_KEY, ref)
        return self._status(batch) if batch is not None else None

    async def retrieve(self, upstream_id: str) -> NativeStatus:
        return self._status(await self._client.retrieve_batch(upstream_id))

    async def cancel(self, upstream_id: str) -> NativeStatus:
        return self._status(await self._client.cancel_batch(upstream_id))

    @staticmethod
    def _status(batch: UpstreamBatch) -> NativeStatus:
        failure = None
        if batch.status == "failed" and not (batch.output_file_id or batch.error_file_id):
            failure = "; ".join(f"{e.code}: {e.message}" for e in batch.errors) or "failed"
        return NativeStatus(
            id=batch.id,
            status=batch.status,
            terminal=batch.terminal,
            cancelling=batch.status in ("cancelling", "cancelled"),
            failure=failure,
            raw=batch,
        )

    async def results(self, status: NativeStatus, endpoint: str) -> AsyncIterator[ItemOutcome]:
        batch: UpstreamBatch = status.raw
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            async for raw in split_lines(self._client.download(file_id)):
                if raw.strip():
                    outcome = self._outcome(orjson.loads(raw), endpoint)
                    if outcome is not None:
                        yield outcome

    @staticmethod
    def _outcome(line: Any, endpoint: str) -> ItemOutcome | None:
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            return None
        item_id = line["custom_id"]
        response = line.get("response")
        if isinstance(response, dict) and isinstance(response.get("status_code"), int):
            status = response["status_code"]
            body = response.get("body")
            request_id = response.get("request_id") or None
            if 200 <= status < 300:
                if endpoint == Endpoint.MESSAGES and isinstance(body, dict):
                    body = chat_to_messages_response(body)
                return _succeeded(item_id, body, request_id)
            refusal = UpstreamRejected(
                status=status, body=orjson.dumps(body), request_id=request_id
            )
            return ItemOutcome(
                item_id=item_id,
                state=ItemState.FAILED,
                status_code=status,
                response=dialect_error_body(refusal, endpoint),
                request_id=request_id,
            )
        error = line.get("error")
        if not isinstance(error, dict):
            error = {}
        code = str(error.get("code") or "upstream_error")
        if code in _NOT_RUN:
            return None  # never ran upstream: settled with its client batch
        return ItemOutcome(
            item_id=item_id,
            state=ItemState.FAILED,
            error_code=code,
            error_message=str(error.get("message") or "The provider could not run this request."),
        )


# -- Anthropic ----------------------------------------------------------------------------------


class AnthropicNativeBatches:
    """Anthropic's Message Batches. Chat lines go in as Messages requests.

    Message batches carry no metadata, so one created just before a crash (and not yet
    recorded) cannot be found again: its lines are submitted once more.
    """

    can_find = False

    def __init__(
        self,
        client: AnthropicBatchClient,
        *,
        default_max_tokens: int,
        max_lines: int,
        fallback: bool,
        poll_seconds: tuple[float, float],
    ) -> None:
        self._client = client
        self._default_max_tokens = default_max_tokens
        self.endpoints = frozenset({Endpoint.MESSAGES, Endpoint.CHAT})
        self.max_lines = max_lines
        self.max_bytes = ANTHROPIC_MAX_BYTES
        self.fallback = fallback
        self.poll_seconds = poll_seconds

    def _translate(self, endpoint: str) -> Callable[[bytes], bytes]:
        if endpoint == Endpoint.MESSAGES:
            return lambda body: body
        return lambda body: orjson.dumps(
            chat_to_messages_request(
                orjson.loads(body), default_max_tokens=self._default_max_tokens
            )
        )

    async def prepare(
        self, ref: str, endpoint: str, lines: list[BatchItem]
    ) -> tuple[str | None, list[ItemOutcome]]:
        _, refused = _translated(lines, endpoint, self._translate(endpoint))
        return None, refused  # the requests go inline, with the create call

    async def create(
        self, ref: str, endpoint: str, file_id: str | None, lines: list[BatchItem]
    ) -> NativeStatus:
        ready, _ = _translated(lines, endpoint, self._translate(endpoint))
        requests = [{"custom_id": item.id, "params": orjson.loads(body)} for item, body in ready]
        return self._status(await self._client.create_batch(requests))

    async def find(self, ref: str) -> NativeStatus | None:
        return None

    async def retrieve(self, upstream_id: str) -> NativeStatus:
        return self._status(await self._client.retrieve_batch(upstream_id))

    async def cancel(self, upstream_id: str) -> NativeStatus:
        return self._status(await self._client.cancel_batch(upstream_id))

    @staticmethod
    def _status(batch: UpstreamMessageBatch) -> NativeStatus:
        return NativeStatus(
            id=batch.id,
            status=batch.processing_status,
            terminal=batch.ended,
            cancelling=batch.processing_status == "canceling",
            raw=batch,
        )

    async def results(self, status: NativeStatus, endpoint: str) -> AsyncIterator[ItemOutcome]:
        async for line in self._client.results(status.raw):
            item_id = line.get("custom_id")
            result = line.get("result")
            if not isinstance(item_id, str) or not isinstance(result, dict):
                continue
            kind = result.get("type")
            if kind == "succeeded":
                message = _dict(result.get("message"))
                if endpoint == Endpoint.CHAT:
                    message = messages_to_chat_response(message)
                yield _succeeded(item_id, message, None)
            elif kind == "errored":
                envelope = _dict(result.get("error"))
                inner = _dict(envelope.get("error"))
                status_code = status_for_anthropic_error_type(str(inner.get("type", "")))
                refusal = UpstreamRejected(
                    status=status_code,
                    body=orjson.dumps(envelope),
                    request_id=envelope.get("request_id"),
                )
                yield ItemOutcome(
                    item_id=item_id,
                    state=ItemState.FAILED,
                    status_code=status_code,
                    response=dialect_error_body(refusal, endpoint),
                )
            # canceled and expired requests never ran: settled with their client batch
