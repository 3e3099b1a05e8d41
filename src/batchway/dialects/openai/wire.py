"""OpenAI wire shapes for files and batches, fields in the reference's order."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "OpenAIBatch",
    "OpenAIBatchCreate",
    "OpenAIBatchError",
    "OpenAIBatchErrors",
    "OpenAIBatchOutputLine",
    "OpenAIBatchRequestCounts",
    "OpenAIBatchUsage",
    "OpenAIExpiresAfter",
    "OpenAIFile",
    "OpenAIFileDeleted",
    "OpenAIInlineBatchCreate",
    "OpenAIInlineRequest",
]


class _Wire(BaseModel):
    # every field is sent, defaults too: the JSON schema of an answer says so (/openapi.json)
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class OpenAIExpiresAfter(_Wire):
    anchor: Literal["created_at"]
    seconds: int


class OpenAIBatchCreate(_Wire):
    """The body of ``POST /v1/batches``."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None = None
    output_expires_after: OpenAIExpiresAfter | None = None


class OpenAIInlineRequest(_Wire):
    """One request of an inline batch; ``params`` is a Messages request, kept as sent."""

    custom_id: str
    params: dict[str, Any]


class OpenAIInlineBatchCreate(_Wire):
    """The body of ``POST /v1/batches`` when the requests come inline, not as a file.

    The count and size limits, and the rules of each request, are the batch engine's.
    """

    requests: list[OpenAIInlineRequest] = Field(min_length=1)


class OpenAIFile(_Wire):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: str
    status_details: str | None = None


class OpenAIFileDeleted(_Wire):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class OpenAIBatchError(_Wire):
    code: str
    message: str
    param: str | None
    line: int | None


class OpenAIBatchErrors(_Wire):
    object: Literal["list"] = "list"
    data: list[OpenAIBatchError]


class OpenAIBatchRequestCounts(_Wire):
    total: int
    completed: int
    failed: int


class _InputTokensDetails(_Wire):
    cached_tokens: int


class _OutputTokensDetails(_Wire):
    reasoning_tokens: int


class OpenAIBatchUsage(_Wire):
    input_tokens: int
    input_tokens_details: _InputTokensDetails
    output_tokens: int
    output_tokens_details: _OutputTokensDetails
    total_tokens: int


class OpenAIBatch(_Wire):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None
    errors: OpenAIBatchErrors | None
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: OpenAIBatchRequestCounts
    usage: OpenAIBatchUsage | None
    metadata: dict[str, str] | None


class _OutputResponse(_Wire):
    status_code: int
    request_id: str
    body: dict[str, Any]


class _OutputError(_Wire):
    code: str
    message: str


class OpenAIBatchOutputLine(_Wire):
    """One line of a batch output or error file."""

    id: str = Field(pattern=r"^batch_req_")
    custom_id: str
    response: _OutputResponse | None
    error: _OutputError | None
