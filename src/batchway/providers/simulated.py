"""A simulated provider: deterministic, clearly labelled fake answers, offline.

It lets the embedded default run end to end with no network and no provider account.
Every text it produces starts with ``[simulated]`` and every answer names
``batchway-simulated`` as its ``system_fingerprint``, so no one mistakes it for a model.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import orjson

from batchway.config import ProviderConfig
from batchway.core.endpoints import Endpoint
from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.dialects.chat_messages.replies import chat_to_messages_response
from batchway.dialects.chat_messages.requests import messages_to_chat_request
from batchway.dialects.sse import DONE, sse_data, sse_event
from batchway.errors import UpstreamRejected
from batchway.providers.kind import ProviderKind

__all__ = ["KIND", "PROVIDER_TYPE", "SimulatedProvider"]

PROVIDER_TYPE = "simulated"
FINGERPRINT = "batchway-simulated"
_WORDS = (
    "reliable efficient elegant durable smart compact quiet bright simple versatile "
    "sustainable practical modern lightweight powerful thoughtful"
).split()


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _answer(prompt: str, max_words: float | None) -> tuple[str, bool]:
    """A deterministic answer to ``prompt``; True when it was cut at ``max_words``."""
    digest = hashlib.sha256(prompt.encode()).digest()
    adjectives = [_WORDS[b % len(_WORDS)] for b in digest[:3]]
    prompt_words = prompt.split()
    excerpt = " ".join(prompt_words[:30]) + (" …" if len(prompt_words) > 30 else "")
    words = (
        f"[simulated] A {adjectives[0]}, {adjectives[1]} and {adjectives[2]} answer to: {excerpt}"
    ).split()
    if max_words is not None and len(words) > max_words:
        return " ".join(words[: int(max_words)]), True
    return " ".join(words), False


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _embedding(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] ^ (i * 31)) % 256) / 127.5 - 1.0 for i in range(dimensions)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]


_MAX_DIMENSIONS = 8192  # longer vectors than any real embedding model gives


def _is_count(value: Any) -> bool:
    """A positive integer as JSON counts one: ``1000`` and ``1e3`` alike."""
    if isinstance(value, float):
        return value.is_integer() and value >= 1
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# the fields the answers are computed from, and what each must be (as OpenAI checks them)
_FIELD_CHECKS: dict[str, tuple[tuple[str, str, Callable[[Any], bool]], ...]] = {
    Endpoint.CHAT: (
        ("messages", "an array", lambda v: isinstance(v, list)),
        ("max_tokens", "a positive integer", _is_count),
        ("max_completion_tokens", "a positive integer", _is_count),
        ("stream_options", "an object", lambda v: isinstance(v, dict)),
    ),
    Endpoint.COMPLETIONS: (
        ("prompt", "a string or an array", lambda v: isinstance(v, (str, list))),
        ("max_tokens", "a positive integer", _is_count),
    ),
    Endpoint.EMBEDDINGS: (
        (
            "dimensions",
            f"an integer from 1 to {_MAX_DIMENSIONS}",
            lambda v: _is_count(v) and v <= _MAX_DIMENSIONS,
        ),
    ),
    Endpoint.RESPONSES: (("max_output_tokens", "a positive integer", _is_count),),
}


def _check_fields(endpoint: str, request: Any) -> None:
    """Refuse a request whose fields have the wrong type, with a 400 as OpenAI's."""
    if not isinstance(request, dict):
        _refuse("The request body must be a JSON object.", None)
    for field, expected, valid in _FIELD_CHECKS.get(endpoint, ()):
        value = request.get(field)
        if value is not None and not valid(value):
            _refuse(f"Invalid value for '{field}': expected {expected}.", field)


def _refuse(message: str, param: str | None) -> NoReturn:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    raise UpstreamRejected(message, status=400, body=orjson.dumps({"error": error}))


