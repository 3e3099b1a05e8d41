"""The synchronous Messages route: ``POST /v1/messages``, streamed or not.

Nothing here touches the database: the key, the route and the provider come from memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.errors import client_error
from batchway.api.openai.routes import parse_json
from batchway.core.ids import new_request_id
from batchway.errors import InvalidRequest, NotFound, UpstreamError
from batchway.gateway import Gateway
from batchway.providers._sse import sse_event

__all__ = ["messages_routes"]

ENDPOINT = "/v1/messages"


async def create_message(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    body = await parse_json(request)
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
    provider = gateway.providers[route.provider]
    upstream_body = orjson.dumps({**body, "model": route.model})
    headers = {"request-id": new_request_id()}
    if body.get("stream"):
        events = provider.stream(ENDPOINT, upstream_body)
        try:
            first = await anext(events, b"")
        except UpstreamError as error:
            raise client_error(error) from error
        return StreamingResponse(
            _relay(first, events),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    try:
        answer = await provider.send(ENDPOINT, upstream_body)
    except UpstreamError as error:
        raise client_error(error) from error
    return Response(answer.body, media_type="application/json", headers=headers)


async def _relay(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream as it comes; a failure half-way becomes an ``error`` event, as the
    status line has already gone."""
    yield first
    try:
        async for chunk in rest:
            yield chunk
    except UpstreamError as error:
        failure = client_error(error)
        yield sse_event(
            {
                "type": "error",
                "error": {"type": "api_error", "message": failure.message},
            }
        )


def messages_routes() -> list[Route]:
    return [Route(ENDPOINT, create_message, methods=["POST"])]
