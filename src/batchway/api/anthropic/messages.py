"""The synchronous Messages route: ``POST /v1/messages``, streamed or not.

Nothing here touches the database: the key, the route and the provider come from memory.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import parse_json_bytes, read_body
from batchway.api.errors import client_error
from batchway.api.interactive import admit
from batchway.errors import GatewayError, InvalidRequest, NotFound, UpstreamError
from batchway.gateway import Gateway
from batchway.providers._sse import sse_event

__all__ = ["messages_routes"]

ENDPOINT = "/v1/messages"


async def create_message(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    limits = gateway.config.limits
    raw = await read_body(request, limits.max_request_bytes)
    body = parse_json_bytes(raw, limits.max_json_depth)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("max_tokens: a positive integer is required", param="max_tokens")
    route = gateway.router.route(model) if principal.may_use(model) else None
    if route is None:
        raise NotFound(f"model: {model}", param="model")
    call = await admit(gateway, principal, ENDPOINT, model, body, raw, "request-id")
    ticket = await call.provider_slot(route)
    provider = gateway.providers[route.provider]
    upstream_body = orjson.dumps({**body, "model": route.model})
    try:
        if body.get("stream"):
            events = provider.stream(ENDPOINT, upstream_body)
            first = await anext(events, b"")
            return StreamingResponse(
                call.relay(first, events, route, ticket, _error_event),
                media_type="text/event-stream",
                headers={**call.headers, "cache-control": "no-cache"},
            )
        answer = await provider.send(ENDPOINT, upstream_body)
    except UpstreamError as error:
        call.failed(route, ticket, error)
        raise client_error(error) from error
    call.answered(route, ticket, answer)
    return Response(answer.body, media_type="application/json", headers=call.headers)


def _error_event(failure: GatewayError) -> bytes:
    return sse_event({"type": "error", "error": {"type": "api_error", "message": failure.message}})


def messages_routes() -> list[Route]:
    return [Route(ENDPOINT, create_message, methods=["POST"])]
