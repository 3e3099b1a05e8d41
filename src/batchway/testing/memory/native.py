"""`MemoryNativeBatchAPI`: a provider's native batch API (OpenAI's Files + Batches, as
``OpenAINativeBatches`` sees it in front of ``FakeOpenAIBatchAPI``) held in memory.

Batches move on polls, not on the clock: every ``polls_per_step`` retrieves move one step,
``validating`` → ``in_progress`` (or ``failed``, when the lines name more than one model)
→ ``finalizing`` (every line run) → ``completed``; ``cancelling`` → ``cancelled``, having
run the first half of its lines (rounded up). Lines run by model as the fake upstream's
do: ``fake-400`` and ``fake-always-400`` fail with 400, ``fake-500`` with 500, any other
model (and a body that streams: 400) gets the echo answer. Results come back in reversed
input order, successes first, as the OpenAI adapter reads the output then the error file.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchway.core.endpoints import BATCH_ENDPOINTS, Endpoint
from batchway.core.models import BatchItem, ItemOutcome
from batchway.core.ports import NativeStatus
from batchway.core.states import ItemState
from batchway.core.usage import usage_of
from batchway.dialects.chat_messages.errors import dialect_error_body
from batchway.dialects.chat_messages.replies import chat_to_messages_response
from batchway.dialects.chat_messages.requests import messages_to_chat_request
from batchway.errors import UntranslatableRequest, UpstreamRejected
from batchway.testing._fake_openai import BUILDERS, Call, ErrorReply
from batchway.testing.memory._tables import turn

__all__ = ["NATIVE_ENDPOINTS", "MemoryNativeBatchAPI"]

_MESSAGES = Endpoint.MESSAGES
_CHAT = Endpoint.CHAT
NATIVE_ENDPOINTS = frozenset(BATCH_ENDPOINTS)
_TERMINAL = frozenset({"failed", "completed", "expired", "cancelled"})


@dataclass(slots=True, kw_only=True)
class _Answer:
    custom_id: str
    status: int
    body: Any
    request_id: str


@dataclass(slots=True, kw_only=True)
class _Batch:
    id: str
    ref: str
    endpoint: str  # the upstream's: a Messages batch runs as chat completions
    lines: list[tuple[str, Any]]  # (custom_id, body)
    status: str = "validating"
    polls: int = 0
    failure: str | None = None
    answers: list[_Answer] = field(default_factory=list)


class MemoryNativeBatchAPI:
    """A native batch API in memory; ``batches`` and ``files`` show what was submitted."""

    can_find = True

    def __init__(
        self,
        *,
        endpoints: frozenset[Endpoint] = NATIVE_ENDPOINTS,
        max_lines: int = 50_000,
        max_bytes: int = 190 * 1024 * 1024,
        fallback: bool = True,
        poll_seconds: tuple[float, float] = (30.0, 300.0),
        polls_per_step: int = 1,
    ) -> None:
        self.endpoints = endpoints
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.fallback = fallback
        self.poll_seconds = poll_seconds
        self.polls_per_step = polls_per_step
        self.files: dict[str, list[tuple[str, Any]]] = {}
        self.batches: dict[str, _Batch] = {}
        self._seq = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}memory{next(self._seq):012x}"

    # -- the NativeBatchAPI port --------------------------------------------------------

    async def prepare(
        self, ref: str, endpoint: str, lines: list[BatchItem]
    ) -> tuple[str | None, list[ItemOutcome]]:
        await turn()
        ready: list[tuple[str, Any]] = []
        refused: list[ItemOutcome] = []
        for item in lines:
            try:
                body = orjson.loads(item.body)
                ready.append(
                    (item.id, messages_to_chat_request(body) if endpoint == _MESSAGES else body)
                )
            except UntranslatableRequest as error:
                response = dialect_error_body(error, endpoint)
                refused.append(
                    ItemOutcome(
                        item_id=item.id, state=ItemState.FAILED, status_code=400, response=response
                    )
                )
        if not ready:
            return None, refused
        file_id = self._id("file-")
        self.files[file_id] = ready
        return file_id, refused

    async def create(
        self, ref: str, endpoint: str, file_id: str | None, lines: list[BatchItem]
    ) -> NativeStatus:
        await turn()
        assert file_id is not None
        upstream = _CHAT if endpoint == _MESSAGES else endpoint
        batch = _Batch(id=self._id("batch_"), ref=ref, endpoint=upstream, lines=self.files[file_id])
        self.batches[batch.id] = batch
        return _status(batch)

    async def find(self, ref: str) -> NativeStatus | None:
        await turn()
        found = [b for b in self.batches.values() if b.ref == ref]
        return _status(found[-1]) if found else None  # the newest

    async def retrieve(self, upstream_id: str) -> NativeStatus:
        await turn()
        batch = self._batch(upstream_id)
        batch.polls += 1
        if self.polls_per_step and batch.polls >= self.polls_per_step:
            batch.polls = 0
            self._step(batch)
        return _status(batch)

    async def cancel(self, upstream_id: str) -> NativeStatus:
        await turn()
        batch = self._batch(upstream_id)
        if batch.status in ("validating", "in_progress"):
            batch.status, batch.polls = "cancelling", 0
        elif batch.status != "cancelling":
            raise UpstreamRejected(
                f"Cannot cancel a batch with status '{batch.status}'.", status=400
            )
        return _status(batch)

    async def results(self, status: NativeStatus, endpoint: str) -> AsyncIterator[ItemOutcome]:
        """The outcomes of the lines the upstream ran (never-run lines are left out)."""
        await turn()
        done = list(reversed(self._batch(status.id).answers))
        for answer in [a for a in done if a.status == 200] + [a for a in done if a.status != 200]:
            yield _outcome(answer, endpoint)

    # -- the batch's life ---------------------------------------------------------------

    def _batch(self, upstream_id: str) -> _Batch:
        batch = self.batches.get(upstream_id)
        if batch is None:
            raise UpstreamRejected(f"No batch found with id '{upstream_id}'.", status=404)
        return batch

    def _step(self, batch: _Batch) -> None:
        if batch.status == "validating":
            first = str(batch.lines[0][1].get("model"))
            mismatched = [str(b.get("model")) for _, b in batch.lines if b.get("model") != first]
            if mismatched:
                batch.status = "failed"
                batch.failure = "; ".join(
                    f"model_mismatch: The model '{model}' differs from the model '{first}' of "
                    "the previous lines: a batch uses one model."
                    for model in mismatched[:100]
                )
            else:
                batch.status = "in_progress"
        elif batch.status == "in_progress":
            batch.answers = [self._run(batch.endpoint, *line) for line in batch.lines]
            batch.status = "finalizing"
        elif batch.status == "finalizing":
            batch.status = "completed"
        elif batch.status == "cancelling":
            ran = batch.lines[: (len(batch.lines) + 1) // 2]
            batch.answers = [self._run(batch.endpoint, *line) for line in ran]
            batch.status = "cancelled"

    def _run(self, endpoint: str, custom_id: str, body: Any) -> _Answer:
        request_id = self._id("req_")
        model = str(body.get("model"))
        try:
            if body.get("stream") is True:
                message = "Streaming is not supported in the Batch API."
                raise ErrorReply(400, message, param="body.stream")
            if model.startswith(("fake-400", "fake-always-400")):
                raise ErrorReply(400, f"Model {model} rejects every request (fake).", param="model")
            if model.startswith("fake-500") and not model.startswith("fake-500-then-ok"):
                message = "The server had an error while processing your request (fake)."
                raise ErrorReply(500, message, "server_error")
            answer = BUILDERS[endpoint.removeprefix("/v1")](Call(body, model, request_id, 8))
        except ErrorReply as failure:
            return _Answer(
                custom_id=custom_id,
                status=failure.status,
                body=orjson.loads(failure.body),
                request_id=request_id,
            )
        return _Answer(custom_id=custom_id, status=200, body=answer, request_id=request_id)


def _status(batch: _Batch) -> NativeStatus:
    return NativeStatus(
        id=batch.id,
        status=batch.status,
        terminal=batch.status in _TERMINAL,
        cancelling=batch.status in ("cancelling", "cancelled"),
        failure=batch.failure,
        raw=batch.id,
    )


def _outcome(answer: _Answer, endpoint: str) -> ItemOutcome:
    """A line's outcome, as the OpenAI adapter reads it from a result file."""
    if answer.status == 200:
        body = chat_to_messages_response(answer.body) if endpoint == _MESSAGES else answer.body
        return ItemOutcome(
            item_id=answer.custom_id,
            state=ItemState.SUCCEEDED,
            status_code=200,
            response=orjson.dumps(body),
            request_id=answer.request_id,
            usage=usage_of(body),
        )
    refusal = UpstreamRejected(
        status=answer.status, body=orjson.dumps(answer.body), request_id=answer.request_id
    )
    return ItemOutcome(
        item_id=answer.custom_id,
        state=ItemState.FAILED,
        status_code=answer.status,
        response=dialect_error_body(refusal, endpoint),
        request_id=answer.request_id,
    )
