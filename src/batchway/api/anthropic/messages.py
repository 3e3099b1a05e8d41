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
from batchway.api.errors import client_error, error_label
from batchway.api.interactive import Call, StreamTap, admit, usage_of_answer
from batchway.api.openai.routes import parse_json_bytes
from batchway.core.ids import new_request_id
from batchway.core.models import Usage
from batchway.core.ratelimit import Ticket
from batchway.core.routing import Route as ModelRoute
from batchway.errors import InvalidRequest, NotFound, UpstreamError
from batchway.gateway import Gateway
from batchway.providers._sse import sse_event

__all__ = ["messages_routes"]

ENDPOINT = "/v1/messages"


async def create_message(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(request, gateway.keys)
    raw = await request.body()
    body = parse_json_bytes(raw)
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
    call = await admit(
        gateway, principal, ENDPOINT, model, body, raw, {"request-id": new_request_id()}
    )
    ticket = await call.provider_slot(route)
    provider = gateway.providers[route.provider]
    upstream_body = orjson.dumps({**body, "model": route.model})
    try:
        if body.get("stream"):
            events = provider.stream(ENDPOINT, upstream_body)
            first = await anext(events, b"")
            return StreamingResponse(
                _relay(first, events, call, route, ticket),
                media_type="text/event-stream",
                headers={**call.headers, "cache-control": "no-cache"},
            )
        answer = await provider.send(ENDPOINT, upstream_body)
    except UpstreamError as error:
        gateway.metrics.upstream_error(route.provider, error_label(error))
        call.finish(route, ticket, usage=Usage(), status_code=error.status, response=error.body)
        raise client_error(error) from error
    call.finish(
        route,
        ticket,
        usage=usage_of_answer(answer.body),
        status_code=answer.status,
        response=answer.body,
    )
    return Response(answer.body, media_type="application/json", headers=call.headers)


async def _relay(
    first: bytes, rest: AsyncIterator[bytes], call: Call, route: ModelRoute, ticket: Ticket | None
) -> AsyncIterator[bytes]:
    """The stream as it comes; a failure half-way becomes an ``error`` event, as the
    status line has already gone. Its usage is read from its first and last events."""
    tap = StreamTap()
    tap.feed(first)
    yield first
    try:
        async for chunk in rest:
            tap.feed(chunk)
            yield chunk
    except UpstreamError as error:
        failure = client_error(error)
        yield sse_event(
            {
                "type": "error",
                "error": {"type": "api_error", "message": failure.message},
            }
        )
    finally:
        call.finish(route, ticket, usage=tap.usage(), status_code=200)


def messages_routes() -> list[Route]:
    return [Route(ENDPOINT, create_message, methods=["POST"])]
