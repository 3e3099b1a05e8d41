"""Inline batches on ``POST /v1/batches``: requests in the body, results read from the batch.

A batch created with ``{"requests": [{"custom_id", "params"}]}`` instead of an
``input_file_id`` runs like any other (its requests are kept as its input file, so the OpenAI
file views work for it), but its own routes answer in the shape of an Anthropic message
batch: ``GET /v1/batches/{id}`` gives the batch object while it runs and its results as JSONL
once it has ended. The batch remembers this in ``Batch.shape``; batches created from a file
answer as they always have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from batchway.api.disposition import attachment
from batchway.api.inline_body import InlineBody
from batchway.core.endpoints import Endpoint
from batchway.core.models import Batch, Principal
from batchway.dialects.anthropic.batches import from_core_batch, result_line
from batchway.dialects.anthropic.wire import AnthropicMessageBatch
from batchway.dialects.inline import refused_requests
from batchway.dialects.openai.wire import OpenAIInlineRequest
from batchway.errors import InvalidRequest
from batchway.gateway import Gateway

__all__ = [
    "MESSAGE_BATCH_SHAPE",
    "RESULTS_MEDIA_TYPE",
    "create_inline_batch",
    "is_inline",
    "message_batch",
    "results_response",
]

MESSAGE_BATCH_SHAPE = "message_batch"
RESULTS_MEDIA_TYPE = "application/x-jsonl"  # what Anthropic's results route answers


def is_inline(batch: Batch) -> bool:
    """Whether the batch was created inline on ``/v1/batches`` (and answers in that shape)."""
    return batch.shape == MESSAGE_BATCH_SHAPE


def _base_url(request: Request, gateway: Gateway) -> str:
    return (gateway.config.public_url or str(request.base_url)).rstrip("/")


def message_batch(request: Request, gateway: Gateway, batch: Batch) -> AnthropicMessageBatch:
    """The message batch view of an inline batch; its results are under ``/v1/batches``."""
    base = _base_url(request, gateway)
    view = from_core_batch(batch, base)
    if view.results_url is None:
        return view
    return view.model_copy(update={"results_url": f"{base}/v1/batches/{batch.id}/results"})


async def create_inline_batch(gateway: Gateway, principal: Principal, body: InlineBody) -> Batch:
    """Check the inline requests as they arrive (a 400 names each bad one by index) and
    start the batch."""
    return await gateway.batches.create_inline(
        principal,
        body.checked(OpenAIInlineRequest),
        endpoint=Endpoint.MESSAGES,
        refuse=refused_requests,
        shape=MESSAGE_BATCH_SHAPE,
    )


def results_response(gateway: Gateway, batch: Batch) -> Response:
    """The results of an ended batch, one ``{custom_id, result}`` line per request."""
    if not batch.status.terminal:
        raise InvalidRequest(
            f"Batch {batch.id} has not ended yet; its results are available once it has.",
            param="batch_id",
        )

    async def lines() -> AsyncIterator[bytes]:
        async for row in gateway.store.item_results(batch.id):
            yield result_line(row, batch.endpoint)

    return StreamingResponse(
        lines(),
        media_type=RESULTS_MEDIA_TYPE,
        headers={"content-disposition": attachment(f"{batch.id}_results.jsonl")},
    )
