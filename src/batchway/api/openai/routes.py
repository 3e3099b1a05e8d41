"""OpenAI Files and Batches routes (served under ``/v1`` and without the prefix).

A batch created from inline ``requests`` answers in another shape: see ``inline.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate
from batchway.api.body import read_json, validated
from batchway.api.disposition import attachment
from batchway.api.inline_body import InlineBody, unrecognized
from batchway.api.multipart import Form, read_upload
from batchway.api.openai.inline import (
    create_inline_batch,
    is_inline,
    message_batch,
    results_response,
)
from batchway.core.files import Upload
from batchway.core.models import Principal
from batchway.dialects.openai.batches import from_core_batch, from_core_file
from batchway.dialects.openai.wire import (
    OpenAIBatchCreate,
    OpenAIFileDeleted,
)
from batchway.errors import InvalidRequest
from batchway.gateway import Gateway

__all__ = ["by_method", "json_response", "openai_routes", "parse_json", "validated"]


def json_response(data: Any, status: int = 200) -> Response:
    if isinstance(data, BaseModel):
        data = data.model_dump()
    return Response(orjson.dumps(data), status, media_type="application/json")


def _list_response(items: list[BaseModel], has_more: bool) -> Response:
    data = [item.model_dump() for item in items]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
    )


async def parse_json(request: Request) -> Any:
    """The JSON body of a request, within the limits on size and nesting (``body.py``)."""
    return await read_json(request)


def _int_query(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer.", param=name) from exc


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _principal(request: Request) -> tuple[Gateway, Principal]:
    gateway = _gateway(request)
    return gateway, await authenticate(request, gateway.keys)


def _expiry_fields(fields: dict[str, str]) -> tuple[str | None, str | None]:
    """``expires_after``'s anchor and seconds, in bracket (the SDK's) or dot notation."""
    anchor = fields.get("expires_after[anchor]") or fields.get("expires_after.anchor")
    seconds = fields.get("expires_after[seconds]") or fields.get("expires_after.seconds")
    return anchor, seconds


def _expires_after(fields: dict[str, str]) -> int | None:
    anchor, seconds = _expiry_fields(fields)
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at" or seconds is None:
        raise InvalidRequest(
            "expires_after needs anchor 'created_at' and seconds.", param="expires_after"
        )
    try:
        return int(seconds)
    except ValueError as exc:
        raise InvalidRequest(
            "expires_after.seconds must be an integer.", param="expires_after"
        ) from exc


# -- files ------------------------------------------------------------------------------


async def create_file(request: Request) -> Response:
    gateway, principal = await _principal(request)

    async def begin(form: Form) -> Upload:
        # what came before the file part is checked before any of its bytes are stored
        purpose = form.fields.get("purpose")
        if purpose is not None:
            gateway.files.check_purpose(purpose)
        if all(_expiry_fields(form.fields)):
            gateway.files.check_expiry(_expires_after(form.fields))
        return await gateway.files.begin(principal, purpose)

    form = await read_upload(request, gateway.config.limits, begin)
    if form.upload is None or form.filename is None:
        raise InvalidRequest(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    try:
        expires_after = _expires_after(form.fields)
    except InvalidRequest:
        await form.upload.abort()
        raise
    file = await gateway.files.finish(
        principal,
        form.upload,
        filename=form.filename,
        purpose=form.fields.get("purpose"),
        expires_after=expires_after,
    )
    return json_response(from_core_file(file))


async def list_files(request: Request) -> Response:
    gateway, principal = await _principal(request)
    page = await gateway.files.list(
        principal,
        purpose=request.query_params.get("purpose"),
        limit=_int_query(request, "limit", 10_000),
        after=request.query_params.get("after"),
        order=request.query_params.get("order", "desc"),
    )
    return _list_response([from_core_file(f) for f in page.items], page.has_more)


async def retrieve_file(request: Request) -> Response:
    gateway, principal = await _principal(request)
    file = await gateway.files.get(principal, request.path_params["file_id"])
    return json_response(from_core_file(file))


async def delete_file(request: Request) -> Response:
    gateway, principal = await _principal(request)
    file_id = request.path_params["file_id"]
    await gateway.files.delete(principal, file_id)
    return json_response(OpenAIFileDeleted(id=file_id, deleted=True))


async def file_content(request: Request) -> Response:
    gateway, principal = await _principal(request)
    file, chunks = await gateway.files.content(principal, request.path_params["file_id"])
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "content-length": str(file.bytes),
            "content-disposition": attachment(file.filename),
        },
    )


# -- batches ----------------------------------------------------------------------------


def _not_inline(key: str) -> InvalidRequest:
    if key == "input_file_id":
        return InvalidRequest("Give either input_file_id or requests, not both.", param="requests")
    return unrecognized(key)


async def create_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    # the body may carry inline requests (see inline.py): read as a stream, not whole
    body = InlineBody(request, gateway.config.limits, extra=_not_inline)
    if await body.start():
        inline = await create_inline_batch(gateway, principal, body)
        return json_response(message_batch(request, gateway, inline))
    create = validated(OpenAIBatchCreate, body.fields)
    batch = await gateway.batches.create(
        principal,
        input_file_id=create.input_file_id,
        endpoint=create.endpoint,
        completion_window=create.completion_window,
        metadata=create.metadata,
        output_expires_after=create.output_expires_after.seconds
        if create.output_expires_after
        else None,
    )
    return json_response(from_core_batch(batch))


async def list_batches(request: Request) -> Response:
    gateway, principal = await _principal(request)
    page = await gateway.batches.list(
        principal,
        limit=_int_query(request, "limit", 20),
        after=request.query_params.get("after"),
    )
    return _list_response([from_core_batch(b) for b in page.items], page.has_more)


async def retrieve_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.get(principal, request.path_params["batch_id"])
    if is_inline(batch):  # the message batch while it runs, then its results
        if batch.status.terminal:
            return results_response(gateway, batch)
        return json_response(message_batch(request, gateway, batch))
    return json_response(from_core_batch(batch))


async def cancel_batch(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.cancel(principal, request.path_params["batch_id"])
    if is_inline(batch):
        return json_response(message_batch(request, gateway, batch))
    return json_response(from_core_batch(batch))


async def batch_results(request: Request) -> Response:
    gateway, principal = await _principal(request)
    batch = await gateway.batches.get(principal, request.path_params["batch_id"])
    return results_response(gateway, batch)


def by_method(**endpoints: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
    """One endpoint for a path served with several methods, so that a 405 lists them all."""

    async def endpoint(request: Request) -> Response:
        return await endpoints[request.method](request)

    return endpoint


def openai_routes(prefix: str) -> list[Route]:
    """The Files and Batches routes under ``prefix`` (``/v1`` or empty)."""
    return [
        Route(
            f"{prefix}/files", by_method(POST=create_file, GET=list_files), methods=["GET", "POST"]
        ),
        Route(
            f"{prefix}/files/{{file_id}}",
            by_method(GET=retrieve_file, DELETE=delete_file),
            methods=["GET", "DELETE"],
        ),
        Route(f"{prefix}/files/{{file_id}}/content", file_content, methods=["GET"]),
        Route(
            f"{prefix}/batches",
            by_method(POST=create_batch, GET=list_batches),
            methods=["GET", "POST"],
        ),
        Route(f"{prefix}/batches/{{batch_id}}", retrieve_batch, methods=["GET"]),
        Route(f"{prefix}/batches/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
        Route(f"{prefix}/batches/{{batch_id}}/results", batch_results, methods=["GET"]),
    ]
