"""Anthropic Message Batches routes (``/v1/messages/batches``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.inline_body import InlineBody
from batchway.api.openai.routes import by_method, json_response
from batchway.core.endpoints import Endpoint
from batchway.core.ids import new_request_id
from batchway.core.models import Principal
from batchway.dialects.anthropic.batches import from_core_batch, result_line
from batchway.dialects.anthropic.wire import AnthropicBatchRequest
from batchway.dialects.inline import refused_requests
from batchway.errors import InvalidRequest
from batchway.gateway import Gateway

__all__ = ["anthropic_routes"]

_MAX_LIST = 1000


async def _principal(request: Request) -> tuple[Gateway, Principal]:
    gateway: Gateway = request.app.state.gateway
    return gateway, await authenticate(request, gateway.keys)


def _respond(data: object) -> Response:
    response = json_response(data)
    response.headers["request-id"] = new_request_id()
    return response


def _results_base(request: Request, gateway: Gateway) -> str:
    return (gateway.config.public_url or str(request.base_url)).rstrip("/")


async def create_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    body = InlineBody(request, gateway.config.limits, inline_only=True)  # read as a stream
    if not await body.start():
        raise InvalidRequest(
            "Missing required parameter: 'requests'.",
            param="requests",
            code="missing_required_parameter",
        )
    batch = await gateway.batches.create_inline(
        principal,
        body.checked(AnthropicBatchRequest),
        endpoint=Endpoint.MESSAGES,
        refuse=refused_requests,
    )
    return _respond(from_core_batch(batch, _results_base(request, gateway)))


async def list_batches(request: Request) -> Response:
    gateway, principal = await _principal(request)
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError as exc:
        raise InvalidRequest("limit must be an integer.", param="limit") from exc
    page = await gateway.batches.list(
        principal,
        limit=limit,
        after=request.query_params.get("after_id"),
        before=request.query_params.get("before_id"),
        max_limit=_MAX_LIST,
    )
    base = _results_base(request, gateway)
    data = [from_core_batch(b, base).model_dump() for b in page.items]
    return _respond(
        {
            "data": data,
            "has_more": page.has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def retrieve_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.get(principal, request.path_params["batch_id"])
    return _respond(from_core_batch(batch, _results_base(request, gateway)))


async def cancel_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.cancel(principal, request.path_params["batch_id"])
    return _respond(from_core_batch(batch, _results_base(request, gateway)))


async def delete_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch_id = request.path_params["batch_id"]
    await gateway.batches.delete(principal, batch_id)
    return _respond({"id": batch_id, "type": "message_batch_deleted"})


async def batch_results(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.get(principal, request.path_params["batch_id"])
    if not batch.status.terminal:
        raise InvalidRequest(
            f"Batch {batch.id} has not ended yet; its results are available once it has."
        )

    async def lines() -> AsyncIterator[bytes]:
        async for row in gateway.store.item_results(batch.id):
            yield result_line(row, batch.endpoint)

    return StreamingResponse(
        lines(), media_type="application/x-jsonl", headers={"request-id": new_request_id()}
    )


def anthropic_routes() -> list[Route]:
    base = "/v1/messages/batches"
    return [
        Route(base, by_method(POST=create_batch, GET=list_batches), methods=["GET", "POST"]),
        Route(
            f"{base}/{{batch_id}}",
            by_method(GET=retrieve_batch, DELETE=delete_batch),
            methods=["GET", "DELETE"],
        ),
        Route(f"{base}/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
        Route(f"{base}/{{batch_id}}/results", batch_results, methods=["GET"]),
    ]
