"""Checking a batch input file line by line, without ever holding the whole file.

Each problem becomes a ``BatchError`` naming the 1-based line it was found on. The codes
follow the OpenAI/Azure batch contract (``invalid_json_line``, ``duplicate_custom_id``,
``url_mismatch``, ``model_not_found``, ``too_many_tasks``, ``empty_file``,
``invalid_request``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from batchway.config import BatchLimits
from batchway.core.endpoints import Endpoint
from batchway.core.models import BatchError, NewItem, Principal
from batchway.core.nesting import nested_deeper
from batchway.core.routing import Router

__all__ = [
    "MAX_CUSTOM_ID_LENGTH",
    "InputValidator",
    "RefusedLine",
    "input_lines",
    "split_lines",
]

MAX_CUSTOM_ID_LENGTH = 512
MAX_EMBEDDING_INPUTS = 50_000
_BOM = b"\xef\xbb\xbf"


def _embedding_inputs(given: Any) -> int:
    """How many inputs an embeddings ``input`` holds: one token array is one input."""
    if isinstance(given, list) and given and not all(isinstance(x, int) for x in given):
        return len(given)
    return 1


@dataclass(frozen=True, slots=True)
class RefusedLine:
    """A line (or inline request) refused before it was parsed: too large to be read, or
    found wrong on the way in; it stands in its place for ``InputValidator.check``."""

    code: str
    message: str
    param: str | None = None


async def split_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The lines of a byte stream (without their ``\\n``), however the chunks fall."""
    async for line in _lines(chunks, None):
        assert isinstance(line, bytes)
        yield line


async def input_lines(
    chunks: AsyncIterable[bytes], max_line_bytes: int
) -> AsyncIterator[bytes | RefusedLine]:
    """The lines of a batch input file; a line longer than ``max_line_bytes`` comes as a
    ``RefusedLine``, its bytes dropped as they pass, so that no line is held whole."""
    async for line in _lines(chunks, max_line_bytes):
        yield line


def _too_large(limit: int) -> RefusedLine:
    return RefusedLine("line_too_large", f"This line is longer than the {limit:,} bytes allowed.")


async def _lines(
    chunks: AsyncIterable[bytes], limit: int | None
) -> AsyncIterator[bytes | RefusedLine]:
    pending: list[bytes] = []  # the start of a line that goes on in a later chunk
    pending_size = 0
    dropping = False  # the line under way is over the limit: its bytes are skipped
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            size = pending_size + end - start
            if dropping or (limit is not None and size > limit):
                yield _too_large(limit or 0)
            elif pending:
                yield b"".join(pending) + chunk[start:end]
            else:
                yield chunk[start:end]
            pending, pending_size, dropping = [], 0, False
            start = end + 1
        if start < len(chunk) and not dropping:
            pending_size += len(chunk) - start
            if limit is not None and pending_size > limit:
                pending, dropping = [], True
            else:
                pending.append(chunk[start:] if start else chunk)
    if dropping:
        yield _too_large(limit or 0)
    elif pending_size:
        yield b"".join(pending)


