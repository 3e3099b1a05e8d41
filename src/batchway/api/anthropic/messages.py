"""The synchronous Messages route: ``POST /v1/messages``, streamed or not.

Nothing here touches the database: the key, the routes and the provider come from memory.
The call (limits, budget, fallback routes, accounting) is `batchway.core.proxy.SyncProxy`'s,
the same as for the OpenAI routes.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import parse_json_bytes, read_body
from batchway.api.errors import client_error
from batchway.api.openai.proxy import as_response
from batchway.core.endpoints import Endpoint
from batchway.core.proxy import SyncDialect
from batchway.dialects.sse import sse_event
from batchway.errors import GatewayError, InvalidRequest, NotFound
from batchway.gateway import Gateway

__all__ = ["messages_routes"]


def _not_found(model: str) -> GatewayError:
    return NotFound(f"model: {model}", param="model")


def _error_event(failure: GatewayError) -> bytes:
    return sse_event({"type": "error", "error": {"type": "api_error", "message": failure.message}})


ANTHROPIC = SyncDialect(
    id_header="request-id",
    not_found=_not_found,
    client_error=client_error,
    error_event=_error_event,
)


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
    answer = await gateway.proxy.call(ANTHROPIC, principal, Endpoint.MESSAGES, model, body, raw)
    return as_response(answer)


def messages_routes() -> list[Route]:
    return [Route(Endpoint.MESSAGES, create_message, methods=["POST"])]
