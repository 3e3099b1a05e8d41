"""The synchronous OpenAI routes: chat completions (streamed or not), embeddings,
completions, responses, and the model list.

This is the hot path. The key, the routes and the provider come from memory (no database
round trip); the body is parsed once to read ``model`` and ``stream``; the call itself
(limits, budget, fallback routes, accounting) is `batchway.core.proxy.SyncProxy`'s, the
same for every dialect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import parse_json_bytes, read_body
from batchway.api.errors import client_error
from batchway.core.endpoints import PROXIED_ENDPOINTS, Endpoint
from batchway.core.ids import new_request_id
from batchway.core.proxy import Answer, SyncDialect
from batchway.dialects.sse import sse_data
from batchway.errors import GatewayError, InvalidRequest, NotFound
from batchway.gateway import Gateway

__all__ = ["OPENAI", "as_response", "proxy_routes"]


def _not_found(model: str) -> GatewayError:
    return NotFound(
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def _error_event(failure: GatewayError) -> bytes:
    return sse_data({"error": {"message": failure.message, "type": failure.error_type}})


OPENAI = SyncDialect(
    id_header="x-request-id",
    not_found=_not_found,
    client_error=client_error,
    error_event=_error_event,
)


def as_response(answer: Answer) -> Response:
    """The proxy's answer as the HTTP response."""
    if answer.stream is not None:
        return StreamingResponse(
            answer.stream, media_type="text/event-stream", headers=answer.headers
        )
    return Response(answer.body, media_type="application/json", headers=answer.headers)


def _endpoint_handler(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await _proxy(request, endpoint)

    return handler


async def _proxy(request: Request, endpoint: Endpoint) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    limits = gateway.config.limits
    raw = await read_body(request, limits.max_request_bytes)
    body = parse_json_bytes(raw, limits.max_json_depth)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )
    answer = await gateway.proxy.call(OPENAI, principal, endpoint, model, body, raw)
    return as_response(answer)


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "batchway"}
        for name in gateway.router.public_models
        if principal.may_use(name)
    ]
    return Response(
        orjson.dumps({"object": "list", "data": data}),
        media_type="application/json",
        headers={"x-request-id": new_request_id()},
    )


def proxy_routes(prefix: str) -> list[Route]:
    """The synchronous routes under ``prefix`` (``/v1`` or empty)."""
    routes = [
        Route(prefix + endpoint.removeprefix("/v1"), _endpoint_handler(endpoint), methods=["POST"])
        for endpoint in PROXIED_ENDPOINTS
    ]
    routes.append(Route(f"{prefix}/models", list_models, methods=["GET"]))
    return routes
