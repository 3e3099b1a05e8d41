"""Streaming translation between Chat Completions chunks and Messages stream events.

Two small state machines over parsed JSON: feed them one upstream event at a time and send
on what they return, in order. They do no I/O, so SSE framing stays with the caller.

- ``ChatChunksToMessageEvents`` turns ``chat.completion.chunk`` dicts into Anthropic events:
  ``message_start``, then per content block ``content_block_start``, deltas and
  ``content_block_stop``, and from ``finish()`` a ``message_delta`` and ``message_stop``.
  Only ``choices[0]`` is followed. OpenAI streams one tool call after another, so each call's
  block is started at its first fragment and closed when something else begins.
- ``MessageEventsToChatChunks`` turns Anthropic events into chunks: the role in the first
  chunk (with the first tool call when the answer opens with one, as OpenAI does), text and
  tool-call deltas, a last chunk with ``finish_reason`` and, when asked, a
  usage chunk with ``choices: []``. Thinking blocks are dropped as in the non-streaming
  translation, and an ``error`` event becomes an OpenAI error body, which is what OpenAI
  itself puts in a stream that fails midway.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from batchway.dialects.chat_messages.replies import (
    FINISH_REASON_FOR_STOP_REASON,
    STOP_REASON_FOR_FINISH_REASON,
    chat_id_from_message_id,
    chat_usage,
    message_id_from_chat_id,
    messages_usage,
    openai_error_from_anthropic,
)

__all__ = ["ChatChunksToMessageEvents", "MessageEventsToChatChunks"]

JSON = dict[str, Any]


class ChatChunksToMessageEvents:
    """Turns an OpenAI chunk stream into an Anthropic Messages event stream."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (kind, index) of the open block
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._finish_reason: str | None = None
        self._refused = False
        self._usage: JSON | None = None

    def feed(self, chunk: JSON) -> list[JSON]:
        """The events that one ``chat.completion.chunk`` produces."""
        if self._finished:
            return []
        events = [] if self._started else [self._message_start(chunk)]
        self._started = True
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            if delta.get("refusal"):
                self._refused = True
                events += self._text(delta["refusal"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_fragment(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[JSON]:
        """The closing events, once the chunk stream has ended."""
        if self._finished:
            return []
        events = [] if self._started else [self._message_start({})]
        self._started = self._finished = True
        events += self._close()
        stop_reason = STOP_REASON_FOR_FINISH_REASON.get(self._finish_reason or "", "end_turn")
        usage = messages_usage(self._usage)
        if self._usage is None:
            usage["input_tokens"] = None  # unknown: keep message_start's value
        return [
            *events,
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "refusal" if self._refused else stop_reason,
                    "stop_sequence": None,
                },
                "usage": usage,
            },
            {"type": "message_stop"},
        ]

    def _message_start(self, chunk: JSON) -> JSON:
        usage = messages_usage(chunk.get("usage"))
        usage["output_tokens"] = 0
        message: JSON = {
            "id": message_id_from_chat_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return {"type": "message_start", "message": message}

    def _start(self, kind: str, block: JSON) -> list[JSON]:
        events = self._close()
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index)
        return [*events, {"type": "content_block_start", "index": index, "content_block": block}]

    def _close(self) -> list[JSON]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [{"type": "content_block_stop", "index": index}]

    def _text(self, text: str) -> list[JSON]:
        events = (
            []
            if self._open and self._open[0] == "text"
            else self._start("text", {"type": "text", "text": ""})
        )
        assert self._open is not None
        delta = {"type": "text_delta", "text": text}
        return [*events, {"type": "content_block_delta", "index": self._open[1], "delta": delta}]

    def _tool_fragment(self, call: JSON) -> list[JSON]:
        function = call.get("function") or {}
        events: list[JSON] = []
        position = call.get("index", 0)
        if position not in self._tool_blocks:
            block: JSON = {
                "type": "tool_use",
                "id": call.get("id") or f"call_{uuid.uuid4().hex}",
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._start("tool_use", block)
            self._tool_blocks[position] = self._next_index - 1
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            index = self._tool_blocks[position]
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        return events


class MessageEventsToChatChunks:
    """Turns an Anthropic Messages event stream into OpenAI ``chat.completion.chunk`` dicts."""

    def __init__(self, model: str, include_usage: bool, *, created: int | None = None) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self._id = chat_id_from_message_id(None)
        self._tool_calls: dict[int, int] = {}  # block index -> OpenAI tool call index
        self._usage: JSON = {}
        self._stop_reason: str | None = None
        self._role_sent = False

    def feed(self, event: JSON) -> list[JSON]:
        """The chunks (or, for an ``error`` event, the error body) one event produces."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = chat_id_from_message_id(message.get("id"))
            self._usage = dict(message.get("usage") or {})
            return []  # the role goes out with the first content, once its kind is known
        if kind == "content_block_start":
            return self._block_start(event["index"], event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event["index"], event.get("delta") or {})
        if kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason")
            usage = event.get("usage") or {}
            self._usage.update({key: value for key, value in usage.items() if value is not None})
            return []
        if kind == "message_stop":
            finish_reason = FINISH_REASON_FOR_STOP_REASON.get(self._stop_reason or "", "stop")
            chunks = [self._chunk({}, finish_reason)]
            if self.include_usage:
                chunks.append(self._envelope([], chat_usage(self._usage)))
            return chunks
        if kind == "error":
            return [openai_error_from_anthropic(event)]
        return []  # ping, content_block_stop and event types added later

    def _block_start(self, index: int, block: JSON) -> list[JSON]:
        if block.get("type") == "tool_use":
            position = self._tool_calls[index] = len(self._tool_calls)
            function = {"name": block.get("name"), "arguments": _arguments(block.get("input"))}
            call = {"index": position, "id": block.get("id"), "type": "function"}
            return [self._chunk({"tool_calls": [{**call, "function": function}]})]
        if block.get("type") == "text" and (block.get("text") or not self._role_sent):
            return [self._chunk({"content": block.get("text") or ""})]
        return []

    def _block_delta(self, index: int, delta: JSON) -> list[JSON]:
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if delta.get("type") == "input_json_delta" and index in self._tool_calls:
            function = {"arguments": delta.get("partial_json", "")}
            call = {"index": self._tool_calls[index], "function": function}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking, signature and citation deltas have no Chat equivalent

    def _chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        if not self._role_sent:
            # like OpenAI: content "" before text, null when the answer opens with a tool call
            self._role_sent = True
            content = None if "tool_calls" in delta else ""
            delta = {"role": "assistant", "content": content, "refusal": None, **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice], None)

    def _envelope(self, choices: list[JSON], usage: JSON | None) -> JSON:
        chunk: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage  # OpenAI sends usage: null on every chunk but the last
        return chunk


def _arguments(tool_input: Any) -> str:
    return json.dumps(tool_input, ensure_ascii=False) if tool_input else ""
