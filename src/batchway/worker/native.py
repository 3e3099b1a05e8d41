"""Native batch mode: lines bound for a provider's own batch API go there in upstream batches.

Per provider, the lines waiting for it are grouped by endpoint and model (the provider's batch
API takes one model per file), claimed under a lease owned by a new upstream batch row, and
written to an input file whose ``custom_id`` is the line's own id (a client's custom ids and
batch ids never leave the gateway). The upstream batch is created with that row's id in its
metadata, polled with a growing interval, cancelled when every client batch it serves is being
cancelled, and once it ends its output and error files are read back line by line into the
lines' results. A provider that refuses the batch gets its lines run as calls instead when its
mode is ``auto``.

Every step records what it learned before the next one, so after a crash the next worker
re-uploads a file that was never recorded, finds an upstream batch that was created but not
recorded by its metadata, and otherwise just carries on polling.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from batchway.config import WorkerConfig
from batchway.core import clock
from batchway.core.models import BatchItem, ItemOutcome
from batchway.core.states import BatchStatus, ItemState
from batchway.core.usage import usage_of
from batchway.core.validation import split_lines
from batchway.errors import UntranslatableRequest, UpstreamError, UpstreamRejected
from batchway.providers._batch_clients import OpenAIBatchClient, UpstreamBatch
from batchway.providers.base import Provider
from batchway.providers.openai import native_answer, native_endpoint, native_line
from batchway.providers.registry import ProviderRegistry
from batchway.store.sql import SqlStore
from batchway.store.upstream import SqlUpstreamBatches, UpstreamBatchRow
from batchway.worker.executor import error_body

__all__ = ["METADATA_KEY", "NativeBatches"]

log = logging.getLogger("batchway.worker")

METADATA_KEY = "batchway_upstream"
_RECORD_CHUNK = 500
_NOT_RUN = {"batch_expired", "batch_cancelled"}


class NativeBatches:
    """Submits, polls and collects upstream batches for every provider in native mode."""

    def __init__(
        self,
        *,
        worker_id: str,
        store: SqlStore,
        providers: ProviderRegistry,
        settings: WorkerConfig,
        on_results: Callable[[], None],
    ) -> None:
        self._worker = worker_id
        self._store = store
        self._upstream = SqlUpstreamBatches(store)
        self._providers = {p.name: p for p in providers if p.native is not None}
        self._settings = settings
        self._on_results = on_results

    @property
    def active(self) -> bool:
        return bool(self._providers)

    def native_providers(self, endpoint: str) -> set[str]:
        """Providers whose batch API takes lines of ``endpoint``."""
        return {name for name, p in self._providers.items() if endpoint in p.native_endpoints}

    async def step(self) -> bool:
        """Submit waiting lines and advance due upstream batches; True if anything moved."""
        moved = await self._submit()
        now = clock.now_float()
        for row in await self._upstream.due(self._worker, now, self._settings.lease_seconds):
            moved = True
            try:
                await self._advance(row)
            except UpstreamError as error:
                await self._retry_later(row, error)
        return moved

    async def next_due_in(self) -> float:
        due = await self._upstream.next_due()
        wait = self._settings.idle_poll_seconds
        if due is not None:
            wait = min(wait, max(0.0, due - clock.now_float()))
        return max(wait, 0.005)

    # -- submitting ---------------------------------------------------------------------

    async def _submit(self) -> bool:
        moved = False
        for name, provider in self._providers.items():
            now = clock.now_float()
            for endpoint, model in await self._upstream.groups_waiting(name, now):
                if endpoint not in provider.native_endpoints:
                    continue
                row_id = "ub_" + secrets.token_hex(12)
                await self._upstream.create(
                    row_id,
                    provider=name,
                    endpoint=endpoint,
                    model=model,
                    now=now,
                    poll=provider.poll_seconds[0],
                )
                row = UpstreamBatchRow(
                    id=row_id,
                    provider=name,
                    endpoint=endpoint,
                    model=model,
                    state="preparing",
                    lines=0,
                    upstream_file_id=None,
                    upstream_batch_id=None,
                    poll_interval=provider.poll_seconds[0],
                    failures=0,
                )
                if await self._upstream.claim_lines(row, provider.native_max_lines, now):
                    moved = True
        return moved

    # -- one upstream batch -------------------------------------------------------------

    async def _advance(self, row: UpstreamBatchRow) -> None:
        provider = self._providers[row.provider]
        client = provider.native
        assert client is not None
        if row.state == "preparing":
            try:
                await self._create(row, provider, client)
            except UpstreamRejected as refusal:
                await self._refused(row, provider, str(refusal.message), refusal)
            return
        assert row.upstream_batch_id is not None
        batch = await client.retrieve_batch(row.upstream_batch_id)
        if batch.terminal:
            await self._collect(row, provider, client, batch)
            return
        stopping = await self._upstream.stopping_batches(row)
        if (
            stopping
            and batch.status not in ("cancelling", "cancelled")
            and await self._upstream.carries_only(row, stopping)
        ):
            batch = await client.cancel_batch(row.upstream_batch_id)
            log.info(
                "cancelled an upstream batch",
                extra={"action": "upstream_cancelled", "upstream": row.id},
            )
        interval = min(row.poll_interval * 2, provider.poll_seconds[1])
        await self._upstream.update(
            row.id,
            upstream_status=batch.status,
            next_poll_at=clock.now_float() + row.poll_interval,
            poll_interval=interval,
            failures=0,
            lease_owner=None,
        )

    async def _create(
        self, row: UpstreamBatchRow, provider: Provider, client: OpenAIBatchClient
    ) -> None:
        resuming = row.upstream_file_id is not None
        if row.upstream_file_id is None:
            lines = await self._upstream.lines(row)
            if not lines:
                await self._upstream.update(row.id, state="collected", lease_owner=None)
                return
            data, refused = _input_file(row.endpoint, lines)
            await self._record(row, refused)  # lines with no equivalent upstream fail alone
            if len(refused) == len(lines):
                await self._upstream.update(row.id, state="collected", lease_owner=None)
                self._on_results()
                return
            file_id = await client.upload(f"{row.id}.jsonl", data)
            await self._upstream.update(row.id, upstream_file_id=file_id)
            row = replace(row, upstream_file_id=file_id)
        assert row.upstream_file_id is not None
        # after a crash between creating the upstream batch and recording it, find it again
        batch = await client.find_batch(METADATA_KEY, row.id) if resuming else None
        if batch is None:
            batch = await client.create_batch(
                row.upstream_file_id,
                native_endpoint(row.endpoint),
                metadata={METADATA_KEY: row.id},
            )
        await self._upstream.update(
            row.id,
            state="submitted",
            upstream_batch_id=batch.id,
            upstream_status=batch.status,
            next_poll_at=clock.now_float() + provider.poll_seconds[0],
            failures=0,
            lease_owner=None,
        )
        log.info(
            "submitted an upstream batch",
            extra={"action": "upstream_submitted", "upstream": row.id, "provider": row.provider},
        )

    async def _refused(
        self, row: UpstreamBatchRow, provider: Provider, reason: str, error: UpstreamError | None
    ) -> None:
        """The provider would not take (or failed) the batch as a whole."""
        now = clock.now_float()
        if provider.native_fallback:
            await self._upstream.release(row, execute=True, now=now)
            log.warning(
                "provider refused a batch; its lines run as calls",
                extra={"action": "upstream_refused", "upstream": row.id, "reason": reason},
            )
        else:
            lines = await self._upstream.lines(row)
            outcomes = [self._failed(item.id, row.endpoint, error, reason) for item in lines]
            await self._record(row, outcomes)
        await self._upstream.update(row.id, state="collected", lease_owner=None)
        self._on_results()

    @staticmethod
    def _failed(
        item_id: str, endpoint: str, error: UpstreamError | None, reason: str
    ) -> ItemOutcome:
        if error is not None and error.status is not None:
            return ItemOutcome(
                item_id=item_id,
                state=ItemState.FAILED,
                status_code=error.status,
                response=error_body(error, endpoint),
            )
        return ItemOutcome(
            item_id=item_id,
            state=ItemState.FAILED,
            error_code="batch_failed",
            error_message=f"The provider failed the batch: {reason}",
        )

    async def _collect(
        self,
        row: UpstreamBatchRow,
        provider: Provider,
        client: OpenAIBatchClient,
        batch: UpstreamBatch,
    ) -> None:
        if batch.status == "failed" and not (batch.output_file_id or batch.error_file_id):
            reason = "; ".join(f"{e.code}: {e.message}" for e in batch.errors) or "failed"
            await self._refused(row, provider, reason, None)
            return
        seen: set[str] = set()
        outcomes: list[ItemOutcome] = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            async for raw in split_lines(client.download(file_id)):
                if not raw.strip():
                    continue
                outcome = _outcome(orjson.loads(raw), row.endpoint)
                if outcome is None:
                    continue
                seen.add(outcome.item_id)
                outcomes.append(outcome)
                if len(outcomes) >= _RECORD_CHUNK:
                    await self._record(row, outcomes)
                    outcomes = []
        await self._record(row, outcomes)
        await self._settle_missing(row, provider, seen)
        await self._upstream.update(
            row.id, state="collected", upstream_status=batch.status, lease_owner=None
        )
        self._on_results()
        log.info(
            "collected an upstream batch",
            extra={"action": "upstream_collected", "upstream": row.id, "status": batch.status},
        )

    async def _settle_missing(
        self, row: UpstreamBatchRow, provider: Provider, seen: set[str]
    ) -> None:
        """Lines the provider did not run: cancelled or expired with their client batch, or
        else run again (as calls, when the provider may fall back)."""
        missing = [item.id for item in await self._upstream.lines(row) if item.id not in seen]
        if not missing:
            return
        states = await self._upstream.batch_states(missing)
        outcomes = []
        for item_id in missing:
            status, finish_as = states[item_id]
            if status == BatchStatus.CANCELLING.value:
                outcomes.append(ItemOutcome(item_id=item_id, state=ItemState.CANCELLED))
            elif finish_as == BatchStatus.EXPIRED.value:
                outcomes.append(ItemOutcome(item_id=item_id, state=ItemState.EXPIRED))
        await self._record(row, outcomes)
        await self._upstream.release(row, execute=provider.native_fallback, now=clock.now_float())

    async def _record(self, row: UpstreamBatchRow, outcomes: list[ItemOutcome]) -> None:
        if outcomes:
            await self._store.record_outcomes(row.owner, outcomes, clock.now_float())

    async def _retry_later(self, row: UpstreamBatchRow, error: UpstreamError) -> None:
        delay = min(self._settings.backoff_max_seconds, 2.0**row.failures)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        log.warning(
            "upstream batch step failed; will retry",
            extra={"action": "upstream_retry", "upstream": row.id, "error": error.message},
        )
        await self._upstream.update(
            row.id,
            next_poll_at=clock.now_float() + delay,
            failures=row.failures + 1,
            lease_owner=None,
        )


def _input_file(endpoint: str, lines: list[BatchItem]) -> tuple[bytes, list[ItemOutcome]]:
    """The upstream input file of ``lines`` (``custom_id`` = the line's own id), and the
    failures of lines that cannot be sent."""
    url = orjson.dumps(native_endpoint(endpoint))
    parts: list[bytes] = []
    refused: list[ItemOutcome] = []
    for item in lines:
        try:
            body = native_line(endpoint, item.body)
        except UntranslatableRequest as error:
            refused.append(
                ItemOutcome(
                    item_id=item.id,
                    state=ItemState.FAILED,
                    status_code=400,
                    response=error_body(error, endpoint),
                )
            )
            continue
        parts.append(b'{"custom_id":"' + item.id.encode() + b'","method":"POST","url":' + url)
        parts.append(b',"body":' + body + b"}\n")
    return b"".join(parts), refused


def _outcome(line: Any, endpoint: str) -> ItemOutcome | None:
    """A line of an upstream output or error file as the result of our line."""
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return None
    item_id = line["custom_id"]
    response = line.get("response")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        status = response["status_code"]
        body = response.get("body")
        data = orjson.dumps(body)
        request_id = response.get("request_id") or None
        if 200 <= status < 300:
            answer = native_answer(endpoint, body)
            return ItemOutcome(
                item_id=item_id,
                state=ItemState.SUCCEEDED,
                status_code=status,
                response=data if answer is body else orjson.dumps(answer),
                request_id=request_id,
                usage=usage_of(answer),
            )
        refusal = UpstreamRejected(status=status, body=data, request_id=request_id)
        return ItemOutcome(
            item_id=item_id,
            state=ItemState.FAILED,
            status_code=status,
            response=error_body(refusal, endpoint),
            request_id=request_id,
        )
    error = line.get("error")
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code") or "upstream_error")
    if code in _NOT_RUN:
        return None  # never ran upstream: settled with its client batch
    return ItemOutcome(
        item_id=item_id,
        state=ItemState.FAILED,
        error_code=code,
        error_message=str(error.get("message") or "The provider could not run this request."),
    )
