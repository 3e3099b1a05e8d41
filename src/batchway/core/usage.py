"""Token usage read from an upstream answer, whatever the endpoint."""

from __future__ import annotations

from typing import Any

from batchway.core.models import Usage

__all__ = ["usage_of"]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def usage_of(body: Any) -> Usage:
    """Usage of a chat, completion, embedding or responses answer (zeros if absent)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return Usage()
    if "input_tokens" in usage:  # Responses API and Anthropic Messages
        details = _dict(usage.get("input_tokens_details"))
        output_details = _dict(usage.get("output_tokens_details"))
        return Usage(
            input_tokens=_int(usage.get("input_tokens"))
            + _int(usage.get("cache_creation_input_tokens"))
            + _int(usage.get("cache_read_input_tokens")),
            cached_tokens=_int(details.get("cached_tokens"))
            + _int(usage.get("cache_read_input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            reasoning_tokens=_int(output_details.get("reasoning_tokens")),
        )
    details = _dict(usage.get("prompt_tokens_details"))
    output_details = _dict(usage.get("completion_tokens_details"))
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        cached_tokens=_int(details.get("cached_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        reasoning_tokens=_int(output_details.get("reasoning_tokens")),
    )
