"""Native batch mode: lines bound for a provider's own batch API go there in upstream batches.

Per provider, the lines waiting for it are grouped by endpoint and model (a provider's batch
API takes one model per file), claimed under a lease owned by a new upstream batch row, and
sent (as an input file, or inline) with the line's own id as ``custom_id``: a client's custom
ids and batch ids never leave the gateway. The upstream batch is polled with a growing
interval, cancelled when every client batch it serves is being cancelled, and once it ends
its results are read back line by line into the lines' results. A provider that refuses a
batch gets its lines run as calls instead when its mode is ``auto``.

Every step records what it learned before the next one, so after a crash the next worker
re-uploads a file that was never recorded, finds an upstream batch that was created but not
recorded (by its metadata, where the API has metadata), and otherwise carries on polling.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace

from batchway.config import WorkerConfig
from batchway.core import clock
from batchway.core.line_records import LineRecords
from batchway.core.models import ItemOutcome, UpstreamBatchRow
from batchway.core.ports import (
    LineAccounting,
    LineStore,
    NativeBatchAPI,
    NativeStatus,
    UpstreamBatchStore,
)
from batchway.core.retry import RetryPolicy
from batchway.core.states import BatchStatus, ItemState
from batchway.dialects.chat_messages.errors import dialect_error_body
from batchway.errors import UpstreamAuthError, UpstreamError, UpstreamRejected
from batchway.providers.registry import ProviderRegistry

__all__ = ["NativeBatches"]

log = logging.getLogger("batchway.worker")

_RECORD_CHUNK = 500


class NativeBatches:
    """Submits, polls and collects upstream batches for every provider in native mode."""

    def __init__(
        self,
        *,
        worker_id: str,
        store: LineStore,
        upstream: UpstreamBatchStore,
        providers: ProviderRegistry,
        settings: WorkerConfig,
        on_results: Callable[[], None],
        accounting: LineAccounting | None = None,
    ) -> None:
        self._worker = worker_id
        self._store = store
        self._upstream = upstream
        self._apis = {p.name: p.native for p in providers if p.native is not None}
        self._settings = settings
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.backoff_base_seconds,
            max_seconds=settings.backoff_max_seconds,
        )
        self._on_results = on_results
        self._accounting = accounting
        self._records = LineRecords(accounting)

    @property
    def active(self) -> bool:
        return bool(self._apis)

    def native_providers(self, endpoint: str) -> set[str]:
        """Providers whose batch API takes lines of ``endpoint``."""
        return {name for name, api in self._apis.items() if endpoint in api.endpoints}

    async def step(self) -> bool:
        """Submit waiting lines and advance due upstream batches; True if anything moved."""
        moved = await self._submit()
        now = clock.now_float()
        for row in await self._upstream.due(self._worker, now, self._settings.lease_seconds):
            moved = True
            api = self._apis[row.provider]
            try:
                await self._advance(row, api)
            except UpstreamError as error:
                await self._retry_later(row, api, error)
            except Exception as exc:  # one upstream batch must not stop the others
                log.exception(
                    "upstream batch step crashed",
                    extra={"action": "upstream_error", "upstream": row.id},
                )
                await self._retry_later(
                    row, api, UpstreamError(f"internal error ({type(exc).__name__})")
                )
        return moved

    async def next_due_in(self, wait: float) -> float:
        """How long to sleep: ``wait``, or until the next upstream batch is due if sooner."""
        due = await self._upstream.next_due()
        if due is not None:
            wait = min(wait, max(0.0, due - clock.now_float()))
        return max(wait, 0.005)

    # -- submitting ---------------------------------------------------------------------

    async def _submit(self) -> bool:
        moved = False
        for name, api in self._apis.items():
            now = clock.now_float()
            for endpoint, model in await self._upstream.groups_waiting(name, now):
                if endpoint not in api.endpoints:
                    continue
                row_id = "ub_" + secrets.token_hex(12)
                first_poll = api.poll_seconds[0]
                await self._upstream.create(
                    row_id, provider=name, endpoint=endpoint, model=model, now=now, poll=first_poll
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
                    poll_interval=first_poll,
                    failures=0,
                )
                if await self._upstream.claim_lines(row, api.max_lines, api.max_bytes, now):
                    moved = True
        return moved

    # -- one upstream batch -------------------------------------------------------------

    async def _advance(self, row: UpstreamBatchRow, api: NativeBatchAPI) -> None:
        if row.state == "preparing":
            try:
                await self._create(row, api)
            except (UpstreamRejected, UpstreamAuthError) as refusal:
                await self._refused(row, api, refusal.message, refusal)
            return
        assert row.upstream_batch_id is not None
        status = await api.retrieve(row.upstream_batch_id)
        if status.terminal:
            await self._collect(row, api, status)
            return
        stopping = await self._upstream.stopping_batches(row)
        if stopping and not status.cancelling and await self._upstream.carries_only(row, stopping):
            status = await api.cancel(row.upstream_batch_id)
            log.info(
                "cancelled an upstream batch",
                extra={"action": "upstream_cancelled", "upstream": row.id},
            )
        await self._upstream.update(
            row.id,
            upstream_status=status.status,
            next_poll_at=clock.now_float() + row.poll_interval,
            poll_interval=min(row.poll_interval * 2, api.poll_seconds[1]),
            failures=0,
            lease_owner=None,
        )

    async def _create(self, row: UpstreamBatchRow, api: NativeBatchAPI) -> None:
        lines = await self._upstream.lines(row)
        resuming = row.upstream_file_id is not None
        if row.upstream_file_id is None:
            file_id, refused = await api.prepare(row.id, row.endpoint, lines)
            await self._record(row, refused)  # lines with no equivalent upstream fail alone
            if len(refused) == len(lines):
                await self._upstream.update(row.id, state="collected", lease_owner=None)
                self._on_results()
                return
            if file_id is not None:
                await self._upstream.update(row.id, upstream_file_id=file_id)
                row = replace(row, upstream_file_id=file_id)
            sent = {outcome.item_id for outcome in refused}
            lines = [item for item in lines if item.id not in sent]
        # after a crash between creating the upstream batch and recording it, find it again
        status = await api.find(row.id) if resuming and api.can_find else None
        if status is None:
            status = await api.create(row.id, row.endpoint, row.upstream_file_id, lines)
        await self._upstream.update(
            row.id,
            state="submitted",
            upstream_batch_id=status.id,
            upstream_status=status.status,
            next_poll_at=clock.now_float() + api.poll_seconds[0],
            failures=0,
            lease_owner=None,
        )
        log.info(
            "submitted an upstream batch",
            extra={"action": "upstream_submitted", "upstream": row.id, "provider": row.provider},
        )

    async def _refused(
        self, row: UpstreamBatchRow, api: NativeBatchAPI, reason: str, error: UpstreamError | None
    ) -> None:
        """The provider would not take (or failed) the batch as a whole. A refusal of the
        gateway's credentials fails the lines even in ``auto`` mode: the calls would carry
        the same credentials."""
        if api.fallback and not isinstance(error, UpstreamAuthError):
            await self._upstream.release(row, execute=True, now=clock.now_float())
            log.warning(
                "provider refused a batch; its lines run as calls",
                extra={"action": "upstream_refused", "upstream": row.id, "reason": reason},
            )
        else:
            lines = await self._upstream.lines(row)
            outcomes = [_failed(item.id, row.endpoint, error, reason) for item in lines]
            await self._record(row, outcomes)
        await self._upstream.update(row.id, state="collected", lease_owner=None)
        self._on_results()

    async def _collect(
        self, row: UpstreamBatchRow, api: NativeBatchAPI, status: NativeStatus
    ) -> None:
        if status.failure is not None:
            await self._refused(row, api, status.failure, None)
            return
        seen: set[str] = set()
        outcomes: list[ItemOutcome] = []
        async for outcome in api.results(status, row.endpoint):
            seen.add(outcome.item_id)
            outcomes.append(outcome)
            if len(outcomes) >= _RECORD_CHUNK:
                await self._record(row, outcomes)
                outcomes = []
        await self._record(row, outcomes)
        await self._settle_missing(row, api, seen)
        await self._upstream.update(
            row.id, state="collected", upstream_status=status.status, lease_owner=None
        )
        self._on_results()
        log.info(
            "collected an upstream batch",
            extra={"action": "upstream_collected", "upstream": row.id, "status": status.status},
        )

    async def _settle_missing(
        self, row: UpstreamBatchRow, api: NativeBatchAPI, seen: set[str]
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
        await self._upstream.release(row, execute=api.fallback, now=clock.now_float())

    async def _record(self, row: UpstreamBatchRow, outcomes: list[ItemOutcome]) -> None:
        if outcomes:
            # the provider bills these lines at its batch price
            items = await self._store.leased_items(
                row.owner, [o.item_id for o in outcomes], bodies=self._records.record_bodies
            )
            now = clock.now_float()
            records = [
                self._records.of(items[o.item_id], replace(o, native=True), now)
                for o in outcomes
                if o.item_id in items
            ]
            written = await self._store.record_outcomes(row.owner, records, now)
            if self._accounting is not None:
                self._accounting.logged([r.log for r in written if r.log is not None])

    async def _retry_later(
        self, row: UpstreamBatchRow, api: NativeBatchAPI, error: UpstreamError
    ) -> None:
        """Poll again later, or give the upstream batch up once it failed too often."""
        if row.failures + 1 >= self._settings.max_upstream_failures:
            log.error(
                "upstream batch failed too often; given up",
                extra={"action": "upstream_given_up", "upstream": row.id, "error": error.message},
            )
            reason = f"it failed {row.failures + 1} times in a row ({error.message})"
            await self._refused(row, api, reason, None)
            return
        delay = self._policy.poll_delay(error, row.failures, poll_max_seconds=api.poll_seconds[1])
        log.warning(
            "upstream batch step failed; will retry",
            extra={
                "action": "upstream_retry",
                "upstream": row.id,
                "provider": row.provider,
                "error": error.message,
                "retry_in": delay,
            },
        )
        await self._upstream.update(
            row.id,
            next_poll_at=clock.now_float() + delay,
            failures=row.failures + 1,
            lease_owner=None,
        )


def _failed(item_id: str, endpoint: str, error: UpstreamError | None, reason: str) -> ItemOutcome:
    """A line of a batch the provider refused, in ``native`` mode (no fall back)."""
    if isinstance(error, UpstreamAuthError):
        return ItemOutcome(
            item_id=item_id,
            state=ItemState.FAILED,
            error_code=error.error_type,
            error_message=error.message,
        )
    if error is not None and error.status is not None:
        return ItemOutcome(
            item_id=item_id,
            state=ItemState.FAILED,
            status_code=error.status,
            response=dialect_error_body(error, endpoint),
        )
    return ItemOutcome(
        item_id=item_id,
        state=ItemState.FAILED,
        error_code="batch_failed",
        error_message=f"The provider failed the batch: {reason}",
    )
