"""Writing line results durably as soon as their calls return.

A runner hands its outcome to the recorder and waits until it is committed before it takes
another line, so at any moment at most one call per runner has been made without its result
on disk: a crash repeats at most ``max_concurrency`` calls per provider. Results that
arrive while a write is under way go into the next one (group commit), so a busy worker
still writes many results per transaction.

A write that fails is tried again line by line: one line whose result the database refuses
(a poison row) is set aside after ``max_record_attempts`` — the line fails with
``result_not_recorded`` — and never holds back the others. When the database itself is
unreachable nothing is set aside: the recorder waits for it (capped backoff) for at most
``_MAX_OUTAGE_ROUNDS`` rounds, then lets the results go; their leases run out and the lines
run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from batchway.core import clock
from batchway.core.models import LineRecord
from batchway.core.ports import LineStore

__all__ = ["ResultRecorder"]

log = logging.getLogger("batchway.worker")

_MAX_OUTAGE_ROUNDS = 30  # rounds of waiting for an unreachable database (~2.5 min)
_OUTAGE_BACKOFF_MAX = 5.0


@dataclass(slots=True)
class _Entry:
    record: LineRecord
    recorded: asyncio.Future[None]


OnRecorded = Callable[[Sequence[LineRecord]], Awaitable[None]]


class ResultRecorder:
    """Group-commits the outcomes of one worker's lines; see the module docstring."""

    def __init__(
        self,
        *,
        worker_id: str,
        store: LineStore,
        max_items: int,
        interval: float,
        max_attempts: int,
        on_recorded: OnRecorded,
    ) -> None:
        self._worker = worker_id
        self._store = store
        self._max_items = max_items
        self._interval = interval
        self._max_attempts = max_attempts
        self._on_recorded = on_recorded
        self._queue: list[_Entry] = []
        self._writing = 0
        self._arrived = asyncio.Event()
        self._outage_rounds = 0

    @property
    def pending(self) -> int:
        """Outcomes not yet committed (queued or being written)."""
        return len(self._queue) + self._writing

    def submit(self, record: LineRecord) -> asyncio.Future[None]:
        """Queue a record; the future resolves once it is committed (or set aside)."""
        entry = _Entry(record, asyncio.get_running_loop().create_future())
        self._queue.append(entry)
        self._arrived.set()
        return entry.recorded

    async def run(self) -> None:
        """Write outcomes as they arrive, until cancelled."""
        while True:
            await self._arrived.wait()
            if self._interval and len(self._queue) < self._max_items:
                await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write what is queued now, a transaction of at most ``max_items`` at a time."""
        self._arrived.clear()
        while self._queue:
            entries = self._queue[: self._max_items]
            del self._queue[: self._max_items]
            self._writing = len(entries)
            try:
                written = await self._write(entries)
            except asyncio.CancelledError:
                # stopped mid-write: keep them for the flush that hands the leases back
                # (a record already committed is skipped then: its line is no longer leased)
                self._queue[:0] = entries
                raise
            finally:
                self._writing = 0
            if not written:
                if self._queue:
                    self._arrived.set()
                return

    async def _write(self, entries: list[_Entry]) -> bool:
        """Commit ``entries``; False if the database is unreachable (they were queued again)."""
        try:
            written = await self._record([entry.record for entry in entries])
        except Exception:
            log.warning(
                "cannot record results; trying them one at a time",
                exc_info=True,
                extra={"action": "flush_failed", "lines": len(entries)},
            )
            return await self._write_one_by_one(entries)
        self._outage_rounds = 0
        _resolve(entries)
        await self._on_recorded(written)
        return True

    async def _write_one_by_one(self, entries: list[_Entry]) -> bool:
        for index, entry in enumerate(entries):
            error: BaseException | None = None
            for attempt in range(self._max_attempts):
                try:
                    written = await self._record([entry.record])
                except Exception as exc:
                    if not await self._store.healthy():
                        return await self._database_down(entries[index:])
                    error = exc
                    await asyncio.sleep(0.01 * 2**attempt)
                else:
                    _resolve([entry])
                    await self._on_recorded(written)
                    break
            else:
                assert error is not None
                await self._set_aside(entry, error)
        self._outage_rounds = 0
        return True

    async def _database_down(self, entries: list[_Entry]) -> bool:
        self._outage_rounds += 1
        if self._outage_rounds > _MAX_OUTAGE_ROUNDS:
            log.error(
                "the database stayed unreachable; results let go, their lines run again",
                extra={"action": "results_dropped", "lines": len(entries)},
            )
            self._outage_rounds = 0
            _resolve(entries)
            return False
        self._queue[:0] = entries
        delay = min(_OUTAGE_BACKOFF_MAX, 0.05 * 2**self._outage_rounds)
        log.warning(
            "the database is unreachable; results wait",
            extra={"action": "database_down", "lines": len(entries), "retry_in": delay},
        )
        await asyncio.sleep(delay)
        return False

    async def _set_aside(self, entry: _Entry, error: BaseException) -> None:
        """A result the database will not take: the line fails with a clear reason."""
        item_id = entry.record.outcome.item_id
        log.error(
            "a line's result cannot be recorded; the line fails",
            exc_info=error,
            extra={"action": "result_set_aside", "item_id": item_id},
        )
        reason = f"The line's result could not be recorded ({type(error).__name__})."
        try:
            await self._store.fail_unrecorded(self._worker, item_id, reason, clock.now_float())
        except Exception:  # its lease runs out and the line runs again (attempts are bounded)
            log.exception(
                "cannot fail a line either", extra={"action": "result_lost", "item_id": item_id}
            )
        _resolve([entry])

    async def _record(self, records: list[LineRecord]) -> list[LineRecord]:
        return await self._store.record_outcomes(self._worker, records, clock.now_float())


def _resolve(entries: Sequence[_Entry]) -> None:
    for entry in entries:
        if not entry.recorded.done():
            entry.recorded.set_result(None)
