"""Any server that speaks the OpenAI API: vLLM, llama.cpp, Ollama, OpenAI itself.

Messages requests (the Anthropic dialect) are translated to chat completions and back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from batchway.config import ProviderConfig
from batchway.providers._chat_messages import messages_to_chat_request
from batchway.providers._chat_messages_replies import chat_to_messages_response
from batchway.providers._chat_messages_stream import ChatChunksToMessageEvents
from batchway.providers._http import CHAT_ENDPOINT, MESSAGES_ENDPOINT, HttpUpstream, parse_answer
from batchway.providers._native import NativeBatchAPI
from batchway.providers._sse import DONE, sse_event, sse_events
from batchway.providers.base import UpstreamResponse

__all__ = ["PROVIDER_TYPE", "OpenAICompatibleProvider"]

PROVIDER_TYPE = "openai-compatible"


class OpenAICompatibleProvider:
    """Forwards each request as is to ``base_url`` (which usually ends in ``/v1``)."""

    native: NativeBatchAPI | None = None

    def __init__(self, name: str, config: ProviderConfig) -> None:
        assert config.base_url is not None  # the config checks this
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
        if endpoint == MESSAGES_ENDPOINT:
            return await self._send_messages(body)
        status, data, request_id = await self._http.post(self._path(endpoint), body)
        return UpstreamResponse(status=status, body=data, request_id=request_id)

    async def _send_messages(self, body: bytes) -> UpstreamResponse:
        """A Messages request, run as a chat completion and answered as a Message."""
        chat = messages_to_chat_request(orjson.loads(body), allow_extensions=self._allow_extensions)
        status, data, request_id = await self._http.post(
            self._path(CHAT_ENDPOINT), orjson.dumps(chat)
        )
        message = chat_to_messages_response(parse_answer(data))
        return UpstreamResponse(status=status, body=orjson.dumps(message), request_id=request_id)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        if endpoint != MESSAGES_ENDPOINT:
            async for chunk in self._http.stream(self._path(endpoint), body):
                yield chunk
            return
        request = orjson.loads(body)
        chat = messages_to_chat_request(request, allow_extensions=self._allow_extensions)
        events = ChatChunksToMessageEvents(str(request.get("model", "")))
        upstream = self._http.stream(self._path(CHAT_ENDPOINT), orjson.dumps(chat))
        async for _, data in sse_events(upstream):
            if data == DONE:
                break
            for event in events.feed(orjson.loads(data)):
                yield sse_event(event)
        for event in events.finish():
            yield sse_event(event)

    async def close(self) -> None:
        await self._http.close()
