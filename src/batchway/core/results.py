"""Result lines of a batch in the OpenAI batch output format, rendered without re-parsing.

A successful upstream body is spliced into the line as the bytes the provider sent
(compacted to one line when it had newlines), so a large answer costs one copy.
"""

from __future__ import annotations

import hashlib

import orjson

from batchway.core.states import ItemState

__all__ = ["NOT_RUN", "item_line_id", "result_file_id", "result_line"]

NOT_RUN = {
    ItemState.CANCELLED: (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
    ItemState.EXPIRED: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}

_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _base62(data: bytes, length: int) -> str:
    number = int.from_bytes(data, "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def item_line_id(batch_id: str, line: int) -> str:
    """The ``batch_req_…`` id of a line: stable, so a rewritten file says the same."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:32]


def result_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: stable, so finalizing twice is harmless."""
    return "file-" + _base62(hashlib.sha256(f"{batch_id}:{kind}".encode()).digest(), 22)


def _one_line(body: bytes) -> bytes:
    return orjson.dumps(orjson.loads(body)) if b"\n" in body or b"\r" in body else body


def result_line(
    *,
    line_id: str,
    custom_id: str,
    state: ItemState,
    status_code: int | None,
    response: bytes | None,
    request_id: str | None,
    error_code: str | None,
    error_message: str | None,
) -> bytes:
    """One line of the output or error file, with its trailing newline."""
    head = b'{"id":' + orjson.dumps(line_id) + b',"custom_id":' + orjson.dumps(custom_id)
    if status_code is not None and response is not None:
        return (
            head
            + b',"response":{"status_code":'
            + str(status_code).encode()
            + b',"request_id":'
            + orjson.dumps(request_id or "")
            + b',"body":'
            + _one_line(response)
            + b'},"error":null}\n'
        )
    code, message = NOT_RUN.get(state, (error_code or "request_failed", error_message or ""))
    return (
        head
        + b',"response":null,"error":'
        + orjson.dumps({"code": code, "message": message})
        + b"}\n"
    )
