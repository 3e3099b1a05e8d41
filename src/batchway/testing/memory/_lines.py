"""The line statements of the in-memory store: storing, leasing, recording results, reading
them back, as ``store/sql_items.py`` does them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import fields

from batchway.core.listings import (
    BatchFigures,
    FiguresChange,
    LineFilter,
    LineGroup,
    LineView,
    counts_from_states,
    ended_lines,
    figures_changes,
    figures_from_groups,
    figures_of_row,
    line_view,
)
from batchway.core.models import (
    BatchItem,
    ItemResult,
    LineRecord,
    NewItem,
    Page,
    RequestCounts,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.testing.memory._tables import (
    BatchRow,
    LineRow,
    MemoryTables,
    UpstreamRow,
    assign,
    turn,
)

__all__ = ["MemoryLineStatements"]

_ACTIVE = (ItemState.PENDING, ItemState.LEASED)
_PAGE = 1000
_RUNNING = (
    BatchStatus.VALIDATING,
    BatchStatus.IN_PROGRESS,
    BatchStatus.FINALIZING,
    BatchStatus.CANCELLING,
)


def by_state(rows: Iterable[LineRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _outcome_values(record: LineRecord, now: float) -> dict[str, object]:
    o = record.outcome
    return {
        "state": o.state.value,
        "status_code": o.status_code,
        "response": o.response,
        "request_id": o.request_id,
        "error_code": o.error_code,
        "error_message": o.error_message,
        "not_before": o.not_before or 0.0,
        "input_tokens": o.usage.input_tokens,
        "cached_tokens": o.usage.cached_tokens,
        "output_tokens": o.usage.output_tokens,
        "reasoning_tokens": o.usage.reasoning_tokens,
        "cost_usd": record.cost_usd,
        "finished_at": None if o.state is ItemState.PENDING else now,
        "lease_owner": None,
        "lease_expires_at": None,
    }


class MemoryLineStatements:
    """Batch lines (``batch_items``), on the tables of one in-memory store."""

    tables: MemoryTables

    def _add_figures(self, changes: Mapping[str, FiguresChange]) -> None:
        """Add to the figures each batch keeps on its row (see ``store.figures``)."""
        for batch_id, change in changes.items():
            row = self.tables.batches.get(batch_id)
            if row is not None:
                for f in fields(change):
                    setattr(row, f.name, getattr(row, f.name) + getattr(change, f.name))

    def _item(self, row: LineRow, body: bytes | None = None) -> BatchItem:
        batch = self.tables.batches[row.batch_id]
        return BatchItem(
            id=str(row.id),
            batch_id=row.batch_id,
            line=row.line,
            custom_id=row.custom_id,
            provider=row.provider,
            endpoint=batch.endpoint,
            body=row.body if body is None else body,
            attempts=row.attempts,
            model=row.model,
            owner=batch.owner,
        )

    def _held(self, worker: str, item_ids: Iterable[int | str]) -> list[LineRow]:
        """The lines of ``item_ids`` that ``worker`` holds."""
        rows = (self.tables.lines.get(int(item_id)) for item_id in item_ids)
        return [row for row in rows if row is not None and row.held_by(worker)]

    async def clear_items(self, batch_id: str) -> None:
        await turn()
        for row in self.tables.lines_of(batch_id):
            del self.tables.lines[row.id]
        batch = self.tables.batches.get(batch_id)
        if batch is not None:
            for f in fields(FiguresChange):
                setattr(batch, f.name, 0)
            batch.models, batch.providers = None, None

    async def insert_items(
        self, batch_id: str, items: Sequence[NewItem], native_providers: Iterable[str] = ()
    ) -> None:
        """Store validated lines; lines of ``native_providers`` may go to their native batch API."""
        await turn()
        native = frozenset(native_providers)
        self.tables.add_lines(
            {
                "batch_id": batch_id,
                "line": item.line,
                "custom_id": item.custom_id,
                "model": item.model,
                "provider": item.provider,
                "body": item.body,
                "execute_only": item.provider not in native,
            }
            for item in items
        )
        batch = self.tables.batches.get(batch_id)
        if batch is not None and items:
            batch.models = sorted({*(batch.models or ()), *(i.model for i in items)})
            batch.providers = sorted({*(batch.providers or ()), *(i.provider for i in items)})

    async def claim_items(
        self,
        worker: str,
        provider: str,
        limit: int,
        now: float,
        lease: float,
        *,
        execute: bool = True,
        model: str | None = None,
        endpoint: str | None = None,
    ) -> list[BatchItem]:
        """Lease up to ``limit`` runnable lines for ``provider``; counts the attempt.

        ``execute`` picks lines the gateway runs itself (True) or lines bound for the
        provider's native batch API (False), optionally of one ``model`` and ``endpoint``.
        """
        await turn()
        batches = self.tables.batches
        runnable = [
            row
            for row in sorted(self.tables.lines.values(), key=lambda r: r.id)
            if row.state == ItemState.PENDING
            and row.provider == provider
            and row.not_before <= now
            and row.execute_only == execute
            and row.batch_id in batches
            and batches[row.batch_id].status == BatchStatus.IN_PROGRESS
            and (
                model is None or (row.model == model and batches[row.batch_id].endpoint == endpoint)
            )
        ][: max(limit, 0)]
        for row in runnable:
            row.state = ItemState.LEASED.value
            row.lease_owner = worker
            row.lease_expires_at = now + lease
            row.attempts += 1
            row.upstream_batch_id = None if execute else worker.removeprefix("native:")
        return [self._item(row) for row in runnable]

    async def extend_leases(self, worker: str, until: float) -> None:
        await turn()
        for row in self.tables.lines.values():
            if row.held_by(worker):
                row.lease_expires_at = until
        for batch in self.tables.batches.values():
            if batch.lease_owner == worker:
                batch.lease_expires_at = until

    async def release_expired_leases(self, now: float, max_attempts: int | None = None) -> int:
        """Give back the lines of workers that stopped renewing their leases.

        A line that has already been claimed ``max_attempts`` times fails instead
        (``worker_lost``): a line that takes its worker down with it must not do so forever.
        """
        await turn()
        released = 0
        lost: list[str] = []
        for row in self.tables.lines.values():
            expired = row.lease_expires_at is not None and row.lease_expires_at < now
            if row.state != ItemState.LEASED or not expired:
                continue
            if max_attempts is not None and row.attempts >= max_attempts:
                message = (
                    f"The worker running this line stopped during each of its "
                    f"{max_attempts} attempts; it was not tried again."
                )
                assign(
                    row,
                    {
                        "state": ItemState.FAILED.value,
                        "error_code": "worker_lost",
                        "error_message": message,
                        "finished_at": now,
                        "lease_owner": None,
                        "lease_expires_at": None,
                    },
                )
                lost.append(row.batch_id)
            else:
                row.release()
                released += 1
        self._add_figures(figures_changes((b, ItemState.FAILED, None, 0.0) for b in lost))
        return released

    async def release_worker(self, worker: str, unstarted: Iterable[str] = ()) -> int:
        """A worker stopping cleanly hands back what it holds at once, rather than letting
        its leases run out: the lines it had claimed, and the batches it was working on.
        Lines in ``unstarted`` were claimed but never sent: their attempt is taken back."""
        await turn()
        never_sent = self._held(worker, unstarted)
        for row in never_sent:
            row.release(attempts=max(row.attempts - 1, 0))
        held = [row for row in self.tables.lines.values() if row.held_by(worker)]
        for row in held:
            row.release()
        leased: list[BatchRow | UpstreamRow] = [
            *self.tables.batches.values(),
            *self.tables.upstream.values(),
        ]
        for owner in leased:
            if owner.lease_owner == worker:
                owner.lease_owner, owner.lease_expires_at = None, None
        return len(never_sent) + len(held)

    async def fail_unrecorded(self, worker: str, item_id: str, reason: str, now: float) -> bool:
        """Fail a held line whose result the database would not take (no log, no price)."""
        await turn()
        for row in self._held(worker, [item_id]):
            assign(
                row,
                {
                    "state": ItemState.FAILED.value,
                    "status_code": None,
                    "response": None,
                    "error_code": "result_not_recorded",
                    "error_message": reason,
                    "finished_at": now,
                    "lease_owner": None,
                    "lease_expires_at": None,
                },
            )
            self._add_figures(ended_lines(row.batch_id, ItemState.FAILED, 1))
            return True
        return False

    async def record_outcomes(
        self, worker: str, records: Sequence[LineRecord], now: float
    ) -> list[LineRecord]:
        """Write what became of leased lines, with their prices and request-log rows, in
        one transaction.

        A line is only written while this worker still holds its lease, so a worker that
        lost a lease can never overwrite (or double count, or double bill) another's result.
        Returns the records written.
        """
        await turn()
        held = {row.id for row in self._held(worker, [r.item_id for r in records])}
        written = [r for r in records if r.item_id in held]
        # the logs go first: one the table refuses leaves every line as it was
        self.tables.add_logs([r.log for r in written if r.log is not None])
        changes: list[tuple[str, ItemState, Usage | None, float]] = []
        for record in written:
            row = self.tables.lines[record.item_id]
            if row.held_by(worker):  # a line named twice is written once
                o, cost = record.outcome, record.cost_usd - row.cost_usd
                changes.append((row.batch_id, o.state, o.usage, cost))
                assign(row, _outcome_values(record, now))
        self._add_figures(figures_changes(changes))
        return written

    async def leased_items(
        self, worker: str, item_ids: Sequence[str], *, bodies: bool
    ) -> dict[str, BatchItem]:
        """The lines of ``item_ids`` that ``worker`` holds, as claimed (request bodies only
        when asked for: they can be large)."""
        await turn()
        return {
            str(row.id): self._item(row, None if bodies else b"")
            for row in self._held(worker, item_ids)
            if row.batch_id in self.tables.batches
        }

    async def line_counts(self) -> dict[str, int]:
        """How many batch lines are in each state, over every batch (for metrics)."""
        await turn()
        return by_state(self.tables.lines.values())

    async def stopped_batches(self, batch_ids: Iterable[str]) -> dict[str, ItemState]:
        """Of these batches, those whose unstarted lines must not run now, and how those
        lines end (cancelled, or expired)."""
        await turn()
        stopped: dict[str, ItemState] = {}
        for batch_id in batch_ids:
            batch = self.tables.batches.get(batch_id)
            if batch is None or batch.status not in (
                BatchStatus.CANCELLING,
                BatchStatus.FINALIZING,
            ):
                continue
            if batch.finish_as == BatchStatus.EXPIRED:
                stopped[batch_id] = ItemState.EXPIRED
            elif batch.finish_as == BatchStatus.CANCELLED:
                stopped[batch_id] = ItemState.CANCELLED
        return stopped

    async def has_items(self, batch_id: str) -> bool:
        await turn()
        return bool(self.tables.lines_of(batch_id))

    async def has_active_items(self, batch_id: str) -> bool:
        await turn()
        return any(row.state in _ACTIVE for row in self.tables.lines_of(batch_id))

    async def has_work(self) -> bool:
        """Is any batch still doing something (for drain mode)?"""
        await turn()
        return any(batch.status in _RUNNING for batch in self.tables.batches.values())

    async def next_retry_at(self, now: float) -> float | None:
        """When the earliest line now waiting for a retry may run."""
        await turn()
        waiting = [
            row.not_before
            for row in self.tables.lines.values()
            if row.state == ItemState.PENDING and row.not_before > now
        ]
        return float(min(waiting)) if waiting else None

    async def item_summary(self, batch_id: str) -> tuple[RequestCounts, Usage]:
        """Final counts and token usage of a batch, from its lines."""
        await turn()
        rows = self.tables.lines_of(batch_id)
        done = [row for row in rows if row.state == ItemState.SUCCEEDED]
        usage = Usage(
            input_tokens=sum(row.input_tokens for row in done),
            cached_tokens=sum(row.cached_tokens for row in done),
            output_tokens=sum(row.output_tokens for row in done),
            reasoning_tokens=sum(row.reasoning_tokens for row in done),
        )
        return counts_from_states(len(rows), by_state(rows)), usage

    async def batch_figures(self, batch_ids: Sequence[str]) -> dict[str, BatchFigures]:
        """What the lines of each of these batches add up to so far; a batch without lines
        is left out. Each batch keeps its figures on its row as its lines change; only a
        batch still storing its lines has them added up."""
        await turn()
        kept = {}
        for batch_id in batch_ids:
            row = self.tables.batches.get(batch_id)
            figures = figures_of_row(row) if row is not None else None
            if figures is not None:
                kept[batch_id] = figures
        return {**kept, **self._line_figures([b for b in batch_ids if b not in kept])}

    def _line_figures(self, batch_ids: Sequence[str]) -> dict[str, BatchFigures]:
        wanted = set(batch_ids)
        groups = []
        for r in self.tables.lines.values():
            if r.batch_id not in wanted:
                continue
            ok = r.state == ItemState.SUCCEEDED
            groups.append(
                LineGroup(
                    batch_id=r.batch_id,
                    state=r.state,
                    model=r.model,
                    provider=r.provider,
                    lines=1,
                    usage=Usage(
                        input_tokens=r.input_tokens if ok else 0,
                        cached_tokens=r.cached_tokens if ok else 0,
                        output_tokens=r.output_tokens if ok else 0,
                        reasoning_tokens=r.reasoning_tokens if ok else 0,
                    ),
                    cost_usd=r.cost_usd,
                )
            )
        return figures_from_groups(groups)

    def _kept_figures(self, batch_id: str) -> dict[str, object]:
        """The columns an ending batch keeps what its lines add up to in: cost, models,
        providers and tokens."""
        figures = self._line_figures([batch_id]).get(batch_id, BatchFigures())
        return {
            "cost_usd": figures.cost_usd,
            "models": list(figures.models),
            "providers": list(figures.providers),
            "input_tokens": figures.usage.input_tokens,
            "cached_tokens": figures.usage.cached_tokens,
            "output_tokens": figures.usage.output_tokens,
            "reasoning_tokens": figures.usage.reasoning_tokens,
        }

    async def list_lines(
        self, batch_id: str, filters: LineFilter, *, limit: int, after_line: int | None
    ) -> Page[LineView]:
        """A batch's lines in input order from just after ``after_line``."""
        await turn()
        rows = sorted(
            (
                r
                for r in self.tables.lines_of(batch_id)
                if (after_line is None or r.line > after_line)
                and (filters.state is None or r.state == filters.state)
                and (filters.custom_id is None or r.custom_id == filters.custom_id)
            ),
            key=lambda r: r.line,
        )
        return Page(items=[line_view(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def settle_unfinished(self, batch_id: str, state: ItemState, now: float) -> None:
        """Lines of an ending batch that never started end as ``state`` (cancelled/expired)."""
        await turn()
        self._settle_pending(batch_id, state, now)

    def _settle_pending(self, batch_id: str, state: ItemState, now: float) -> None:
        settled = 0
        for row in self.tables.lines_of(batch_id):
            if row.state == ItemState.PENDING:
                row.state, row.finished_at = state.value, now
                settled += 1
        if settled:
            self._add_figures(ended_lines(batch_id, state, settled))

    async def item_results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        """Every finished line of a batch in input order, a page at a time."""
        after = 0
        while True:
            await turn()
            rows = sorted(
                (r for r in self.tables.lines_of(batch_id) if r.line > after),
                key=lambda r: r.line,
            )[:_PAGE]
            for row in rows:
                yield ItemResult(
                    id=row.id,
                    line=row.line,
                    custom_id=row.custom_id,
                    state=ItemState(row.state),
                    status_code=row.status_code,
                    response=row.response,
                    request_id=row.request_id,
                    error_code=row.error_code,
                    error_message=row.error_message,
                )
            if len(rows) < _PAGE:
                return
            after = rows[-1].line

    async def healthy(self) -> bool:
        """Can the database be reached at all? (Always: it is this process's memory.)"""
        return True
