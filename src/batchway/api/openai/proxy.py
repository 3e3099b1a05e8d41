"""The synchronous OpenAI routes: chat completions (streamed or not), embeddings,
completions, responses, and the model list.

This is the hot path. The key, the routes and the provider come from memory (no database
round trip); the body is parsed once to read ``model`` and ``stream`` and to put the
provider's model name in; the provider's answer goes back as the bytes it sent. A retryable
failure (429, 5xx, timeout, connection error) before any byte was sent moves on to the
model's next route.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import parse_json_bytes, read_body
from batchway.api.errors import client_error
from batchway.api.interactive import admit
from batchway.core.ids import new_request_id
from batchway.core.ratelimit import Ticket
from batchway.core.routing import Route as ModelRoute
from batchway.errors import GatewayError, InvalidRequest, NotFound, RateLimited, UpstreamError
from batchway.gateway import Gateway
from batchway.providers._sse import sse_data

__all__ = ["proxy_routes"]

_ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")


def _ordered(routes: tuple[ModelRoute, ...]) -> list[ModelRoute]:
    """The routes to try, in order: weighted at random when there are several."""
    if len(routes) < 2:
        return list(routes)
    remaining = list(routes)
    ordered = []
    while remaining:
        pick = random.choices(remaining, weights=[r.weight for r in remaining])[0]
        remaining.remove(pick)
        ordered.append(pick)
    return ordered


def _endpoint_handler(endpoint: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await _proxy(request, endpoint)

    return handler


async def _proxy(request: Request, endpoint: str) -> Response:
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
    routes = gateway.router.routes(model) if principal.may_use(model) else ()
    if not routes:
        raise NotFound(
            f"The model '{model}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    call = await admit(gateway, principal, endpoint, model, body, raw)
    failure: GatewayError | None = None
    last: tuple[ModelRoute, Ticket | None, UpstreamError] | None = None
    for route in _ordered(routes):
        try:
            ticket = await call.provider_slot(route)
        except RateLimited as limited:
            failure = limited  # this provider is full: the next route may have room
            continue
        provider = gateway.providers[route.provider]
        upstream_body = orjson.dumps({**body, "model": route.model})
        try:
            if body.get("stream"):
                chunks = provider.stream(endpoint, upstream_body)
                first = await anext(chunks, b"")
                return StreamingResponse(
                    call.relay(first, chunks, route, ticket, _error_event),
                    media_type="text/event-stream",
                    headers={**call.headers, "cache-control": "no-cache"},
                )
            answer = await provider.send(endpoint, upstream_body)
        except UpstreamError as error:
            failure = client_error(error)
            last = (route, ticket, error)
            if not error.retryable:
                break
            continue
        call.answered(route, ticket, answer)
        return Response(answer.body, media_type="application/json", headers=call.headers)
    if last is not None:  # one log row for the request, with the last route's failure
        call.failed(*last)
    assert failure is not None
    raise failure


def _error_event(failure: GatewayError) -> bytes:
    return sse_data({"error": {"message": failure.message, "type": failure.error_type}})


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
        for endpoint in _ENDPOINTS
    ]
    routes.append(Route(f"{prefix}/models", list_models, methods=["GET"]))
    return routes
