"""The only place errors are rendered: each dialect's envelope, never a traceback."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from batchway.core.endpoints import Endpoint
from batchway.core.ids import new_request_id
from batchway.core.retry import retry_after_header
from batchway.dialects.chat_messages.replies import anthropic_error_type
from batchway.errors import (
    GatewayError,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
)

__all__ = [
    "client_error",
    "anthropic_error",
    "handle_gateway_error",
    "handle_http_error",
    "handle_unexpected",
    "openai_error",
]

log = logging.getLogger("batchway.api")

# error types of the gateway's own that keep their name in the Anthropic envelope too
_GATEWAY_TYPES = frozenset({UpstreamAuthError.error_type})


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in the OpenAI envelope: ``{"error": {message, type, param, code}}``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def anthropic_error(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error in the Anthropic envelope: ``{"type": "error", "error": {type, message}}``;
    the type is Anthropic's for the status unless ``type_`` names another."""
    error_type = type_ or anthropic_error_type(status)
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _is_anthropic(request: Request) -> bool:
    return request.url.path.startswith(Endpoint.MESSAGES)


def _render(
    request: Request,
    status: int,
    message: str,
    *,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if _is_anthropic(request):
        own = type_ if type_ in _GATEWAY_TYPES else None
        # Anthropic answers every request, errors too, with its id
        headers = {"request-id": new_request_id(), **(headers or {})}
        return anthropic_error(status, message, type_=own, headers=headers)
    # OpenAI reports authentication failures as invalid_request_error
    openai_type = "invalid_request_error" if status in (401, 403, 404, 413) else type_
    # and answers every request, errors too, with its id
    headers = {"x-request-id": new_request_id(), **(headers or {})}
    return openai_error(status, message, type_=openai_type, param=param, code=code, headers=headers)


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    headers = exc.headers
    if isinstance(exc, RateLimited):
        headers = {"retry-after": retry_after_header(exc.retry_after), **(headers or {})}
    return _render(
        request,
        exc.status_code,
        exc.message,
        type_=exc.error_type,
        param=exc.param,
        code=exc.code,
        headers=headers,
    )


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {
        404: "Unknown request URL: {method} {path}.",
        405: "Method {method} is not allowed on {path}.",
    }
    template = messages.get(exc.status_code, exc.detail)
    message = template.format(method=request.method, path=request.url.path)
    return _render(
        request,
        exc.status_code,
        message,
        type_="invalid_request_error",
        headers=dict(exc.headers) if exc.headers else None,
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error", extra={"action": "internal_error", "path": request.url.path})
    return _render(
        request, 500, "The server had an error while processing your request.", type_="server_error"
    )


def _upstream_message(error: UpstreamError) -> str | None:
    try:
        body = orjson.loads(error.body or b"")
    except orjson.JSONDecodeError:
        return None
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) else None


def client_error(error: UpstreamError) -> GatewayError:
    """What a client of a synchronous route is told about a failed upstream call: the
    provider's status and message (masked where it entered) for a refused request, a plain
    gateway error naming the provider otherwise (never the provider's raw body or URL). A
    refusal of the gateway's credentials (401/403) stays a 502 `UpstreamAuthError`: the
    client's own key was fine."""
    if isinstance(error, UpstreamRateLimited):
        return RateLimited(
            "The upstream provider is rate limiting requests; retry later.",
            retry_after=error.retry_after or 1.0,
        )
    if isinstance(error, UpstreamRejected) and error.status is not None:
        refused = GatewayError(_upstream_message(error) or error.message)
        refused.status_code = error.status
        refused.error_type = anthropic_error_type(error.status)
        return refused
    return error
