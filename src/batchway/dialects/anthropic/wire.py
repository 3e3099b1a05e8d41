"""Anthropic wire shapes for message batches, fields in the reference's order."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AnthropicBatchCreate",
    "AnthropicBatchRequest",
    "AnthropicMessageBatch",
    "AnthropicRequestCounts",
]

CUSTOM_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class _Wire(BaseModel):
    # every field is sent, defaults too: the JSON schema of an answer says so (/openapi.json)
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class AnthropicBatchRequest(_Wire):
    custom_id: str = Field(pattern=CUSTOM_ID_PATTERN)
    params: dict[str, Any]


class AnthropicBatchCreate(_Wire):
    """The body of ``POST /v1/messages/batches``."""

    requests: list[AnthropicBatchRequest] = Field(min_length=1, max_length=100_000)


class AnthropicRequestCounts(_Wire):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class AnthropicMessageBatch(_Wire):
    id: str
    type: Literal["message_batch"] = "message_batch"
    processing_status: Literal["in_progress", "canceling", "ended"]
    request_counts: AnthropicRequestCounts
    ended_at: str | None
    created_at: str
    expires_at: str
    archived_at: str | None
    cancel_initiated_at: str | None
    results_url: str | None
