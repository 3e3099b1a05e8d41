"""`MemoryProvider`: a scripted `Provider` that answers in-process, by model name, as an
OpenAI-compatible provider in front of ``batchway.testing.FakeUpstream`` does, and records
every request. No sockets and no waiting (``fake-timeout`` times out at once).

The model picks the answer, by prefix (``fake-ok-2`` behaves as ``fake-ok``):

- ``fake-ok``, ``fake-slow`` (after ``slow_seconds``, 0 by default), any other model: an
  answer built as the fake upstream builds it (``"echo: "`` and the last user message).
- ``fake-429-then-ok`` / ``fake-500-then-ok``: the first call per (model, prompt) fails
  (429 with ``retry_after``, or 500), later ones answer.
- ``fake-500``: `UpstreamUnavailable` (500). ``fake-400``, ``fake-always-400``,
  ``fake-400-echo``: `UpstreamRejected` (400). ``fake-401-echo`` and ``fake-403``:
  `UpstreamAuthError`. ``fake-429-always-<case>``: `UpstreamRateLimited`, its
  ``retry_after`` read from the fake upstream's ``retry-after`` for ``<case>``.
- ``fake-timeout``: `UpstreamTimeout`. ``fake-bad-json``: a 200 whose body is not JSON.
- ``fake-echo-credentials``: ``"echo: "`` and the credentials received (none, here).

Messages requests (``/v1/messages``) are translated to chat completions and back, as the
OpenAI-compatible provider translates them.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.core.retry import retry_after_of
from batchway.dialects.chat_messages.replies import chat_to_messages_response
from batchway.dialects.chat_messages.requests import messages_to_chat_request
from batchway.dialects.chat_messages.streams import ChatChunksToMessageEvents
from batchway.dialects.sse import DONE, sse_event, sse_events
from batchway.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from batchway.testing._fake_openai import BUILDERS, Call, ErrorReply, chat_events

__all__ = ["MemoryCall", "MemoryProvider"]

_MESSAGES = "/v1/messages"
_CHAT = "/v1/chat/completions"
_BAD_JSON = b'{"id": "chatcmpl-broken", "choices": [ this is not json'

# longest prefixes first: "fake-500-then-ok" must win over "fake-500"
_BEHAVIOURS = (
    ("fake-echo-credentials", "echo"),
    ("fake-429-always", "429"),
    ("fake-429-then-ok", "429-once"),
    ("fake-401-echo", "401"),
    ("fake-400-echo", "400"),
    ("fake-403", "403"),
    ("fake-500-then-ok", "500-once"),
    ("fake-always-400", "400"),
    ("fake-bad-json", "bad-json"),
    ("fake-timeout", "timeout"),
    ("fake-slow", "slow"),
    ("fake-500", "500"),
    ("fake-400", "400"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryCall:
    """One request as the scripted upstream received it: ``endpoint`` with its ``/v1``, the
    body (a Messages request already translated to a chat completion), its JSON and model."""

    endpoint: str
    body: bytes
    json: Any
    model: str | None


def _retry_after_case(case: str) -> str | None:
    """The ``retry-after`` the fake upstream sends with ``fake-429-always-<case>``."""
    if case in ("date", "past"):
        return email.utils.formatdate(time.time() + (3600 if case == "date" else -3600), True)
    values = {"soon": "soon", "huge": "1e400", "inf": "inf", "nan": "nan"}
    return (values | {"negative": "-5", "day": "86400"}).get(case)


class MemoryProvider:
    """A provider named ``name`` whose upstream is a script (see the module docstring)."""

    def __init__(
        self,
        name: str = "memory",
        *,
        max_concurrency: int = 64,
        native: NativeBatchAPI | None = None,
        retry_after: str = "0",
        retry_after_max: float = 60.0,
        slow_seconds: float = 0.0,
        embedding_dimensions: int = 8,
    ) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.native = native
        self.retry_after = retry_after  # the Retry-After of fake-429-then-ok
        self.retry_after_max = retry_after_max
        self.slow_seconds = slow_seconds
        self.embedding_dimensions = embedding_dimensions
        self.requests: list[MemoryCall] = []
        self._failed_once: set[bytes] = set()
        self._seq = itertools.count(1)

    def count(self, model: str | None = None, endpoint: str | None = None) -> int:
        """How many recorded requests match ``model`` and ``endpoint``."""
        return sum(
            1
            for r in self.requests
            if (model is None or r.model == model) and (endpoint is None or r.endpoint == endpoint)
        )

    # -- the Provider port --------------------------------------------------------------

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        if endpoint != _MESSAGES:
            answer, request_id = await self._call(endpoint, body)
            return UpstreamResponse(status=200, body=_bytes(answer), request_id=request_id)
        chat = messages_to_chat_request(orjson.loads(body), allow_extensions=False)
        answer, request_id = await self._call(_CHAT, orjson.dumps(chat))
        if not isinstance(answer, dict):
            raise UpstreamUnavailable("the upstream answered with a body that is not JSON")
        message = chat_to_messages_response(answer)
        return UpstreamResponse(status=200, body=orjson.dumps(message), request_id=request_id)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        if endpoint != _MESSAGES:
            for chunk in await self._chunks(endpoint, body):
                yield chunk
            return
        request = orjson.loads(body)
        chat = messages_to_chat_request(request, allow_extensions=False)
        events = ChatChunksToMessageEvents(str(request.get("model", "")))
        chunks = await self._chunks(_CHAT, orjson.dumps(chat))
        async for _, data in sse_events(_aiter(chunks)):
            if data == DONE:
                break
            for event in events.feed(orjson.loads(data)):
                yield sse_event(event)
        for event in events.finish():
            yield sse_event(event)

    async def close(self) -> None:
        """Nothing to release."""

    # -- the scripted upstream ----------------------------------------------------------

    async def _chunks(self, endpoint: str, body: bytes) -> list[bytes]:
        """A streamed answer's chunks (its events, when it is a chat stream)."""
        answer, _ = await self._call(endpoint, body)
        return answer if isinstance(answer, list) else [_bytes(answer)]

    async def _call(self, endpoint: str, body: bytes) -> tuple[Any, str]:
        """The upstream's 2xx answer (a JSON object, event chunks, or raw bytes) and its
        request id; any other answer raised as the provider raises it."""
        request_id = f"req_memory{next(self._seq):012x}"
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        request = parsed if isinstance(parsed, dict) else None
        model = request.get("model") if request is not None else None
        model = model if isinstance(model, str) else None
        self.requests.append(MemoryCall(endpoint=endpoint, body=body, json=parsed, model=model))
        try:
            return await self._answer(endpoint, request, model, request_id), request_id
        except ErrorReply as reply:
            raise self._error(reply, request_id) from None

    async def _answer(
        self,
        endpoint: str,
        body: dict[str, Any] | None,
        model: str | None,
        request_id: str,
    ) -> Any:
        route = endpoint.removeprefix("/v1")
        builder = BUILDERS.get(route)
        if builder is None:
            raise ErrorReply(404, f"Invalid URL (POST {route})")
        if body is None:
            raise ErrorReply(400, "We could not parse the JSON body of your request.")
        if model is None:
            message = "You must provide a model parameter."
            raise ErrorReply(400, message, param="model", code="missing_required_parameter")
        behaviour = next((b for prefix, b in _BEHAVIOURS if model.startswith(prefix)), "ok")
        if behaviour == "echo":
            body = {**body, "messages": [{"role": "user", "content": ""}]}
        elif behaviour == "bad-json":
            return _BAD_JSON
        elif behaviour == "timeout":
            raise UpstreamTimeout(f"provider {self.name!r} did not answer in time")
        elif behaviour == "slow":
            await asyncio.sleep(self.slow_seconds)
        else:
            self._misbehave(behaviour, model, body)
        payload = builder(
            Call(body, model, request_id.removeprefix("req_"), self.embedding_dimensions)
        )
        if route == "/chat/completions" and body.get("stream") is True:
            options = body.get("stream_options")
            return chat_events(
                payload, isinstance(options, dict) and options.get("include_usage") is True
            )
        return payload

    def _misbehave(self, behaviour: str, model: str, body: dict[str, Any]) -> None:
        """Raise the failure of ``behaviour`` (if it fails this time)."""
        if behaviour == "401":
            message = "Incorrect API key provided:  (fake upstream)."
            raise ErrorReply(401, message, code="invalid_api_key")
        if behaviour == "403":
            raise ErrorReply(
                403, f"This key may not use {model} (fake upstream).", "permission_error"
            )
        if behaviour == "400":
            raise ErrorReply(
                400, f"Model {model} rejects every request (fake upstream).", param="model"
            )
        if behaviour == "429" or (behaviour == "429-once" and self._first_time(model, body)):
            case = model.removeprefix("fake-429-always").lstrip("-")
            value = self.retry_after if behaviour == "429-once" else _retry_after_case(case)
            headers = ((b"retry-after", value.encode()),) if value is not None else ()
            message = f"Rate limit reached for {model} (fake upstream)."
            raise ErrorReply(429, message, "requests", code="rate_limit_exceeded", headers=headers)
        if behaviour == "500" or (behaviour == "500-once" and self._first_time(model, body)):
            message = "The server had an error while processing your request (fake upstream)."
            raise ErrorReply(500, message, "server_error")

    def _first_time(self, model: str, body: dict[str, Any]) -> bool:
        """True the first time this (model, prompt) is seen; later calls return False."""
        content = body.get("messages", body.get("input", body.get("prompt")))
        dumped = orjson.dumps([model, content], option=orjson.OPT_SORT_KEYS)
        key = hashlib.blake2b(dumped, digest_size=16).digest()
        first = key not in self._failed_once
        self._failed_once.add(key)
        return first

    def _error(self, reply: ErrorReply, request_id: str) -> UpstreamError:
        """The error the provider raises for an upstream error answer."""
        status, body = reply.status, reply.body
        headers = {name.decode(): value.decode() for name, value in reply.headers}
        retry_after = retry_after_of(headers, cap=self.retry_after_max)
        if status in (401, 403):
            return UpstreamAuthError(self.name, status=status, body=body, request_id=request_id)
        kwargs: dict[str, Any] = {"status": status, "body": body, "request_id": request_id}
        if status == 429:
            message = f"provider {self.name!r} is rate limiting the gateway (HTTP {status})"
            return UpstreamRateLimited(message, retry_after=retry_after, **kwargs)
        if status >= 500 or status in (408, 409):
            message = f"provider {self.name!r} failed (HTTP {status})"
            return UpstreamUnavailable(message, retry_after=retry_after, **kwargs)
        message = f"provider {self.name!r} rejected the request (HTTP {status})"
        return UpstreamRejected(message, **kwargs)


def _bytes(answer: Any) -> bytes:
    """An answer as the upstream sends it: raw bytes, events one after the other, or JSON."""
    if isinstance(answer, bytes):
        return answer
    return b"".join(answer) if isinstance(answer, list) else orjson.dumps(answer)


async def _aiter(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
