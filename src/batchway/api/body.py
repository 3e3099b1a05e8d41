"""Reading JSON request bodies within the limits, and checking them against wire models:
the one reader every JSON route uses.

A body larger than its limit is refused with a 413 before it is read whole: a
``Content-Length`` over the limit is refused before any byte is read, and a body sent
without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
A body that parses is then held to ``limits.max_json_depth`` (see ``core/nesting.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from batchway.config import BatchLimits
from batchway.core.files import human_size
from batchway.core.nesting import nested_deeper
from batchway.errors import InvalidRequest, PayloadTooLarge

__all__ = [
    "body_chunks",
    "invalid_request",
    "limits_of",
    "parse_json_bytes",
    "read_body",
    "read_json",
    "too_large",
    "validated",
]

M = TypeVar("M", bound=BaseModel)


def limits_of(request: Request) -> BatchLimits:
    """The limits of the gateway serving ``request``."""
    limits: BatchLimits = request.app.state.gateway.config.limits
    return limits


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the {human_size(limit)} allowed.",
        code="request_too_large",
    )


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest("The Content-Length header is not a number.") from None


async def body_chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; raises ``PayloadTooLarge`` as soon as it passes ``limit``."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes of it (``body_chunks`` unrolled: this is on
    the synchronous routes' path)."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json_bytes(raw: bytes, max_depth: int) -> Any:
    """The JSON document in ``raw``; a 400 if it is not JSON or nests deeper than allowed."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own ceiling, 1,024 levels
            raise _too_deep(max_depth) from exc
        raise InvalidRequest("The request body is not valid JSON.") from exc
    if nested_deeper(raw, value, max_depth):
        raise _too_deep(max_depth)
    return value


def _too_deep(max_depth: int) -> InvalidRequest:
    return InvalidRequest(
        f"The request body nests arrays and objects more than {max_depth} levels deep.",
        code="json_too_deep",
    )


async def read_json(request: Request, limit: int | None = None) -> Any:
    """The JSON body of ``request``, within ``limit`` (default: ``max_request_bytes``)."""
    limits = limits_of(request)
    raw = await read_body(request, limits.max_request_bytes if limit is None else limit)
    return parse_json_bytes(raw, limits.max_json_depth)


def _param(loc: tuple[int | str, ...]) -> str | None:
    """``requests[2].params`` for the location ``("requests", 2, "params")``."""
    param = ""
    for part in loc:
        param += f"[{part}]" if isinstance(part, int) else f".{part}" if param else part
    return param or None


def validated(model: type[M], data: Any) -> M:
    """``data`` as a ``model``; a 400 naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from exc


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """The 400 for a value that is not what its wire model says, naming the first field."""
    error = exc.errors()[0]
    param = _param(error["loc"])
    if param is None:
        return InvalidRequest("The request body must be a JSON object.")
    if error["type"] == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if error["type"] == "extra_forbidden":
        return InvalidRequest(f"Unrecognized request argument: '{param}'.", param=param)
    return InvalidRequest(f"Invalid value for '{param}': {error['msg']}.", param=param)
