"""The in-memory "database" the fakes share: one plain object per table row, and the
uniqueness rules the SQL schema enforces (``store/tables.py``).

Rows are mutable dataclasses named and shaped after the SQL columns, so that the store's
``**values`` (column names, as ``set_batch_status`` takes them) apply to them unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from batchway.core.analytics import HOUR_MS, UsageSlot, UsageTotals, hourly_totals
from batchway.core.models import ApiKey, RequestLog, StoredFile, Usage
from batchway.core.states import ItemState

__all__ = [
    "BatchRow",
    "FileRow",
    "LineRow",
    "MemoryTables",
    "UniqueViolation",
    "UpstreamRow",
    "assign",
    "check_columns",
    "json_value",
    "turn",
]


class UniqueViolation(Exception):
    """A row would repeat a value the schema keeps unique (the SQL store raises
    SQLAlchemy's ``IntegrityError`` there); nothing of the failed write is kept."""


async def turn() -> None:
    """Let other tasks run, as every round trip to a real database does: concurrent
    callers interleave between calls, never inside one (each call is one transaction)."""
    await asyncio.sleep(0)


def json_value(value: Any) -> Any:
    """``value`` as a JSON column gives it back: a fresh copy, tuples turned into lists."""
    return None if value is None else json.loads(json.dumps(value))


def check_columns(row: Any, values: dict[str, Any]) -> None:
    """Raise ``TypeError`` unless every name in ``values`` is a column of ``row``."""
    unknown = sorted(set(values) - {f.name for f in fields(row)})
    if unknown:
        raise TypeError(f"{type(row).__name__} has no column {', '.join(unknown)}")


def assign(row: Any, values: dict[str, Any]) -> None:
    """Set columns of ``row`` by name; an unknown name changes nothing and raises."""
    check_columns(row, values)
    for name, value in values.items():
        setattr(row, name, json_value(value) if name in ("metadata", "errors") else value)


@dataclass(slots=True, kw_only=True)
class FileRow:
    """A row of ``files``."""

    file: StoredFile
    blob_key: str
    sort_key: int


@dataclass(slots=True, kw_only=True)
class BatchRow:
    """A row of ``batches``: the batch, its lease, and its figures (kept up to date as its
    lines change)."""

    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    sort_key: int
    model: str | None = None
    metadata: Any = None
    output_expires_after: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: Any = None
    finish_as: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    shape: str | None = None
    cost_usd: float = 0.0  # with the models and providers, kept as its lines change
    models: list[str] | None = None
    providers: list[str] | None = None


@dataclass(slots=True, kw_only=True)
class LineRow:
    """A row of ``batch_items``: one line of a batch, its lease and its result."""

    id: int
    batch_id: str
    line: int
    custom_id: str
    model: str
    provider: str
    body: bytes
    state: str = ItemState.PENDING.value
    attempts: int = 0
    not_before: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    status_code: int | None = None
    response: bytes | None = None
    request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    finished_at: float | None = None
    execute_only: bool = True
    upstream_batch_id: str | None = None
    cost_usd: float = 0.0

    def held_by(self, worker: str) -> bool:
        return self.state == ItemState.LEASED and self.lease_owner == worker

    def release(self, **values: Any) -> None:
        """Back to pending, its lease gone (and whatever else ``values`` says)."""
        pending = {"state": ItemState.PENDING.value, "lease_owner": None, "lease_expires_at": None}
        assign(self, {**pending, **values})


@dataclass(slots=True, kw_only=True)
class UpstreamRow:
    """A row of ``upstream_batches``."""

    id: str
    provider: str
    endpoint: str
    model: str
    state: str
    lines: int
    created_at: float
    next_poll_at: float
    poll_interval: float
    failures: int = 0
    upstream_file_id: str | None = None
    upstream_batch_id: str | None = None
    upstream_status: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


class MemoryTables:
    """Every table, with the ids the database would hand out (never reused)."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.files: dict[str, FileRow] = {}
        self.batches: dict[str, BatchRow] = {}
        self.lines: dict[int, LineRow] = {}
        self.upstream: dict[str, UpstreamRow] = {}
        self.logs: dict[int, RequestLog] = {}
        # the logs added up per hour, key, model, provider and kind (``usage_hourly``)
        self.usage: dict[UsageSlot, UsageTotals] = {}
        self._line_ids = itertools.count(1)
        self._log_ids = itertools.count(1)
        # listing order: creation (the SQL store's sort_key, without its clock ties)
        self._sort_keys = itertools.count(1)

    def sort_key(self) -> int:
        return next(self._sort_keys)

    def lines_of(self, batch_id: str) -> list[LineRow]:
        return [row for row in self.lines.values() if row.batch_id == batch_id]

    def add_file(self, file: StoredFile, blob_key: str) -> None:
        if file.id in self.files:
            raise UniqueViolation(f"files.id {file.id!r}")
        self.files[file.id] = FileRow(file=file, blob_key=blob_key, sort_key=self.sort_key())

    def add_lines(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert lines (all of them, or none when one repeats a batch's line number)."""
        rows = list(rows)
        taken = {(r.batch_id, r.line) for r in self.lines.values()}
        for values in rows:
            key = (values["batch_id"], values["line"])
            if key in taken:
                raise UniqueViolation(f"batch_items (batch_id, line) {key!r}")
            taken.add(key)
        for values in rows:
            row = LineRow(id=next(self._line_ids), **values)
            self.lines[row.id] = row

    def add_logs(self, logs: Sequence[RequestLog], usage_only: Sequence[RequestLog] = ()) -> None:
        """Insert request logs, numbered in order (all of them, or none when one names a
        batch line that is already logged); ``usage_only`` count in their hours' usage
        without a row."""
        seen = {log.item_id for log in self.logs.values() if log.item_id is not None}
        for log in logs:
            if log.item_id is not None:
                if log.item_id in seen:
                    raise UniqueViolation(f"request_logs.item_id {log.item_id}")
                seen.add(log.item_id)
        for log in logs:
            log_id = next(self._log_ids)
            # the table keeps no reasoning tokens
            usage = Usage(
                input_tokens=log.usage.input_tokens,
                cached_tokens=log.usage.cached_tokens,
                output_tokens=log.usage.output_tokens,
            )
            self.logs[log_id] = replace(log, id=log_id, usage=usage)
        self._add_usage(hourly_totals([*logs, *usage_only]), 1)

    def delete_logs(self, log_ids: Iterable[int], cutoff_ms: int | None = None) -> None:
        """Delete logs, and take them from their hours' usage; with ``cutoff_ms`` (retention)
        the hours that ended by then go whole."""
        gone = [self.logs.pop(log_id) for log_id in log_ids]
        self._add_usage(hourly_totals(gone), -1)
        if cutoff_ms is not None:
            for slot in [s for s in self.usage if s[0] <= cutoff_ms - HOUR_MS]:
                del self.usage[slot]

    def _add_usage(self, totals: dict[UsageSlot, UsageTotals], sign: int) -> None:
        for slot, t in totals.items():
            if sign < 0:
                t = UsageTotals(
                    requests=-t.requests,
                    errors=-t.errors,
                    input_tokens=-t.input_tokens,
                    cached_tokens=-t.cached_tokens,
                    output_tokens=-t.output_tokens,
                    cost_usd=-t.cost_usd,
                )
            kept = self.usage.get(slot, UsageTotals()) + t
            if kept.requests > 0:
                self.usage[slot] = kept
            else:
                self.usage.pop(slot, None)
