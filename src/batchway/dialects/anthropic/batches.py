"""Domain objects to Anthropic wire objects, and result lines in the Anthropic format."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from batchway.core.models import Batch, ItemResult
from batchway.core.states import BatchStatus, ItemState
from batchway.dialects.anthropic.wire import AnthropicMessageBatch, AnthropicRequestCounts
from batchway.dialects.chat_messages.replies import (
    anthropic_error_from_openai,
    chat_to_messages_response,
)

__all__ = ["from_core_batch", "result_line", "rfc3339"]

_PROCESSING = {
    BatchStatus.CANCELLING: "canceling",
    BatchStatus.VALIDATING: "in_progress",
    BatchStatus.IN_PROGRESS: "in_progress",
    BatchStatus.FINALIZING: "in_progress",
}
# a line that got no answer: the Anthropic error type of its code (api_error otherwise)
_NO_RESPONSE_TYPES = {
    "request_timeout": "timeout_error",
    "upstream_auth_error": "upstream_auth_error",
}


def rfc3339(timestamp: int | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _ended_at(batch: Batch) -> int | None:
    return batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at


def from_core_batch(batch: Batch, results_base: str) -> AnthropicMessageBatch:
    """The Anthropic view of a batch; ``results_base`` is the absolute URL of this gateway."""
    counts = batch.counts
    ended = batch.status.terminal
    if ended:
        request_counts = AnthropicRequestCounts(
            processing=0,
            succeeded=counts.succeeded,
            errored=counts.failed,
            canceled=counts.cancelled,
            expired=counts.expired,
        )
    else:  # Anthropic fills the other counts only once the batch has ended
        request_counts = AnthropicRequestCounts(
            processing=counts.total, succeeded=0, errored=0, canceled=0, expired=0
        )
    created = rfc3339(batch.created_at)
    expires = rfc3339(batch.expires_at)
    assert created is not None and expires is not None
    return AnthropicMessageBatch(
        id=batch.id,
        processing_status=_PROCESSING.get(batch.status, "ended"),
        request_counts=request_counts,
        ended_at=rfc3339(_ended_at(batch)) if ended else None,
        created_at=created,
        expires_at=expires,
        archived_at=None,
        cancel_initiated_at=rfc3339(batch.cancelling_at),
        results_url=f"{results_base}/v1/messages/batches/{batch.id}/results" if ended else None,
    )


def _message(row: ItemResult, endpoint: str) -> bytes:
    assert row.response is not None
    if endpoint == "/v1/messages":
        body = row.response
        return body if b"\n" not in body else orjson.dumps(orjson.loads(body))
    if endpoint == "/v1/chat/completions":
        return orjson.dumps(chat_to_messages_response(orjson.loads(row.response)))
    return orjson.dumps(orjson.loads(row.response))  # other endpoints: their answer as it is


def _error(row: ItemResult) -> dict[str, object]:
    if row.status_code is not None and row.response is not None:
        body = orjson.loads(row.response)
        if isinstance(body, dict) and body.get("type") == "error":
            return body
        return anthropic_error_from_openai(body, row.status_code, request_id=row.request_id)
    error_type = _NO_RESPONSE_TYPES.get(row.error_code or "", "api_error")
    return {
        "type": "error",
        "error": {"type": error_type, "message": row.error_message or "The request failed."},
        "request_id": row.request_id,
    }


def result_line(row: ItemResult, endpoint: str) -> bytes:
    """One line of ``/v1/messages/batches/{id}/results``, newline included."""
    head = b'{"custom_id":' + orjson.dumps(row.custom_id) + b',"result":'
    if row.state is ItemState.SUCCEEDED:
        result = b'{"type":"succeeded","message":' + _message(row, endpoint) + b"}"
    elif row.state is ItemState.CANCELLED:
        result = b'{"type":"canceled"}'
    elif row.state is ItemState.EXPIRED:
        result = b'{"type":"expired"}'
    else:
        result = orjson.dumps({"type": "errored", "error": _error(row)})
    return head + result + b"}\n"
