"""An upstream's error body in the dialect of the client's endpoint.

A provider answers in its own dialect; a batch line's error record (and a translated
synchronous answer) must be in the client's: the Anthropic envelope for ``/v1/messages``,
the OpenAI one for everything else.
"""

from __future__ import annotations

from typing import Any

import orjson

from batchway.core.endpoints import Endpoint
from batchway.dialects.chat_messages.replies import (
    anthropic_error_from_openai,
    openai_error_from_anthropic,
)
from batchway.errors import UpstreamError

__all__ = ["dialect_error_body"]


def dialect_error_body(error: UpstreamError, endpoint: str) -> bytes:
    """The provider's error body in the dialect of the line's endpoint (the Anthropic
    envelope for ``/v1/messages``, the OpenAI one otherwise), whichever the provider spoke."""
    parsed: Any = None
    if error.body:
        try:
            parsed = orjson.loads(error.body)
        except orjson.JSONDecodeError:
            parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), dict):
        parsed = {"error": {"message": error.message, "type": error.error_type}}
    anthropic_shaped = parsed.get("type") == "error"
    status = error.status or error.status_code
    if endpoint == Endpoint.MESSAGES:
        if not anthropic_shaped:
            parsed = anthropic_error_from_openai(parsed, status, request_id=error.request_id)
    elif anthropic_shaped:
        parsed = openai_error_from_anthropic(parsed)
    else:
        parsed["error"] = {"param": None, "code": None, **parsed["error"]}
    return orjson.dumps(parsed)
