"""Accounting: the price of every call, its request-log row, spend against budgets, metrics.

Batch lines are priced and logged by the store in the transaction that records them (so a
line is billed exactly once, even across a crash). Synchronous requests are logged here:
queued in memory and written in bulk by a background task, off the request path. With
``logs.sync_sample_rate`` below 1 only that share of successful synchronous calls keeps a
log row; the others are still written to their hours' usage (which budgets read), and are
counted in spend and metrics like the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from batchway.config import LogConfig
from batchway.core import clock
from batchway.core.budgets import Budgets
from batchway.core.call_pricing import CallPricing
from batchway.core.models import RequestLog, Usage

if TYPE_CHECKING:
    from batchway.core.ports import RequestLogs
    from batchway.metrics import Metrics

__all__ = ["Accounting"]

log = logging.getLogger("batchway.accounting")

_RETENTION_EVERY_SECONDS = 3600.0
_MAX_QUEUED = 100_000  # logs kept while the database is unreachable, then the oldest go
_MAX_FAILED_ROUNDS = 40  # rounds (~10 s) a write may fail whole before its rows are dropped


class Accounting:
    """Prices calls, keeps spend per key, and writes request logs."""

    def __init__(
        self,
        *,
        pricing: CallPricing,
        budgets: Budgets,
        metrics: Metrics,
        sink: RequestLogs,
        settings: LogConfig,
    ) -> None:
        self.budgets = budgets
        self.record_bodies = settings.record_bodies
        self._pricing = pricing
        self._metrics = metrics
        self._sink = sink
        self._settings = settings
        self._queue: list[RequestLog] = []
        self._unlogged: list[RequestLog] = []  # sampled out: counted in usage, no row
        self._sample_rate = settings.sync_sample_rate
        self._succeeded = 0  # successful synchronous calls seen, for the sampling
        self._failed_rounds = 0
        self._queued = asyncio.Event()

    def price(
        self, model: str, provider: str, usage: Usage, native: bool
    ) -> tuple[float, str | None]:
        """The cost of a batch line in USD (``native``: it ran through the provider's batch
        API), and its upstream model."""
        return self._pricing.line_cost(model, provider, usage, native=native)

    def price_call(self, model: str, provider: str, usage: Usage) -> float:
        """The cost of a synchronous call in USD, at the normal price."""
        return self._pricing.cost(model, provider, usage, batch=False)[0]

    def logged(self, logs: Sequence[RequestLog]) -> None:
        """Logs that were written (batch lines) or queued (interactive): count them. (The
        worker counts a batch line's spend against its budget before it is written.)"""
        for entry in logs:
            self._metrics.request(
                entry.kind,
                entry.model,
                entry.provider,
                entry.status,
                entry.latency_ms / 1000 if entry.latency_ms is not None else None,
                entry.usage.input_tokens,
                entry.usage.output_tokens,
                entry.cost_usd,
            )

    def keeps_row(self, entry: RequestLog) -> bool:
        """Whether a synchronous call gets a log row: every failure, and of the successful
        calls the sampled share, spread evenly (the n-th gets one when ``floor(n * rate)``
        grows)."""
        rate = self._sample_rate
        if rate >= 1.0 or entry.status != "succeeded":
            return True
        self._succeeded += 1
        return int(self._succeeded * rate) > int((self._succeeded - 1) * rate)

    def interactive(self, entry: RequestLog) -> None:
        """Log a synchronous request; it is written to the database shortly after."""
        queue = self._queue if self.keeps_row(entry) else self._unlogged
        if len(queue) >= _MAX_QUEUED:
            del queue[: len(queue) // 10]
            log.warning("request logs are piling up", extra={"action": "logs_dropped"})
        queue.append(entry)
        self._queued.set()
        self.budgets.add(entry.key_id, entry.cost_usd)
        self.logged((entry,))

    async def flush(self) -> None:
        """Write what is queued. If the write fails, each row is tried alone: a row the
        database refuses is dropped (logged), the others are written; if every row fails
        (the database is down) they stay queued for the next round."""
        if not self._queue and not self._unlogged:
            return
        batch, self._queue = self._queue, []
        counted, self._unlogged = self._unlogged, []
        try:
            await self._sink.insert(batch, usage_only=counted)
        except Exception:
            log.exception("cannot write request logs", extra={"action": "logs_failed"})
        else:
            self._failed_rounds = 0
            return
        kept: list[RequestLog] = []
        for entry in batch:
            try:
                await self._sink.insert([entry])
            except Exception:
                kept.append(entry)
        counted_in = False  # the unlogged calls' usage went in
        if counted:
            with contextlib.suppress(Exception):
                await self._sink.insert([], usage_only=counted)
                counted_in = True
        if len(kept) == len(batch) and not counted_in:  # nothing went in
            self._failed_rounds += 1
            if self._failed_rounds < _MAX_FAILED_ROUNDS:
                self._queue = batch + self._queue
                self._unlogged = counted + self._unlogged
                raise RuntimeError("request logs could not be written; they stay queued")
            log.error(
                "request logs could not be written for a long time; dropped",
                extra={"action": "logs_dropped", "rows": len(batch) + len(counted)},
            )
            self._failed_rounds = 0
            return
        self._failed_rounds = 0
        if not counted_in:
            self._unlogged = counted + self._unlogged
        if kept:
            log.error(
                "request logs the database refused were dropped",
                extra={"action": "logs_dropped", "rows": len(kept)},
            )

    async def run(self) -> None:
        """Write queued logs every few hundred milliseconds and apply the retention."""
        await self.apply_retention()
        next_retention = clock.now_float() + _RETENTION_EVERY_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RETENTION_EVERY_SECONDS):
                    await self._queued.wait()
            self._queued.clear()
            await asyncio.sleep(self._settings.flush_interval_seconds)
            with contextlib.suppress(Exception):  # logged in flush; retried next round
                await self.flush()
            if clock.now_float() >= next_retention:
                next_retention = clock.now_float() + _RETENTION_EVERY_SECONDS
                await self.apply_retention()

    async def apply_retention(self) -> None:
        days = self._settings.retention_days
        if days is None:
            return
        cutoff = int((clock.now_float() - days * 86400) * 1000)
        try:
            removed = await self._sink.delete_older_than(cutoff)
        except Exception:
            log.exception("cannot apply log retention", extra={"action": "retention_failed"})
            return
        if removed:
            log.info("removed old request logs", extra={"action": "retention", "rows": removed})