class InputValidator:
    """Feeds on the lines of one input file and keeps what it found."""

    def __init__(
        self, *, endpoint: str, router: Router, principal: Principal, limits: BatchLimits
    ) -> None:
        self.endpoint = endpoint
        self.errors: list[BatchError] = []
        self.error_count = 0
        self.models: set[str] = set()
        self.requests = 0
        self._router = router
        self._principal = principal
        self._limits = limits
        self._custom_ids: set[str] = set()
        self._embedding_inputs = 0
        self._trailing_blank: int | None = None
        self.max_lines = (
            limits.max_message_batch_requests
            if endpoint == Endpoint.MESSAGES
            else limits.max_batch_lines
        )

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def _error(self, line: int | None, code: str, message: str, param: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < self._limits.max_reported_errors:
            self.errors.append(BatchError(code=code, message=message, line=line, param=param))

    def check(self, number: int, raw: bytes | RefusedLine) -> NewItem | None:
        """Check line ``number`` (1-based); the stored form of the request if it is good."""
        if isinstance(raw, bytes):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if not raw.strip():
                # a blank line is only fine at the very end of the file
                self._trailing_blank = self._trailing_blank or number
                return None
        if self._trailing_blank is not None:
            self._error(self._trailing_blank, "invalid_json_line", "Blank lines are not allowed.")
            self._trailing_blank = None
        self.requests += 1
        if self.requests > self.max_lines:
            if self.requests == self.max_lines + 1:
                self._error(
                    number,
                    "too_many_tasks",
                    f"The batch has more than {self.max_lines:,} requests.",
                )
            return None
        if isinstance(raw, RefusedLine):
            self._error(number, raw.code, raw.message, raw.param)
            return None
        if len(raw) > self._limits.max_batch_line_bytes:  # a line not cut by input_lines()
            refused = _too_large(self._limits.max_batch_line_bytes)
            self._error(number, refused.code, refused.message)
            return None
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc):  # orjson's own ceiling, 1,024 levels
                self._too_deep(number)
                return None
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                self._error(number, "invalid_json_line", "This line is not valid UTF-8.")
                return None
            self._error(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            return None
        if nested_deeper(raw, line, self._limits.max_json_depth):
            self._too_deep(number)
            return None
        if not isinstance(line, dict):
            self._error(number, "invalid_request", "Each line must be a JSON object.")
            return None
        return self._check_request(number, line)

    def _too_deep(self, number: int) -> None:
        self._error(
            number,
            "json_too_deep",
            "This line nests arrays and objects more than "
            f"{self._limits.max_json_depth} levels deep.",
        )

    def _check_request(self, number: int, line: dict[str, Any]) -> NewItem | None:
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id or "\x00" in custom_id:
            self._error(
                number,
                "invalid_request",
                "custom_id must be a non-empty string without NUL characters.",
                "custom_id",
            )
            return None
        if len(custom_id) > MAX_CUSTOM_ID_LENGTH:
            self._error(
                number,
                "invalid_request",
                f"custom_id is longer than {MAX_CUSTOM_ID_LENGTH} characters.",
                "custom_id",
            )
            return None
        if custom_id in self._custom_ids:
            self._error(
                number,
                "duplicate_custom_id",
                f"The custom_id {custom_id!r} appears on an earlier line; "
                "custom_id must be unique.",
                "custom_id",
            )
            return None
        self._custom_ids.add(custom_id)
        if line.get("method") != "POST":
            self._error(number, "invalid_request", "method must be 'POST'.", "method")
            return None
        url = line.get("url")
        if not isinstance(url, str) or Endpoint.parse(url) != self.endpoint:
            self._error(
                number,
                "url_mismatch",
                # str(): the endpoint's path, not an Endpoint's repr, whichever was given
                f"The url {url!r} does not match the batch endpoint {str(self.endpoint)!r}.",
                "url",
            )
            return None
        body = line.get("body")
        if not isinstance(body, dict):
            self._error(number, "invalid_request", "body must be a JSON object.", "body")
            return None
        return self._check_body(number, custom_id, body)

    def _check_body(self, number: int, custom_id: str, body: dict[str, Any]) -> NewItem | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._error(number, "invalid_request", "body.model is required.", "body.model")
            return None
        public = self._router.batch_model(model)  # ``gpt-4o-mini-batch`` is ``gpt-4o-mini``
        route = self._router.route(public) if public is not None else None
        if public is None or route is None or not self._principal.may_use(public):
            self._error(
                number,
                "model_not_found",
                f"The model {model!r} does not exist or you do not have access to it.",
                "body.model",
            )
            return None
        if body.get("stream"):
            self._error(
                number, "invalid_request", "stream is not allowed in a batch.", "body.stream"
            )
            return None
        if self.endpoint == Endpoint.MESSAGES:
            max_tokens = body.get("max_tokens")
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                self._error(
                    number,
                    "invalid_request",
                    "body.max_tokens is required and must be a positive integer.",
                    "body.max_tokens",
                )
                return None
        if self.endpoint == Endpoint.EMBEDDINGS:
            before = self._embedding_inputs
            self._embedding_inputs += _embedding_inputs(body.get("input"))
            if self._embedding_inputs > MAX_EMBEDDING_INPUTS:
                if before <= MAX_EMBEDDING_INPUTS:  # said once, like too many lines
                    self._error(
                        number,
                        "too_many_tasks",
                        f"The batch has more than {MAX_EMBEDDING_INPUTS:,} embedding inputs.",
                    )
                return None
        self.models.add(public)
        return NewItem(
            line=number,
            custom_id=custom_id,
            model=public,
            provider=route.provider,
            body=orjson.dumps({**body, "model": route.model}),
        )

    def finish(self) -> None:
        """Call after the last line: an input with no request at all is an error."""
        if self.requests == 0:
            self._error(None, "empty_file", "The input file contains no requests.")