class SimulatedProvider:
    """Answers chat, completions, embeddings and responses requests after ``latency_ms``."""

    native: NativeBatchAPI | None = None

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.max_concurrency = config.max_concurrency
        self._latency = config.latency_ms / 1000

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        request = orjson.loads(body)
        if endpoint != Endpoint.MESSAGES:  # a Messages request is checked as it is translated
            _check_fields(endpoint, request)
        if self._latency:
            await asyncio.sleep(self._latency)
        if endpoint == Endpoint.MESSAGES:  # answered as a chat completion, in the Messages shape
            chat_request = messages_to_chat_request(request, allow_extensions=True)
            _check_fields(Endpoint.CHAT, chat_request)
            chat = self._chat(chat_request)
            message = chat_to_messages_response(chat)
            return UpstreamResponse(
                status=200, body=orjson.dumps(message), request_id=_request_id()
            )
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            Endpoint.CHAT: self._chat,
            Endpoint.COMPLETIONS: self._completion,
            Endpoint.EMBEDDINGS: self._embeddings,
            Endpoint.RESPONSES: self._response,
        }
        handler = handlers.get(endpoint)
        if handler is None:
            raise UpstreamRejected(f"the simulated provider does not serve {endpoint}", status=404)
        answer = handler(request)
        return UpstreamResponse(status=200, body=orjson.dumps(answer), request_id=_request_id())

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        """The same answer as ``send``, streamed as one text delta (Messages events, or chat
        chunks for chat completions)."""
        answer = orjson.loads((await self.send(endpoint, body)).body)
        if endpoint == Endpoint.MESSAGES:
            message = {**answer, "content": [], "stop_reason": None}
            text = answer["content"][0]["text"] if answer["content"] else ""
            for event in (
                {"type": "message_start", "message": message},
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": answer["usage"]["output_tokens"]},
                },
                {"type": "message_stop"},
            ):
                yield sse_event(event)
            return
        if endpoint != Endpoint.CHAT:
            raise UpstreamRejected(f"the simulated provider does not stream {endpoint}", status=400)
        choice = answer["choices"][0]
        base = {k: answer[k] for k in ("id", "created", "model", "system_fingerprint")}
        base["object"] = "chat.completion.chunk"
        delta = {"role": "assistant", "content": choice["message"]["content"]}
        yield sse_data({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        done = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
        yield sse_data({**base, "choices": [done]})
        if (orjson.loads(body).get("stream_options") or {}).get("include_usage"):
            yield sse_data({**base, "choices": [], "usage": answer["usage"]})
        yield sse_data(DONE)

    @staticmethod
    def _chat(request: dict[str, Any]) -> dict[str, Any]:
        messages = request.get("messages") or []
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        prompt = _text_of(users[-1].get("content")) if users else ""
        limit = request.get("max_completion_tokens") or request.get("max_tokens")
        text, cut = _answer(prompt, limit)
        prompt_tokens = sum(
            _tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        completion_tokens = _tokens(text)
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length" if cut else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": FINGERPRINT,
            "service_tier": None,
        }

    @staticmethod
    def _completion(request: dict[str, Any]) -> dict[str, Any]:
        prompt = request.get("prompt")
        prompt = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
        text, cut = _answer(prompt, request.get("max_tokens"))
        prompt_tokens, completion_tokens = _tokens(prompt), _tokens(text)
        return {
            "id": "cmpl-" + secrets.token_hex(12),
            "object": "text_completion",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": "length" if cut else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": FINGERPRINT,
        }

    @staticmethod
    def _embeddings(request: dict[str, Any]) -> dict[str, Any]:
        given = request.get("input")
        inputs = given if isinstance(given, list) else [given]
        dimensions = int(request.get("dimensions") or 256)
        data = []
        for index, item in enumerate(inputs):
            vector = _embedding(str(item), dimensions)
            embedding: Any = vector
            if request.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(_tokens(str(item)) for item in inputs)
        return {
            "object": "list",
            "model": request.get("model"),
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    @staticmethod
    def _response(request: dict[str, Any]) -> dict[str, Any]:
        given = request.get("input")
        if isinstance(given, list):
            prompt = " ".join(_text_of(m.get("content")) for m in given if isinstance(m, dict))
        else:
            prompt = str(given or "")
        text, cut = _answer(prompt, request.get("max_output_tokens"))
        input_tokens, output_tokens = _tokens(prompt), _tokens(text)
        return {
            "id": "resp_" + secrets.token_hex(12),
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if cut else "completed",
            "model": request.get("model"),
            "output": [
                {
                    "type": "message",
                    "id": "msg_" + secrets.token_hex(12),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }

    async def close(self) -> None:
        return None


KIND = ProviderKind(name=PROVIDER_TYPE, build=SimulatedProvider, simulated=True)


def _text_block(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _text_delta(text: str) -> dict[str, str]:
    return {"type": "text_delta", "text": text}


def _request_id() -> str:
    return "req_sim_" + secrets.token_hex(8)
