"""Inline batch bodies, ``{"requests": [{…}, …]}``, read as a stream one request at a time.

An inline batch may be hundreds of megabytes, and parsed whole it would cost several times
that in memory. Here the body is parsed as it arrives (ijson on yajl, in C), each request
is built on its own and handed on as soon as it is complete, and the service writes it to
the batch's input file before the next one is read: memory holds one request at a time.

Each request is held to ``max_json_depth`` and ``max_batch_line_bytes`` while it is being
built; one that goes past either is skipped to its end and handed on as a ``RefusedLine``,
so that the batch is refused with every bad request named. The other top-level fields are
built as values, held to ``max_request_bytes``; an inline body may have no other field.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from enum import Enum, auto
from typing import Any

import ijson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from batchway.api.body import body_chunks, invalid_request, too_large
from batchway.config import BatchLimits
from batchway.core.validation import RefusedLine
from batchway.errors import InvalidRequest

__all__ = ["InlineBody", "unrecognized"]

REQUESTS = "requests"


def unrecognized(key: str) -> InvalidRequest:
    return InvalidRequest(f"Unrecognized request argument: '{key}'.", param=key)


class _Built(Enum):
    MORE = auto()  # the value goes on
    DONE = auto()  # the value is complete
    TOO_DEEP = auto()
    TOO_LARGE = auto()


class _Value:
    """A JSON value built from parser events, measured while it grows: its depth, and a
    size that never exceeds the length of the value written as JSON."""

    __slots__ = ("key", "max_depth", "max_size", "size", "stack", "value")

    def __init__(self, max_depth: int, max_size: int) -> None:
        self.max_depth = max_depth
        self.max_size = max_size
        self.stack: list[Any] = []  # the open arrays and objects, innermost last
        self.key: str = ""  # the key of the next member of the innermost object
        self.size = 0
        self.value: Any = None

    def _put(self, value: Any) -> None:
        if not self.stack:
            self.value = value
        elif type(top := self.stack[-1]) is list:
            top.append(value)
        else:
            top[self.key] = value

    def feed(self, event: str, value: Any) -> _Built:
        if event == "map_key":
            self.key = value
            self.size += len(value) + 4  # quotes, colon, comma
        elif event == "start_map" or event == "start_array":
            container: Any = {} if event == "start_map" else []
            self._put(container)
            self.stack.append(container)
            self.size += 2
            if len(self.stack) > self.max_depth:
                return _Built.TOO_DEEP
        elif event == "end_map" or event == "end_array":
            self.stack.pop()
        else:  # a scalar: string, number, boolean or null
            self._put(value)
            self.size += len(value) + 3 if type(value) is str else 2
        if self.size > self.max_size:
            return _Built.TOO_LARGE
        return _Built.MORE if self.stack else _Built.DONE


class _Phase(Enum):
    START = auto()  # before the top-level object
    KEYS = auto()  # in the top-level object, between its fields
    FIELD = auto()  # building a top-level field other than the requests
    OPEN = auto()  # after the requests key, before its array
    ITEMS = auto()  # in the requests array, between requests
    ITEM = auto()  # building one request
    SKIP = auto()  # passing over the rest of a refused request
    END = auto()  # after the top-level object


class InlineBody:
    """The body of an inline batch, read as it arrives.

    ``start()`` reads up to the requests; ``requests()`` then gives them one by one. A
    body without requests is read whole by ``start()``, its fields left in ``fields``.
    Any other field beside the requests is refused with ``extra(key)``; with
    ``inline_only`` a field is refused even when the body turns out to have no requests.
    """

    def __init__(
        self,
        request: Request,
        limits: BatchLimits,
        *,
        extra: Callable[[str], InvalidRequest] = unrecognized,
        inline_only: bool = False,
    ) -> None:
        self.fields: dict[str, Any] = {}
        self.saw_requests = False
        self._limits = limits
        self._extra = extra
        self._inline_only = inline_only
        self._chunks = body_chunks(request, limits.max_message_batch_bytes)
        self._events: list[tuple[str, Any]] = ijson.sendable_list()
        self._parser = ijson.basic_parse_coro(self._events, use_float=True)
        self._phase = _Phase.START
        self._key = ""
        self._value: _Value | None = None
        self._skip_depth = 0
        self._count = 0
        self._ready: deque[Any] = deque()
        self._read_all = False

    async def start(self) -> bool:
        """Read up to the requests: True if there are any, False (the body read) if not."""
        while not self.saw_requests and not self._read_all:
            await self._pump()
        return self.saw_requests

    async def requests(self) -> AsyncIterator[Any]:
        """Each request as it is complete (a ``RefusedLine`` for one too deep or too large),
        then the rest of the body, which must end the object properly."""
        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._read_all:
                return
            await self._pump()

    async def checked(self, model: type[BaseModel]) -> AsyncIterator[dict[str, Any] | RefusedLine]:
        """``requests()``, each checked against the dialect's wire ``model``."""
        async for item in self.requests():
            if isinstance(item, RefusedLine):
                yield item
            elif not isinstance(item, dict):
                yield RefusedLine("invalid_request", "Each request must be a JSON object.")
            else:
                try:
                    model.model_validate(item)
                except ValidationError as exc:
                    error = invalid_request(exc)
                    yield RefusedLine("invalid_request", error.message, error.param)
                    continue
                yield item

    async def _pump(self) -> None:
        """Parse the next chunk of the body (or finish parsing once it is over)."""
        chunk = await anext(self._chunks, None)
        if chunk == b"":
            return  # an empty chunk would be taken as the end of the document
        try:
            if chunk is None:
                self._read_all = True
                self._parser.close()  # raises if the document is not complete
            else:
                self._parser.send(chunk)
        # yajl hands an escaped lone low surrogate ("\udc00") to Python's UTF-8 decoder,
        # which refuses it: that body is no more JSON than one yajl refuses itself
        except (ijson.JSONError, UnicodeDecodeError) as exc:
            raise InvalidRequest("The request body is not valid JSON.") from exc
        try:
            for event, value in self._events:
                self._feed(event, value)
        finally:
            del self._events[:]

    def _feed(self, event: str, value: Any) -> None:
        phase = self._phase
        if phase is _Phase.ITEM:
            assert self._value is not None
            self._item_event(self._value.feed(event, value))
        elif phase is _Phase.ITEMS:
            if event == "end_array":
                if self._count == 0:
                    raise InvalidRequest("requests must hold at least one request.", param=REQUESTS)
                self._phase = _Phase.KEYS
                return
            self._count += 1
            self._value = _Value(self._limits.max_json_depth, self._limits.max_batch_line_bytes)
            self._item_event(self._value.feed(event, value))
        elif phase is _Phase.SKIP:
            if event == "start_map" or event == "start_array":
                self._skip_depth += 1
            elif event == "end_map" or event == "end_array":
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._phase = _Phase.ITEMS
        elif phase is _Phase.FIELD:
            assert self._value is not None
            self._field_event(self._value.feed(event, value))
        elif phase is _Phase.KEYS:
            self._top_level(event, value)
        elif phase is _Phase.OPEN:
            if event != "start_array":
                raise InvalidRequest("requests must be an array of requests.", param=REQUESTS)
            self._phase = _Phase.ITEMS
        elif phase is _Phase.START:
            if event != "start_map":
                raise InvalidRequest("The request body must be a JSON object.")
            self._phase = _Phase.KEYS

    def _top_level(self, event: str, key: Any) -> None:
        if event == "end_map":
            self._phase = _Phase.END
        elif key == REQUESTS:
            if self.saw_requests:
                raise InvalidRequest("requests is given more than once.", param=REQUESTS)
            if self.fields:
                raise self._extra(next(iter(self.fields)))
            self.saw_requests = True
            self._phase = _Phase.OPEN
        elif self.saw_requests or self._inline_only:
            raise self._extra(key)
        else:
            self._key = key
            # the field is one level into the body; what it may weigh is a plain body's
            self._value = _Value(self._limits.max_json_depth - 1, self._limits.max_request_bytes)
            self._phase = _Phase.FIELD

    def _item_event(self, built: _Built) -> None:
        assert self._value is not None
        if built is _Built.MORE:
            self._phase = _Phase.ITEM
            return
        if built is _Built.DONE:
            self._ready.append(self._value.value)
            self._skip_depth = 0
        else:
            self._ready.append(self._refused(built))
            self._skip_depth = len(self._value.stack)
        self._value = None
        self._phase = _Phase.SKIP if self._skip_depth else _Phase.ITEMS

    def _refused(self, built: _Built) -> RefusedLine:
        limits = self._limits
        if built is _Built.TOO_DEEP:
            return RefusedLine(
                "json_too_deep",
                f"The request nests arrays and objects more than {limits.max_json_depth} "
                "levels deep.",
            )
        return RefusedLine(
            "line_too_large",
            f"The request is larger than the {limits.max_batch_line_bytes:,} bytes allowed.",
        )

    def _field_event(self, built: _Built) -> None:
        assert self._value is not None
        if built is _Built.TOO_DEEP:
            raise InvalidRequest(
                "The request body nests arrays and objects more than "
                f"{self._limits.max_json_depth} levels deep.",
                param=self._key,
                code="json_too_deep",
            )
        if built is _Built.TOO_LARGE:
            raise too_large(self._limits.max_request_bytes)
        if built is _Built.DONE:
            self.fields[self._key] = self._value.value
            self._value = None
            self._phase = _Phase.KEYS
