"""Non-streaming replies between OpenAI Chat Completions and Anthropic Messages (spec §6.6).

Answers (``chat.completion`` <-> ``Message``, with their ids and usage) and error envelopes;
requests are translated in ``requests`` and streams in ``streams``.
Pure functions over JSON-shaped dicts: no I/O.

- Tool-call arguments that are not a JSON object are kept (the answer is already paid for)
  as ``{RAW_ARGUMENTS_KEY: "<raw string>"}``, which the reverse direction turns back into
  the same string.
- Response thinking and server-tool blocks are dropped from the chat message: it has no
  place for them, and the answer is in the text blocks.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from batchway.dialects.chat_messages.requests import RAW_ARGUMENTS_KEY, tool_call_from_tool_use

__all__ = [
    "FINISH_REASON_FOR_STOP_REASON",
    "STOP_REASON_FOR_FINISH_REASON",
    "anthropic_error_from_openai",
    "anthropic_error_type",
    "chat_id_from_message_id",
    "chat_to_messages_response",
    "chat_usage",
    "message_id_from_chat_id",
    "messages_to_chat_response",
    "messages_usage",
    "openai_error_from_anthropic",
    "status_for_anthropic_error_type",
]

JSON = dict[str, Any]

FINISH_REASON_FOR_STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # no exact equivalent
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_REASON_FOR_FINISH_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STATUS_FOR_ANTHROPIC_ERROR = {kind: status for status, kind in _ANTHROPIC_ERROR_TYPES.items()}
# (OpenAI type, code) per Anthropic type; the code keeps the Anthropic type when OpenAI has none
_OPENAI_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "rate_limit_error": ("rate_limit_error", "rate_limit_exceeded"),
    "api_error": ("server_error", None),
    "timeout_error": ("server_error", "timeout_error"),
    "overloaded_error": ("server_error", "overloaded_error"),
}


# -- responses --------------------------------------------------------------------------


def message_id_from_chat_id(chat_id: str | None) -> str:
    """A ``msg_…`` id derived from a chat completion id (a new one when there is none)."""
    if not chat_id:
        return f"msg_{uuid.uuid4().hex}"
    if chat_id.startswith("msg_"):
        return chat_id
    return "msg_" + chat_id.removeprefix("chatcmpl-")


def chat_id_from_message_id(message_id: str | None) -> str:
    """A ``chatcmpl-…`` id derived from a message id (a new one when there is none)."""
    if not message_id:
        return f"chatcmpl-{uuid.uuid4().hex}"
    if message_id.startswith("chatcmpl-"):
        return message_id
    return "chatcmpl-" + message_id.removeprefix("msg_")


def messages_usage(usage: JSON | None) -> JSON:
    """Chat Completions ``usage`` as Messages ``usage`` (spec §6.6)."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    written = details.get("cache_write_tokens")
    input_tokens = (usage.get("prompt_tokens") or 0) - (cached or 0) - (written or 0)
    return {
        "input_tokens": max(input_tokens, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def chat_usage(usage: JSON | None) -> JSON:
    """Messages ``usage`` as Chat Completions ``usage`` (spec §6.6)."""
    usage = usage or {}
    written = usage.get("cache_creation_input_tokens") or 0
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + written + cached
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
    }


def _parse_arguments(arguments: Any) -> JSON:
    """Tool-call arguments as an object, never losing them (see the module docstring)."""
    try:
        parsed = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        parsed = None
    return parsed if isinstance(parsed, dict) else {RAW_ARGUMENTS_KEY: arguments}


def chat_to_messages_response(completion: JSON) -> JSON:
    """Translate a ``chat.completion`` into a Messages ``Message`` (only ``choices[0]``)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[JSON] = []
    text, refusal = message.get("content"), message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    if refusal and refusal != text:
        content.append({"type": "text", "text": refusal})
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):
        calls.append({"function": message["function_call"]})
    for call in calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"call_{uuid.uuid4().hex}",
                "name": function.get("name"),
                "input": _parse_arguments(function.get("arguments")),
            }
        )
    stop_reason = STOP_REASON_FOR_FINISH_REASON.get(choice.get("finish_reason"), "end_turn")
    return {
        "id": message_id_from_chat_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": "refusal" if refusal else stop_reason,
        "stop_sequence": None,
        "usage": messages_usage(completion.get("usage")),
    }


def messages_to_chat_response(message: JSON, *, created: int | None = None) -> JSON:
    """Translate a Messages ``Message`` into a ``chat.completion``."""
    texts: list[str] = []
    calls: list[JSON] = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(tool_call_from_tool_use(block))
    text = "".join(texts) if texts else None
    stop_reason = message.get("stop_reason")
    chat_message: JSON = {
        "role": "assistant",
        "content": text,
        "refusal": text if stop_reason == "refusal" else None,
    }
    if calls:
        chat_message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": chat_message,
        "logprobs": None,
        "finish_reason": FINISH_REASON_FOR_STOP_REASON.get(stop_reason or "", "stop"),
    }
    return {
        "id": chat_id_from_message_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model"),
        "choices": [choice],
        "usage": chat_usage(message.get("usage")),
        "system_fingerprint": None,
        "service_tier": None,
    }


# -- error envelopes ----------------------------------------------------------------------


def anthropic_error_type(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status (spec §4.2, §6.6)."""
    default = "api_error" if status >= 500 else "invalid_request_error"
    return _ANTHROPIC_ERROR_TYPES.get(status, default)


def status_for_anthropic_error_type(error_type: str) -> int:
    """The HTTP status an Anthropic ``error.type`` implies (500 for unknown types)."""
    return _STATUS_FOR_ANTHROPIC_ERROR.get(error_type, 500)


def _error_object(body: JSON) -> JSON:
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def openai_error_from_anthropic(body: JSON) -> JSON:
    """An Anthropic error body (the envelope or its ``error`` object) in the OpenAI envelope."""
    error = _error_object(body)
    kind = str(error.get("type") or "api_error")
    openai_type, code = _OPENAI_ERRORS.get(kind, ("invalid_request_error", kind))
    message = error.get("message") or "The upstream provider returned an error."
    return {"error": {"message": message, "type": openai_type, "param": None, "code": code}}


def anthropic_error_from_openai(body: JSON, status: int, *, request_id: str | None = None) -> JSON:
    """An OpenAI error body (``{"error": {...}}`` or the bare object) in the Anthropic envelope."""
    error = _error_object(body)
    message = error.get("message") or "The upstream provider returned an error."
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(status), "message": message},
        "request_id": request_id,
    }
