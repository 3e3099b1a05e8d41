"""`MemoryStore`: keys, files (within quotas) and batches in plain Python, with the lines
in ``_lines``; the same behaviour as ``batchway.store.sql.SqlStore``, statement for
statement, without a database.

Every method runs as one transaction would: nothing else happens between its first and its
last step, and it lets other tasks run once before it starts (see `turn`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from batchway.core.listings import BatchFilter, counts_from_states
from batchway.core.models import (
    ApiKey,
    Batch,
    BatchError,
    Page,
    RequestCounts,
    StorageUse,
    StoredFile,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.testing.memory._lines import MemoryLineStatements, by_state
from batchway.testing.memory._tables import (
    BatchRow,
    FileRow,
    MemoryTables,
    UniqueViolation,
    assign,
    check_columns,
    json_value,
    turn,
)

__all__ = ["MemoryStore"]

_ACTIVE = (ItemState.PENDING, ItemState.LEASED)
_LIVE_COUNTS = (BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING)


def _after(rows: list[Any], after: str | None) -> list[Any]:
    """``rows`` (in listing order) strictly past the row ``after`` (all of them when it is
    not one of ``rows``)."""
    ids = [row.id for row in rows]
    if after is None or after not in ids:
        return rows
    return rows[ids.index(after) + 1 :]


class MemoryStore(MemoryLineStatements):
    """Keys, files, batches and batch lines in memory (one object is one database)."""

    def __init__(self, tables: MemoryTables | None = None) -> None:
        self.tables = tables if tables is not None else MemoryTables()

    async def close(self) -> None:
        """Nothing to release."""

    # -- keys ---------------------------------------------------------------------------

    async def create_key(self, key: ApiKey) -> None:
        await turn()
        keys = self.tables.keys
        if key.id in keys or any(k.key_hash == key.key_hash for k in keys.values()):
            raise UniqueViolation(f"api_keys: id {key.id!r} or its hash")
        keys[key.id] = key

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        await turn()
        return next((k for k in self.tables.keys.values() if k.key_hash == key_hash), None)

    async def get_key(self, key_id: str) -> ApiKey | None:
        await turn()
        return self.tables.keys.get(key_id)

    async def list_keys(self) -> list[ApiKey]:
        await turn()
        return sorted(self.tables.keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke_key(self, key_id: str) -> bool:
        await turn()
        key = self.tables.keys.get(key_id)
        if key is None:
            return False
        self.tables.keys[key_id] = replace(key, revoked=True)
        return True

    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKey | None:
        await turn()
        key = self.tables.keys.get(key_id)
        if key is None:
            return None
        values = {**changes}
        if values.get("models") is not None:
            values["models"] = tuple(values["models"])
        self.tables.keys[key_id] = replace(key, **values)
        return self.tables.keys[key_id]

    # -- files --------------------------------------------------------------------------

    def _live_files(self, owner: str | None, now: int) -> list[FileRow]:
        """Files not expired at ``now`` (of ``owner``, unless None), in listing order."""
        return [
            row
            for row in sorted(self.tables.files.values(), key=lambda r: r.sort_key)
            if (row.file.expires_at is None or row.file.expires_at > now)
            and (owner is None or row.file.owner == owner)
        ]

    async def create_file(self, file: StoredFile, blob_key: str) -> None:
        await turn()
        self.tables.add_file(file, blob_key)

    async def get_file(self, owner: str | None, file_id: str, now: int) -> StoredFile | None:
        await turn()
        return next((r.file for r in self._live_files(owner, now) if r.file.id == file_id), None)

    async def file_blob_key(self, file_id: str) -> str | None:
        await turn()
        row = self.tables.files.get(file_id)
        return row.blob_key if row is not None else None

    async def list_files(
        self,
        owner: str,
        now: int,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        ascending: bool,
    ) -> Page[StoredFile]:
        await turn()
        # the cursor may name any file of the owner's, even one that has expired since
        mine = sorted(
            (r for r in self.tables.files.values() if r.file.owner == owner),
            key=lambda r: r.sort_key,
            reverse=not ascending,
        )
        past = {file.id for file in _after([r.file for r in mine], after)}
        live = {r.file.id for r in self._live_files(owner, now)}
        rows = [
            r.file
            for r in mine
            if r.file.id in past
            and r.file.id in live
            and (not purpose or r.file.purpose == purpose)
        ]
        return Page(items=rows[:limit], has_more=len(rows) > limit)

    async def delete_file(self, owner: str, file_id: str, now: int) -> str | None:
        """Delete a file's row; returns its blob key (None if there was no such file)."""
        await turn()
        if not any(r.file.id == file_id for r in self._live_files(owner, now)):
            return None
        return self.tables.files.pop(file_id).blob_key

    async def storage_use(self, owner: str, now: int) -> StorageUse:
        """What the live files of ``owner`` take at ``now``."""
        await turn()
        return self._storage_use(owner, now)

    def _storage_use(self, owner: str, now: int) -> StorageUse:
        live = self._live_files(owner, now)
        return StorageUse(bytes=sum(r.file.bytes for r in live), files=len(live))

    async def create_file_within(
        self,
        file: StoredFile,
        blob_key: str,
        *,
        now: int,
        max_bytes: int | None,
        max_files: int | None,
    ) -> StorageUse | None:
        """Insert ``file`` if its owner's live files still fit within ``max_bytes`` and
        ``max_files`` with it (None: no such limit). Returns None once inserted, or what the
        owner's files take when it did not fit (nothing is inserted then)."""
        await turn()
        if max_bytes is not None or max_files is not None:
            use = self._storage_use(file.owner, now)
            over_bytes = max_bytes is not None and use.bytes + file.bytes > max_bytes
            over_files = max_files is not None and use.files + 1 > max_files
            if over_bytes or over_files:
                return use
        self.tables.add_file(file, blob_key)
        return None

    async def expired_files(self, now: int, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` files expired at ``now``, oldest expiry first: (id, blob key)."""
        await turn()
        expired = sorted(
            (
                (r.file.expires_at, r.file.id, r.blob_key)
                for r in self.tables.files.values()
                if r.file.expires_at is not None and r.file.expires_at <= now
            ),
        )
        return [(file_id, blob_key) for _, file_id, blob_key in expired[:limit]]

    async def forget_expired_files(self, file_ids: list[str], now: int) -> int:
        """Delete the rows of these files if they are expired at ``now``; returns how many."""
        await turn()
        forgotten = 0
        for file_id in set(file_ids):
            row = self.tables.files.get(file_id)
            if row is not None and row.file.expires_at is not None and row.file.expires_at <= now:
                del self.tables.files[file_id]
                forgotten += 1
        return forgotten

    # -- batches ------------------------------------------------------------------------

    def _batch(self, row: BatchRow) -> Batch:
        if row.status in _LIVE_COUNTS:  # running: counted from the lines
            counts = counts_from_states(row.total, by_state(self.tables.lines_of(row.id)))
        else:
            counts = RequestCounts(
                total=row.total,
                succeeded=row.succeeded,
                failed=row.failed,
                cancelled=row.cancelled,
                expired=row.expired,
            )
        errors = tuple(
            BatchError(
                code=e["code"], message=e["message"], line=e.get("line"), param=e.get("param")
            )
            for e in (row.errors or [])
        )
        return Batch(
            id=row.id,
            owner=row.owner,
            endpoint=row.endpoint,
            input_file_id=row.input_file_id,
            completion_window=row.completion_window,
            status=BatchStatus(row.status),
            created_at=row.created_at,
            expires_at=row.expires_at,
            model=row.model,
            metadata=json_value(row.metadata),
            output_expires_after=row.output_expires_after,
            in_progress_at=row.in_progress_at,
            finalizing_at=row.finalizing_at,
            completed_at=row.completed_at,
            failed_at=row.failed_at,
            expired_at=row.expired_at,
            cancelling_at=row.cancelling_at,
            cancelled_at=row.cancelled_at,
            output_file_id=row.output_file_id,
            error_file_id=row.error_file_id,
            errors=errors,
            counts=counts,
            usage=Usage(
                input_tokens=row.input_tokens,
                cached_tokens=row.cached_tokens,
                output_tokens=row.output_tokens,
                reasoning_tokens=row.reasoning_tokens,
            ),
            shape=row.shape,
        )

    async def create_batch(self, batch: Batch) -> bool:
        """Insert a batch unless its key is revoked (False then, and nothing is inserted).

        The key's row stays share-locked until the insert commits, so a revocation either
        comes first and is seen here, or waits and then finds this batch to cancel."""
        await turn()
        key = self.tables.keys.get(batch.owner)
        if key is not None and key.revoked:
            return False
        if batch.id in self.tables.batches:
            raise UniqueViolation(f"batches.id {batch.id!r}")
        # only what a new batch has: its timestamps, results and errors come later
        self.tables.batches[batch.id] = BatchRow(
            id=batch.id,
            owner=batch.owner,
            endpoint=batch.endpoint,
            input_file_id=batch.input_file_id,
            completion_window=batch.completion_window,
            status=batch.status.value,
            created_at=batch.created_at,
            expires_at=batch.expires_at,
            model=batch.model,
            metadata=json_value(batch.metadata),
            output_expires_after=batch.output_expires_after,
            total=batch.counts.total,
            sort_key=self.tables.sort_key(),
            shape=batch.shape,
        )
        return True

    async def unfinished_batches(self, owner: str) -> list[str]:
        """The ids of the batches of ``owner`` that have not ended, oldest first."""
        await turn()
        rows = sorted(self.tables.batches.values(), key=lambda r: r.sort_key)
        return [r.id for r in rows if r.owner == owner and not BatchStatus(r.status).terminal]

    async def get_batch(self, owner: str | None, batch_id: str) -> Batch | None:
        await turn()
        row = self.tables.batches.get(batch_id)
        if row is None or (owner is not None and row.owner != owner):
            return None
        return self._batch(row)

    async def list_batches(
        self, owner: str, *, limit: int, after: str | None, before: str | None = None
    ) -> Page[Batch]:
        """A key's batches, newest first; ``after`` pages to older ones, ``before`` to newer
        ones (``has_more`` then tells whether there are newer still)."""
        await turn()
        newer = before is not None and after is None
        rows = sorted(
            (r for r in self.tables.batches.values() if r.owner == owner),
            key=lambda r: r.sort_key,
            reverse=not newer,
        )
        rows = _after(rows, after) if after else _after(rows, before)
        page = list(reversed(rows[:limit])) if newer else rows[:limit]
        return Page(items=[self._batch(r) for r in page], has_more=len(rows) > limit)

    async def find_batches(
        self, filters: BatchFilter, *, limit: int, after: str | None
    ) -> Page[Batch]:
        """Batches of every key matching ``filters``, newest first; ``after`` (the last id of
        the previous page) pages to older ones."""
        await turn()
        rows = sorted(self.tables.batches.values(), key=lambda r: r.sort_key, reverse=True)
        rows = _after(rows, after)
        models = (
            {r.batch_id for r in self.tables.lines.values() if r.model == filters.model}
            if filters.model is not None
            else None
        )
        rows = [
            r
            for r in rows
            if (filters.owner is None or r.owner == filters.owner)
            and (filters.status is None or r.status == filters.status)
            and (models is None or r.id in models)
        ]
        return Page(items=[self._batch(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def delete_batch(self, batch_id: str) -> list[str]:
        """Delete a batch with its lines and result files; returns the blobs to delete."""
        await turn()
        row = self.tables.batches.pop(batch_id, None)
        if row is None:
            return []
        blob_keys = []
        for file_id in (row.output_file_id, row.error_file_id):
            file = self.tables.files.pop(file_id, None) if file_id else None
            if file is not None:
                blob_keys.append(file.blob_key)
        for line in self.tables.lines_of(batch_id):
            del self.tables.lines[line.id]
        return blob_keys

    def _set_status(
        self,
        batch_id: str,
        expected: Iterable[BatchStatus],
        status: BatchStatus,
        values: dict[str, Any],
    ) -> bool:
        row = self.tables.batches.get(batch_id)
        if row is None or row.status not in {s.value for s in expected}:
            return False
        assign(row, {**values, "status": status.value})
        return True

    async def set_batch_status(
        self,
        batch_id: str,
        *,
        expected: Iterable[BatchStatus],
        status: BatchStatus,
        **values: Any,
    ) -> bool:
        """Move a batch to ``status`` if it is still in one of ``expected`` (compare-and-set)."""
        await turn()
        return self._set_status(batch_id, expected, status, values)

    async def cancel_batch(self, batch_id: str, *, expected: BatchStatus, now: int) -> bool:
        """Start cancelling: lines that have not started are cancelled at once."""
        await turn()
        values = {"cancelling_at": now, "finish_as": BatchStatus.CANCELLED.value}
        if not self._set_status(batch_id, [expected], BatchStatus.CANCELLING, values):
            return False
        self._settle_pending(batch_id, ItemState.CANCELLED, float(now))
        return True

    async def expire_batch(self, batch_id: str, now: int) -> bool:
        """The completion window ended: lines that have not started expire."""
        await turn()
        values = {"finalizing_at": now, "finish_as": BatchStatus.EXPIRED.value}
        if not self._set_status(
            batch_id, [BatchStatus.IN_PROGRESS], BatchStatus.FINALIZING, values
        ):
            return False
        self._settle_pending(batch_id, ItemState.EXPIRED, float(now))
        return True

    async def claim_batch(self, batch_id: str, worker: str, now: float, lease: float) -> bool:
        """Take a batch for validation or finalization, unless another worker holds it."""
        await turn()
        row = self.tables.batches.get(batch_id)
        if row is None:
            return False
        lapsed = row.lease_expires_at is not None and row.lease_expires_at < now
        if row.lease_owner not in (None, worker) and not lapsed:
            return False
        row.lease_owner, row.lease_expires_at = worker, now + lease
        return True

    async def batches_needing_work(self, now: int) -> list[tuple[str, BatchStatus]]:
        """Batches a worker should validate, expire or finalize."""
        await turn()
        needing: list[tuple[str, BatchStatus]] = []
        for row in sorted(self.tables.batches.values(), key=lambda r: r.sort_key):
            states = {line.state for line in self.tables.lines_of(row.id)}
            status = BatchStatus(row.status)
            if (
                status is BatchStatus.VALIDATING
                or (
                    status is BatchStatus.IN_PROGRESS
                    and (row.expires_at <= now or not states & set(_ACTIVE))
                )
                or (
                    status in (BatchStatus.CANCELLING, BatchStatus.FINALIZING)
                    and ItemState.LEASED not in states
                )
            ):
                needing.append((row.id, status))
        return needing

    async def end_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        lines: ItemState | None,
        values: dict[str, Any],
    ) -> bool:
        """End a batch at once, without result files (a worker gave up on it): its
        unfinished lines end as ``lines`` (or are removed, when None), its counts are
        taken from its lines, and ``values`` (timestamps, errors) are written with it."""
        await turn()
        row = self.tables.batches.get(batch_id)
        if row is None or row.status != expected:
            return False  # compare-and-set: a batch that moved on keeps its lines
        check_columns(row, values)
        for line in self.tables.lines_of(batch_id):
            if lines is None:  # as the SQL store: every line of the batch goes
                del self.tables.lines[line.id]
            elif line.state in _ACTIVE:
                assign(line, {"state": lines.value, "lease_owner": None, "lease_expires_at": None})
        rows = self.tables.lines_of(batch_id)
        counts = counts_from_states(len(rows), by_state(rows))
        final = {
            **values,
            **_final_counts(counts),
            **self._kept_figures(batch_id),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        return self._set_status(batch_id, [expected], status, final)

    async def finish_as(self, batch_id: str) -> BatchStatus | None:
        await turn()
        row = self.tables.batches.get(batch_id)
        return BatchStatus(row.finish_as) if row is not None and row.finish_as else None

    async def finish_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        now: int,
        outputs: Sequence[tuple[StoredFile, str]],
        counts: RequestCounts,
        usage: Usage,
        values: dict[str, Any],
    ) -> bool:
        """Record a batch's result files, final counts and terminal status in one go."""
        await turn()
        row = self.tables.batches.get(batch_id)
        if row is None or row.status != expected:
            return False
        ids = [file.id for file, _ in outputs]
        if len(set(ids)) < len(ids):  # refused before anything changes, as a rollback would
            raise UniqueViolation(f"files.id: {ids!r} repeats one")
        self._set_status(
            batch_id,
            [expected],
            status,
            {
                **values,
                **_final_counts(counts),
                "input_tokens": usage.input_tokens,
                "cached_tokens": usage.cached_tokens,
                "output_tokens": usage.output_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                **self._kept_figures(batch_id),
                "lease_owner": None,
                "lease_expires_at": None,
            },
        )
        for file, blob_key in outputs:  # result files written again replace the old ones
            self.tables.files.pop(file.id, None)
            self.tables.add_file(file, blob_key)
        return True


def _final_counts(counts: RequestCounts) -> dict[str, int]:
    """The columns an ended batch keeps its counts in."""
    return {
        "total": counts.total,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "cancelled": counts.cancelled,
        "expired": counts.expired,
    }
