"""The OpenAI wire shapes the fake upstream answers with (spec sections 6.2 and 6.7).

Pure functions from a parsed request body to a response object; a request they cannot answer
raises `ErrorReply`. The behaviours, records and serving live in `fake_upstream`.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

JSONObject = dict[str, Any]

FINGERPRINT: Final = "fp_fake"
MAX_DIMENSIONS: Final = 8192  # longer vectors than any real embedding model gives
_MODELS_CREATED: Final = 1_700_000_000
_WORD_START = re.compile(r"(?<=\s)(?=\S)")


class ErrorReply(Exception):
    """An answer in the OpenAI error envelope, raised wherever a request goes wrong."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        error = {"message": message, "type": error_type, "param": param, "code": code}
        self.body = orjson.dumps({"error": error})


@dataclass(frozen=True, slots=True)
class Call:
    """What a builder answers: the parsed body, its model, the request's id suffix and the
    default embedding size."""

    body: JSONObject
    model: str
    seq: str
    dimensions: int


Builder = Callable[[Call], JSONObject]


def _chat(call: Call) -> JSONObject:
    messages = call.body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ErrorReply(400, "'messages' must be a non-empty array.", param="messages")
    prompt_tokens, last_user = _conversation(messages)
    limit = _limit(call.body, "max_completion_tokens", "max_tokens")
    content, finish, completion_tokens = _truncate("echo: " + last_user, limit)
    return {
        "id": f"chatcmpl-{call.seq}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": _usage(prompt_tokens, completion_tokens),
        "system_fingerprint": FINGERPRINT,
        "service_tier": None,
    }


def _completions(call: Call) -> JSONObject:
    prompts = _texts(call.body.get("prompt"))
    if not prompts:
        raise ErrorReply(400, "'prompt' must be a string or a non-empty array.", param="prompt")
    limit = _limit(call.body, "max_tokens")
    choices = []
    prompt_tokens = completion_tokens = 0
    for index, (text, tokens) in enumerate(prompts):
        answer, finish, words = _truncate("echo: " + text, limit)
        prompt_tokens += tokens
        completion_tokens += words
        choices.append({"text": answer, "index": index, "logprobs": None, "finish_reason": finish})
    return {
        "id": f"cmpl-{call.seq}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": choices,
        "usage": _usage(prompt_tokens, completion_tokens),
        "system_fingerprint": FINGERPRINT,
    }


def _embeddings(call: Call) -> JSONObject:
    inputs = _texts(call.body.get("input"))
    if not inputs or any(not text for text, _ in inputs):
        raise ErrorReply(400, "'input' must be a non-empty string or array.", param="input")
    dimensions = call.body.get("dimensions")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        dimensions = call.dimensions
    elif dimensions > MAX_DIMENSIONS:
        raise ErrorReply(
            400,
            "Invalid 'dimensions': integer above maximum value. Expected a value <= "
            f"{MAX_DIMENSIONS}, but got {dimensions} instead.",
            param="dimensions",
            code="integer_above_max_value",
        )
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, (text, _) in enumerate(inputs):
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(count for _, count in inputs)
    return {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _responses(call: Call) -> JSONObject:
    if call.body.get("stream") is True:
        raise ErrorReply(400, "The fake upstream does not stream /responses.", param="stream")
    items = call.body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise ErrorReply(400, "'input' must be a string or a non-empty array.", param="input")
    instructions = call.body.get("instructions")
    if isinstance(instructions, str):
        items = [{"role": "system", "content": instructions}, *items]
    else:
        instructions = None
    input_tokens, last_user = _conversation(items)
    limit = _limit(call.body, "max_output_tokens")
    text, finish, output_tokens = _truncate("echo: " + last_user, limit)
    status = "incomplete" if finish == "length" else "completed"
    return {
        "id": f"resp_{call.seq}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if finish == "length" else None,
        "instructions": instructions,
        "max_output_tokens": limit,
        "model": call.model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{call.seq}",
                "status": status,
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "temperature": call.body.get("temperature"),
        "top_p": call.body.get("top_p"),
        "tool_choice": "auto",
        "tools": [],
        "metadata": {},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


BUILDERS: Final[dict[str, Builder]] = {
    "/chat/completions": _chat,
    "/completions": _completions,
    "/embeddings": _embeddings,
    "/responses": _responses,
}


def chat_events(completion: JSONObject, include_usage: bool) -> list[bytes]:
    """A chat completion as ``chat.completion.chunk`` Server-Sent Events, ``[DONE]`` last."""
    choice = completion["choices"][0]
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "system_fingerprint": FINGERPRINT,
        "service_tier": None,
    }

    def event(delta: JSONObject | None, finish_reason: str | None = None) -> bytes:
        chunk: JSONObject = {
            **base,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            chunk["usage"] = completion["usage"] if delta is None else None
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    # Pieces keep their trailing whitespace, so the deltas concatenate to the content exactly.
    pieces = _WORD_START.split(choice["message"]["content"])
    events = [event({"role": "assistant", "content": "", "refusal": None})]
    events.extend(event({"content": piece}) for piece in pieces if piece)
    events.append(event({}, choice["finish_reason"]))
    if include_usage:
        events.append(event(None))
    events.append(b"data: [DONE]\n\n")
    return events


def _conversation(messages: list[Any]) -> tuple[int, str]:
    """(words over all messages, at least 1; the text of the last user message)."""
    words = 0
    last_user = ""
    for message in messages:
        if isinstance(message, dict):
            text = _text_of(message.get("content"))
            words += len(text.split())
            if message.get("role") == "user":
                last_user = text
    return max(words, 1), last_user


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or its text parts concatenated."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return "".join(text for text in parts if isinstance(text, str))
    return ""


def _texts(value: Any) -> list[tuple[str, int]]:
    """(text, token count) per input of a string, string list, token list or token lists."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        value = [value]
    if not isinstance(value, list):
        return []
    texts: list[tuple[str, int]] = []
    for item in value:
        if isinstance(item, str):
            texts.append((item, max(len(item.split()), 1)))
        elif isinstance(item, list) and item and all(isinstance(v, int) for v in item):
            texts.append((" ".join(map(str, item)), len(item)))
        else:
            return []
    return texts


def _limit(body: JSONObject, *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 0)
    return None


def _truncate(text: str, limit: int | None) -> tuple[str, str, int]:
    """(text, finish_reason, word count), cut to ``limit`` words when it is smaller."""
    words = text.split()
    if limit is not None and limit < len(words):
        return " ".join(words[:limit]), "length", limit
    return text, "stop", len(words)


def _usage(prompt_tokens: int, completion_tokens: int) -> JSONObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of ``text``, every value exact in float32."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    values = [u / 2147483648.0 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so float and base64 answers decode to the same numbers.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def model_object(name: str) -> JSONObject:
    return {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "fake"}
