"""The Anthropic Messages and Message Batches engine behind `FakeAnthropicAPI`.

Spec sections 4, 6.3 and 6.4 of ``batch-apis.md``. Pure of HTTP like `_fake_openai_batches`:
methods take parsed requests and return JSON objects (or bytes), and raise `AnthropicError`
for every error answer. One lock guards the batches and the once-failed prompts.
"""

from __future__ import annotations

import enum
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson

from batchway.testing._fake_openai import (
    _WORD_START,
    JSONObject,
    _conversation,
    _text_of,
    _truncate,
)
from batchway.testing._fake_openai_batches import base62

_CUSTOM_ID: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DAY: Final = 86_400
_TERMINAL_RESULTS: Final = ("succeeded", "errored", "canceled", "expired")

ERROR_TYPES: Final[dict[int, str]] = {
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


class AnthropicError(Exception):
    """An answer in Anthropic's error envelope; the app adds the ``request_id``."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = ERROR_TYPES.get(status, "invalid_request_error")
        self.message = message
        self.headers = headers

    def body(self, request_id: str) -> JSONObject:
        return error_body(self.error_type, self.message, request_id)


def error_body(error_type: str, message: str, request_id: str) -> JSONObject:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def new_id(prefix: str) -> str:
    """An Anthropic-style id: ``<prefix>_01`` and 22 base62 characters."""
    return f"{prefix}_01{base62(22)}"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


class _Behaviour(enum.Enum):
    OK = enum.auto()
    REJECT = enum.auto()  # always 400
    ERROR = enum.auto()  # always 500
    ERROR_ONCE = enum.auto()  # 500 the first time per prompt
    RATE_LIMIT_ONCE = enum.auto()  # 429 the first time per prompt
    OVERLOADED_ONCE = enum.auto()  # 529 the first time per prompt


# Longest prefixes first: "fake-500-then-ok" must win over "fake-500".
_PREFIXES: Final = (
    ("fake-overloaded-then-ok", _Behaviour.OVERLOADED_ONCE),
    ("fake-429-then-ok", _Behaviour.RATE_LIMIT_ONCE),
    ("fake-500-then-ok", _Behaviour.ERROR_ONCE),
    ("fake-always-400", _Behaviour.REJECT),
    ("fake-529", _Behaviour.OVERLOADED_ONCE),
    ("fake-500", _Behaviour.ERROR),
    ("fake-400", _Behaviour.REJECT),
)


def _behaviour(model: str) -> _Behaviour:
    return next((b for p, b in _PREFIXES if model.startswith(p)), _Behaviour.OK)


def build_message(body: Any, service_tier: str = "standard") -> JSONObject:
    """The `Message` answering a Messages request: ``"echo: "`` + the last user text.

    ``input_tokens`` counts the words of ``system`` and all messages (at least 1),
    ``output_tokens`` the words of the answer. The answer stops before the first
    ``stop_sequences`` match (``stop_reason: "stop_sequence"``) and is cut to ``max_tokens``
    words (``"max_tokens"``). Raises AnthropicError(400) for an invalid request.
    """
    if not isinstance(body, dict):
        raise AnthropicError(400, "The request body is not a valid JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise AnthropicError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise AnthropicError(400, "max_tokens: Field required")
    if max_tokens < 1:
        raise AnthropicError(400, "max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise AnthropicError(400, "messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise AnthropicError(
                400, f"messages.{index}.role: Input should be 'user' or 'assistant'"
            )
    input_tokens, last_user = _conversation(messages)
    input_tokens += len(_text_of(body.get("system")).split())
    text = "echo: " + last_user
    stop_reason, stop_sequence = "end_turn", None
    stops = body.get("stop_sequences")
    if isinstance(stops, list):
        found = [(text.find(s), s) for s in stops if isinstance(s, str) and s and s in text]
        if found:
            at, stop_sequence = min(found)
            text, stop_reason = text[:at], "stop_sequence"
    text, finish, output_tokens = _truncate(text, max_tokens)
    if finish == "length":
        stop_reason, stop_sequence = "max_tokens", None
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text, "citations": None}],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "server_tool_use": None,
            "service_tier": service_tier,
        },
    }


def message_events(message: JSONObject) -> list[bytes]:
    """A `Message` as the Messages streaming events: ``message_start``,
    ``content_block_start``, ``ping``, one ``content_block_delta`` per word,
    ``content_block_stop``, ``message_delta``, ``message_stop``."""

    def event(payload: JSONObject) -> bytes:
        kind: str = payload["type"]
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    text: str = message["content"][0]["text"]
    events = [
        event({"type": "message_start", "message": {**start, "usage": start_usage}}),
        event(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        event({"type": "ping"}),
    ]
    # Pieces keep their trailing whitespace, so the deltas concatenate to the text exactly.
    events.extend(
        event(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
        )
        for piece in _WORD_START.split(text)
        if piece
    )
    events.append(event({"type": "content_block_stop", "index": 0}))
    events.append(
        event(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": usage["output_tokens"],
                },
            }
        )
    )
    events.append(event({"type": "message_stop"}))
    return events


class AnthropicSettings(Protocol):
    """The settings of the app that the engine reads (and ``refuse_batches`` counts down)."""

    polls_per_step: int
    refuse_batches: int
    expire_batches: bool
    max_requests: int
    retry_after: str


@dataclass(slots=True)
class _MessageBatch:
    obj: JSONObject
    requests: list[tuple[str, JSONObject]]
    expire: bool
    base_url: str
    polls: int = 0
    results: list[JSONObject] = field(default_factory=list)


class AnthropicEngine:
    """Messages behaviours and message batches of one fake Anthropic service."""

    def __init__(self, settings: AnthropicSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._failed_once: set[bytes] = set()
        self._batches: dict[str, _MessageBatch] = {}

    # -- views for tests -------------------------------------------------------------------------

    def batches(self) -> dict[str, JSONObject]:
        with self._lock:
            return {bid: self._render(b, b.base_url) for bid, b in self._batches.items()}

    def advance_all(self, steps: int = 1) -> int:
        moved = set()
        with self._lock:
            for _ in range(steps):
                for batch in self._batches.values():
                    if batch.obj["processing_status"] != "ended":
                        self._step(batch)
                        moved.add(batch.obj["id"])
        return len(moved)

    def finish_all(self) -> None:
        while self.advance_all():
            pass

    def forget_failures(self) -> None:
        with self._lock:
            self._failed_once.clear()

    def reset(self) -> None:
        with self._lock:
            self._failed_once.clear()
            self._batches.clear()

    # -- messages --------------------------------------------------------------------------------

    def message(self, body: Any) -> JSONObject:
        """The answer to ``POST /v1/messages`` (streaming is the app's job)."""
        message = build_message(body)
        model: str = message["model"]
        behaviour = _behaviour(model)
        if behaviour is _Behaviour.REJECT:
            raise AnthropicError(400, f"Model {model} rejects every request (fake).")
        if behaviour is _Behaviour.ERROR or (
            behaviour is _Behaviour.ERROR_ONCE and self._first_time(body)
        ):
            raise AnthropicError(500, "Internal server error")
        if behaviour is _Behaviour.RATE_LIMIT_ONCE and self._first_time(body):
            retry_after = ((b"retry-after", self._settings.retry_after.encode()),)
            message_text = f"Number of request tokens has exceeded your rate limit ({model}, fake)."
            raise AnthropicError(429, message_text, retry_after)
        if behaviour is _Behaviour.OVERLOADED_ONCE and self._first_time(body):
            raise AnthropicError(529, "Overloaded")
        return message

    def _first_time(self, body: JSONObject) -> bool:
        dumped = orjson.dumps(
            [body.get("model"), body.get("system"), body.get("messages")],
            option=orjson.OPT_SORT_KEYS,
        )
        key = hashlib.blake2b(dumped, digest_size=16).digest()
        with self._lock:
            if key in self._failed_once:
                return False
            self._failed_once.add(key)
            return True

    # -- message batches -------------------------------------------------------------------------

    def create_batch(self, body: Any, base_url: str) -> JSONObject:
        if not isinstance(body, dict):
            raise AnthropicError(400, "The request body is not a valid JSON object.")
        items = body.get("requests")
        if not isinstance(items, list):
            raise AnthropicError(400, "requests: Field required")
        if not items:
            raise AnthropicError(400, "requests: List should have at least 1 item, not 0")
        if len(items) > self._settings.max_requests:
            limit = self._settings.max_requests
            raise AnthropicError(400, f"requests: at most {limit} requests per batch")
        requests: list[tuple[str, JSONObject]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                message = (
                    f"requests.{index}.custom_id: String should match pattern "
                    f"'{_CUSTOM_ID.pattern}'"
                )
                raise AnthropicError(400, message)
            if not isinstance(params, dict):
                raise AnthropicError(400, f"requests.{index}.params: Field required")
            if custom_id in seen:
                message = f"requests.{index}.custom_id: duplicate custom_id '{custom_id}'"
                raise AnthropicError(400, message)
            seen.add(custom_id)
            requests.append((custom_id, params))
        with self._lock:
            if self._settings.refuse_batches > 0:
                self._settings.refuse_batches -= 1
                message = "Your organization has reached its limit of queued batch requests."
                raise AnthropicError(400, message)
            now = time.time()
            batch_id = new_id("msgbatch")
            obj: JSONObject = {
                "id": batch_id,
                "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": {
                    "processing": len(requests),
                    "succeeded": 0,
                    "errored": 0,
                    "canceled": 0,
                    "expired": 0,
                },
                "created_at": rfc3339(now),
                "expires_at": rfc3339(now + _DAY),
                "ended_at": None,
                "cancel_initiated_at": None,
                "archived_at": None,
                "results_url": None,
            }
            batch = _MessageBatch(obj, requests, self._settings.expire_batches, base_url)
            self._batches[batch_id] = batch
            return self._render(batch, base_url)

    def retrieve_batch(self, batch_id: str, base_url: str) -> JSONObject:
        """The batch after this poll: every ``polls_per_step`` polls move it one step."""
        with self._lock:
            batch = self._batch(batch_id)
            per_step = self._settings.polls_per_step
            if per_step > 0 and batch.obj["processing_status"] != "ended":
                batch.polls += 1
                if batch.polls >= per_step:
                    self._step(batch)
            return self._render(batch, base_url)

    def list_batches(self, query: dict[str, str], base_url: str) -> JSONObject:
        raw_limit = query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise AnthropicError(400, "limit: Input should be between 1 and 1000")
        limit = int(raw_limit)
        with self._lock:
            items = list(reversed(self._batches.values()))  # newest first
            ids = [b.obj["id"] for b in items]
            after, before = query.get("after_id"), query.get("before_id")
            if after is not None:
                rest = items[ids.index(after) + 1 :] if after in ids else []
                page = rest[:limit]
            elif before is not None:
                rest = items[: ids.index(before)] if before in ids else []
                page = rest[-limit:]
            else:
                rest = items
                page = rest[:limit]
            data = [self._render(b, base_url) for b in page]
        return {
            "data": data,
            "has_more": len(rest) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def cancel_batch(self, batch_id: str, base_url: str) -> JSONObject:
        with self._lock:
            batch = self._batch(batch_id)
            status = batch.obj["processing_status"]
            if status == "ended":
                raise AnthropicError(400, f"Message batch {batch_id} has already ended.")
            if status == "in_progress":
                batch.obj["processing_status"] = "canceling"
                batch.obj["cancel_initiated_at"] = rfc3339(time.time())
                batch.polls = 0
            return self._render(batch, base_url)

    def delete_batch(self, batch_id: str) -> JSONObject:
        with self._lock:
            batch = self._batch(batch_id)
            if batch.obj["processing_status"] != "ended":
                message = (
                    f"Message batch {batch_id} cannot be deleted while it is processing; "
                    "cancel it first."
                )
                raise AnthropicError(400, message)
            del self._batches[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results(self, batch_id: str) -> bytes:
        """The results JSONL (newline-terminated lines, no blank line, reversed order)."""
        with self._lock:
            batch = self._batch(batch_id)
            if batch.obj["processing_status"] != "ended":
                message = f"Message batch {batch_id} has not ended yet; results are not ready."
                raise AnthropicError(400, message)
            return b"".join(orjson.dumps(line) + b"\n" for line in reversed(batch.results))

    # -- the status machine ----------------------------------------------------------------------

    def _step(self, batch: _MessageBatch) -> None:
        """in_progress → ended (every request run, or the first half and the rest expired when
        ``expire``); canceling → ended (the first half run, the rest canceled)."""
        batch.polls = 0
        status = batch.obj["processing_status"]
        requests = batch.requests
        half = (len(requests) + 1) // 2
        if status == "canceling":
            ran, rest, rest_type = requests[:half], requests[half:], "canceled"
        elif batch.expire:
            ran, rest, rest_type = requests[:half], requests[half:], "expired"
        else:
            ran, rest, rest_type = requests, [], "expired"
        batch.results = [self._run(custom_id, params) for custom_id, params in ran]
        batch.results += [{"custom_id": cid, "result": {"type": rest_type}} for cid, _ in rest]
        counts = dict.fromkeys(_TERMINAL_RESULTS, 0)
        for line in batch.results:
            counts[line["result"]["type"]] += 1
        batch.obj["request_counts"] = {"processing": 0, **counts}
        batch.obj["processing_status"] = "ended"
        batch.obj["ended_at"] = rfc3339(time.time())

    @staticmethod
    def _run(custom_id: str, params: JSONObject) -> JSONObject:
        """One request of a batch; failures that a retry would fix are retried (succeed)."""
        try:
            if params.get("stream") is True:
                raise AnthropicError(400, "stream: streaming is not supported in batches")
            message = build_message(params, service_tier="batch")
            behaviour = _behaviour(message["model"])
            if behaviour is _Behaviour.REJECT:
                raise AnthropicError(400, f"Model {message['model']} rejects every request (fake).")
            if behaviour is _Behaviour.ERROR:
                raise AnthropicError(500, "Internal server error")
        except AnthropicError as failure:
            error = failure.body(new_id("req"))
            return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    def _batch(self, batch_id: str) -> _MessageBatch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise AnthropicError(404, f"Message batch {batch_id} not found.")
        return batch

    @staticmethod
    def _render(batch: _MessageBatch, base_url: str) -> JSONObject:
        obj: JSONObject = orjson.loads(orjson.dumps(batch.obj))
        if obj["processing_status"] == "ended":
            obj["results_url"] = f"{base_url}/v1/messages/batches/{obj['id']}/results"
        return obj
