"""Any server that speaks the OpenAI API: vLLM, llama.cpp, Ollama, OpenAI itself.

Messages requests (the Anthropic dialect) are translated to chat completions and back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from batchway.config import ProviderConfig
from batchway.core.endpoints import Endpoint
from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.dialects.chat_messages.replies import chat_to_messages_response
from batchway.dialects.chat_messages.requests import messages_to_chat_request
from batchway.dialects.chat_messages.streams import ChatChunksToMessageEvents
from batchway.dialects.sse import DONE, sse_event, sse_events
from batchway.providers._http import HttpUpstream, parse_answer
from batchway.providers.kind import ProviderKind

__all__ = ["KIND", "PROVIDER_TYPE", "OpenAICompatibleProvider"]

PROVIDER_TYPE = "openai-compatible"


class OpenAICompatibleProvider:
    """Forwards each request as is to ``base_url`` (which usually ends in ``/v1``)."""

    native: NativeBatchAPI | None = None

    def __init__(self, name: str, config: ProviderConfig) -> None:
        assert config.base_url is not None  # KIND.check makes sure of it
        self.name = name
        self.max_concurrency = config.max_concurrency
        headers = dict(config.headers)
        if config.sends_api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._strip_v1 = config.base_url.rstrip("/").endswith("/v1")
        self._allow_extensions = config.allow_extensions
        self._http = HttpUpstream.for_provider(name, config, config.base_url, headers)

    def _path(self, endpoint: str) -> str:
        return endpoint[3:] if self._strip_v1 and endpoint.startswith("/v1/") else endpoint

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        if endpoint == Endpoint.MESSAGES:
            return await self._send_messages(body)
        status, data, request_id = await self._http.post(self._path(endpoint), body)
        return UpstreamResponse(status=status, body=data, request_id=request_id)

    async def _send_messages(self, body: bytes) -> UpstreamResponse:
        """A Messages request, run as a chat completion and answered as a Message."""
        chat = messages_to_chat_request(orjson.loads(body), allow_extensions=self._allow_extensions)
        status, data, request_id = await self._http.post(
            self._path(Endpoint.CHAT), orjson.dumps(chat)
        )
        message = chat_to_messages_response(parse_answer(data))
        return UpstreamResponse(status=status, body=orjson.dumps(message), request_id=request_id)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        if endpoint != Endpoint.MESSAGES:
            async for chunk in self._http.stream(self._path(endpoint), body):
                yield chunk
            return
        request = orjson.loads(body)
        chat = messages_to_chat_request(request, allow_extensions=self._allow_extensions)
        events = ChatChunksToMessageEvents(str(request.get("model", "")))
        upstream = self._http.stream(self._path(Endpoint.CHAT), orjson.dumps(chat))
        async for _, data in sse_events(upstream):
            if data == DONE:
                break
            for event in events.feed(orjson.loads(data)):
                yield sse_event(event)
        for event in events.finish():
            yield sse_event(event)

    async def close(self) -> None:
        await self._http.close()


KIND = ProviderKind(name=PROVIDER_TYPE, build=OpenAICompatibleProvider, needs_base_url=True)
