"""Anthropic's Messages API, and Message Batches for batch lines (unless ``batch: execute``).

Chat-completions requests are translated to Messages and back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from batchway.config import ProviderConfig
from batchway.core.endpoints import Endpoint
from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.dialects.chat_messages.replies import messages_to_chat_response
from batchway.dialects.chat_messages.requests import chat_to_messages_request
from batchway.dialects.chat_messages.streams import MessageEventsToChatChunks
from batchway.dialects.sse import DONE, sse_data, sse_events
from batchway.errors import UpstreamRejected
from batchway.providers._batch_clients import AnthropicBatchClient
from batchway.providers._http import HttpUpstream, parse_answer
from batchway.providers._native import AnthropicNativeBatches
from batchway.providers.kind import ProviderKind

__all__ = ["API_VERSION", "DEFAULT_BASE_URL", "KIND", "PROVIDER_TYPE", "AnthropicProvider"]

PROVIDER_TYPE = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_REQUESTS = 100_000  # per message batch


class AnthropicProvider:
    """Runs Messages requests as they are and chat completions through translation."""

    native: NativeBatchAPI | None = None

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.max_concurrency = config.max_concurrency
        headers = {"anthropic-version": config.anthropic_version, **config.headers}
        if config.sends_api_key:
            headers["x-api-key"] = str(config.api_key)
        base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._default_max_tokens = config.default_max_tokens
        self._http = HttpUpstream.for_provider(name, config, base_url.removesuffix("/v1"), headers)
        if config.batch != "execute":
            self.native = AnthropicNativeBatches(
                AnthropicBatchClient(self._http),
                default_max_tokens=config.default_max_tokens,
                max_lines=config.batch_max_lines or MAX_REQUESTS,
                fallback=config.batch == "auto",
                poll_seconds=(config.batch_poll_seconds, config.batch_poll_max_seconds),
            )

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        if endpoint == Endpoint.MESSAGES:
            status, data, request_id = await self._http.post(Endpoint.MESSAGES, body)
            return UpstreamResponse(status=status, body=data, request_id=request_id)
        if endpoint != Endpoint.CHAT:
            raise UpstreamRejected(
                f"Anthropic models do not serve {endpoint}; only chat completions and messages.",
                status=400,
            )
        request = chat_to_messages_request(
            orjson.loads(body), default_max_tokens=self._default_max_tokens
        )
        status, data, request_id = await self._http.post(Endpoint.MESSAGES, orjson.dumps(request))
        completion = messages_to_chat_response(parse_answer(data))
        return UpstreamResponse(status=status, body=orjson.dumps(completion), request_id=request_id)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        if endpoint == Endpoint.MESSAGES:
            async for chunk in self._http.stream(Endpoint.MESSAGES, body):
                yield chunk
            return
        if endpoint != Endpoint.CHAT:
            raise UpstreamRejected(f"Anthropic models do not serve {endpoint}.", status=400)
        request = orjson.loads(body)
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        converted = chat_to_messages_request(request, default_max_tokens=self._default_max_tokens)
        chunks = MessageEventsToChatChunks(str(request.get("model", "")), include_usage)
        upstream = self._http.stream(Endpoint.MESSAGES, orjson.dumps(converted))
        async for _, data in sse_events(upstream):
            for converted_chunk in chunks.feed(orjson.loads(data)):
                yield sse_data(converted_chunk)
        yield sse_data(DONE)

    async def close(self) -> None:
        await self._http.close()


KIND = ProviderKind(name=PROVIDER_TYPE, build=AnthropicProvider)  # base_url: DEFAULT_BASE_URL
