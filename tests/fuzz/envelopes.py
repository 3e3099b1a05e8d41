"""What every answer of the gateway must look like, whatever it was sent."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fuzz.conftest import json_of

__all__ = ["UPSTREAM_STATUSES", "assert_answer", "dialect_of"]


def dialect_of(path: str) -> str:
    """``anthropic`` for the Messages routes, ``openai`` for every other one."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def assert_openai_error(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["param"] is None or isinstance(error["param"], str), body
    assert error["code"] is None or isinstance(error["code"], str), body


def assert_anthropic_error(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"type", "error"}, body
    assert body["type"] == "error", body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"type", "message"}, body
    assert isinstance(error["message"], str) and error["message"], body
    # Anthropic's types all end in _error, but its 413's: request_too_large
    kind = error["type"]
    assert isinstance(kind, str) and (kind.endswith("_error") or kind == "request_too_large"), body


# what a gateway may answer when the provider failed: bad gateway, unavailable, timeout
UPSTREAM_STATUSES = (502, 503, 504)


def assert_answer(response: httpx.Response, path: str, *, upstream_failed: bool = False) -> None:
    """Never a 5xx (but the ones that name a provider's failure, when it failed); an error
    is JSON in the route's own envelope."""
    allowed = UPSTREAM_STATUSES if upstream_failed else ()
    assert response.status_code < 500 or response.status_code in allowed, (
        response.status_code,
        response.text[:500],
    )
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", "").startswith("application/json"), response
    body = json_of(response)
    if dialect_of(path) == "anthropic":
        assert_anthropic_error(body)
        assert "request-id" in response.headers, response.headers
    else:
        assert_openai_error(body)
