"""Result lines of a batch in the OpenAI batch output format, rendered without re-parsing.

A successful upstream body is spliced into the line as the bytes the provider sent
(compacted to one line when it had newlines), so a large answer costs one copy.
"""

from __future__ import annotations

import orjson

from batchway.core.ids import item_line_id
from batchway.core.models import Batch, ItemResult
from batchway.core.states import ItemState

__all__ = ["NOT_RUN", "output_line", "result_line"]

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


def output_line(batch: Batch, row: ItemResult) -> bytes:
    """A finished line of ``batch`` as its output or error file shows it."""
    return result_line(
        line_id=item_line_id(batch.id, row.line),
        custom_id=row.custom_id,
        state=row.state,
        status_code=row.status_code,
        response=row.response,
        request_id=row.request_id,
        error_code=row.error_code,
        error_message=row.error_message,
    )
