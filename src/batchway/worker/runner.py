"""The worker loop: lease lines, run them under each provider's concurrency, record results.

Per provider there is a *lane*: ``max_concurrency`` runners take lines from a local queue
that a feeder keeps topped up by leasing lines in chunks (one SQL statement per chunk,
not per line). Results are collected and written in bulk by a flusher every few
milliseconds. A heartbeat renews this worker's leases; any worker hands back the lines
of workers whose leases ran out. A housekeeping loop validates new batches, expires old
ones and finalizes finished ones.

``drain()`` runs the same machinery until no batch has anything left to do, then
returns: tests and one-shot jobs rely on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from batchway.config import Config
from batchway.core import clock
from batchway.core.models import BatchItem, ItemOutcome, Usage
from batchway.core.quotas import Quotas
from batchway.core.retry import RetryPolicy
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState
from batchway.core.tokens import estimate_tokens
from batchway.providers.base import Provider
from batchway.providers.registry import ProviderRegistry
from batchway.store.blobs import BlobStore
from batchway.store.sql import SqlStore
from batchway.store.sql_items import LineAccounting
from batchway.worker.executor import Executor
from batchway.worker.finalizer import finalize_batch
from batchway.worker.intake import validate_batch
from batchway.worker.native import NativeBatches

__all__ = ["LineBudgets", "Worker"]

_MIN_PREFETCH = 256  # lines one claim may take: fewer claims per line at low concurrency

log = logging.getLogger("batchway.worker")


class LineBudgets(Protocol):
    """Whether the key that owns a batch has used up its budget."""

    async def exhausted(self, key_id: str) -> bool: ...
    def spend(self, key_id: str, model: str, provider: str, usage: Usage) -> None: ...


def _budget_exceeded(item: BatchItem) -> ItemOutcome:
    return ItemOutcome(
        item_id=item.id,
        state=ItemState.FAILED,
        error_code="budget_exceeded",
        error_message="The key's budget is used up: this line was not sent.",
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds, then clear it."""
    # not asyncio.wait_for: before Python 3.12 it can swallow a cancellation that arrives
    # as the event fires, and a loop that misses its cancellation never stops
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    event.clear()


class _Lane:
    """The lines of one provider: a local queue, its feeder and its runners.

    The feeder keeps between half and all of ``prefetch`` lines waiting in the queue, so
    runners never wait for a claim and a claim takes many lines in one statement.
    """

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.size = provider.max_concurrency
        self.prefetch = max(2 * self.size, _MIN_PREFETCH)
        self.queue: asyncio.Queue[BatchItem] = asyncio.Queue()
        self.running = 0
        self.wake = asyncio.Event()

    @property
    def held(self) -> int:
        return self.queue.qsize() + self.running

    @property
    def hungry(self) -> bool:
        return self.queue.qsize() <= self.prefetch // 2

    def waiting_batches(self) -> set[str]:
        return {item.batch_id for item in self.queue._queue}  # type: ignore[attr-defined]


class Worker:
    """Runs batches. One per process is plenty; several processes may share a database."""

    def __init__(
        self,
        *,
        config: Config,
        store: SqlStore,
        blobs: BlobStore,
        providers: ProviderRegistry,
        router: Router,
        accounting: LineAccounting | None = None,
        quotas: Quotas | None = None,
        budgets: LineBudgets | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._config = config
        self._settings = config.worker
        self._store = store
        self._blobs = blobs
        self._router = router
        self._accounting = accounting
        self._quotas = quotas
        self._budgets = budgets
        self._executor = Executor(
            providers,
            RetryPolicy(
                max_attempts=self._settings.max_attempts,
                base_seconds=self._settings.backoff_base_seconds,
                max_seconds=self._settings.backoff_max_seconds,
            ),
        )
        self._lanes = {p.name: _Lane(p) for p in providers}
        self._native = NativeBatches(
            worker_id=self.id,
            store=store,
            providers=providers,
            settings=self._settings,
            on_results=self._results_arrived,
            accounting=accounting,
        )
        self._native_wake = asyncio.Event()
        self._outcomes: list[ItemOutcome] = []
        self._have_outcomes = asyncio.Event()
        self._housekeeping = asyncio.Event()
        self._progress = asyncio.Event()
        # batches cancelled or expired while some of their lines wait in a local queue
        self._stopped: dict[str, ItemState] = {}
        # batches whose last step raised: how often, and when to try again
        self._step_failures: dict[str, tuple[int, float]] = {}

    def _results_arrived(self) -> None:
        self._housekeeping.set()

    def wake(self) -> None:
        """New work may be waiting (a batch was created or cancelled in this process)."""
        self._housekeeping.set()
        self._native_wake.set()
        for lane in self._lanes.values():
            lane.wake.set()

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled."""
        await self._run_until(None)

    async def drain(self) -> None:
        """Work until no batch has anything left to do."""
        await self._run_until(self._idle)

    async def _run_until(self, done: Callable[[], Awaitable[bool]] | None) -> None:
        tasks = [
            asyncio.create_task(self._flusher(), name="flusher"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._housekeeper(), name="housekeeper"),
        ]
        if self._native.active:
            tasks.append(asyncio.create_task(self._native_loop(), name="native"))
        for lane in self._lanes.values():
            tasks.append(
                asyncio.create_task(self._feeder(lane), name=f"feeder-{lane.provider.name}")
            )
            tasks += [
                asyncio.create_task(self._runner(lane), name=f"runner-{lane.provider.name}")
                for _ in range(lane.size)
            ]
        try:
            if done is None:
                await asyncio.gather(*tasks)
            else:
                while True:
                    for task in tasks:  # a crashed loop must not leave drain waiting forever
                        if task.done() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    if await done():
                        break
                    await _wait(self._progress, self._settings.idle_poll_seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._flush()
            try:
                released = await self._store.release_worker(self.id)
            except Exception:  # the leases run out by themselves then
                log.exception("cannot hand back leases", extra={"action": "release_failed"})
            else:
                if released:
                    log.info(
                        "handed back unfinished lines",
                        extra={"action": "leases_released", "lines": released},
                    )

    async def _idle(self) -> bool:
        nothing_held = all(lane.held == 0 for lane in self._lanes.values())
        return nothing_held and not self._outcomes and not await self._store.has_work()

    # -- lines --------------------------------------------------------------------------

    async def _feeder(self, lane: _Lane) -> None:
        lease = self._settings.lease_seconds
        while True:
            await self._note_stopped_batches(lane)
            if not lane.hungry:
                await _wait(lane.wake, self._settings.idle_poll_seconds)
                continue
            items = await self._store.claim_items(
                self.id,
                lane.provider.name,
                lane.prefetch - lane.queue.qsize(),
                clock.now_float(),
                lease,
            )
            for item in items:
                lane.queue.put_nowait(item)
            if not items:
                await _wait(lane.wake, await self._idle_wait())

    async def _note_stopped_batches(self, lane: _Lane) -> None:
        """Learn which waiting lines belong to batches that were cancelled or expired since
        they were claimed: those lines end without being sent."""
        waiting = lane.waiting_batches() - self._stopped.keys()
        if waiting:
            self._stopped.update(await self._store.stopped_batches(waiting))

    async def _idle_wait(self) -> float:
        """How long a feeder with nothing to run may sleep: until the next retry is due."""
        wait = self._settings.idle_poll_seconds
        now = clock.now_float()
        due = await self._store.next_retry_at(now)
        if due is not None:
            wait = min(wait, due - now)
        return max(wait, 0.005)

    async def _runner(self, lane: _Lane) -> None:
        while True:
            item = await lane.queue.get()
            stopped = self._stopped.get(item.batch_id)
            if stopped is not None:
                outcome = ItemOutcome(item_id=item.id, state=stopped)
            elif self._budgets is not None and await self._budgets.exhausted(item.owner):
                outcome = _budget_exceeded(item)
            else:
                lane.running += 1
                try:
                    outcome = await self._run_within_quota(item)
                finally:
                    lane.running -= 1
                if self._budgets is not None and outcome.state is ItemState.SUCCEEDED:
                    self._budgets.spend(item.owner, item.model, item.provider, outcome.usage)
            self._outcomes.append(outcome)
            self._have_outcomes.set()
            if lane.hungry:
                lane.wake.set()

    async def _run_within_quota(self, item: BatchItem) -> ItemOutcome:
        """Run a line once its provider's rate limits have room for it (batch share)."""
        quotas = self._quotas
        if quotas is None or not quotas.provider_limited(item.provider):
            return await self._executor.run(item)
        tokens = 0
        if quotas.provider_counts_tokens(item.provider):
            tokens = estimate_tokens(item.endpoint, _json_object(item.body))
        ticket = await quotas.hold_provider(item.provider, tokens)
        outcome = await self._executor.run(item)
        await quotas.settle(ticket, outcome.usage.total_tokens)
        return outcome

    async def _flusher(self) -> None:
        while True:
            await self._have_outcomes.wait()
            if len(self._outcomes) < self._settings.flush_max_items:
                await asyncio.sleep(self._settings.flush_interval_seconds)
            await self._flush()

    async def _flush(self) -> None:
        self._have_outcomes.clear()
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        try:
            touched = await self._store.record_outcomes(
                self.id, outcomes, clock.now_float(), self._accounting
            )
        except Exception:
            # keep them: the next flush tries again (the leases are still ours)
            log.exception("cannot record results", extra={"action": "flush_failed"})
            self._outcomes = outcomes + self._outcomes
            await asyncio.sleep(self._settings.idle_poll_seconds)
            self._have_outcomes.set()
            return
        if any(o.state is ItemState.PENDING for o in outcomes):
            for lane in self._lanes.values():
                lane.wake.set()
        for batch_id in touched:
            if not await self._store.has_active_items(batch_id):
                self._housekeeping.set()
                break
        self._progress.set()

    async def _native_loop(self) -> None:
        while True:
            try:
                moved = await self._native.step()
            except Exception:  # a database hiccup must not stop native batches for good
                log.exception("native batch step failed", extra={"action": "native_error"})
                moved = False
            self._progress.set()
            if not moved:
                await _wait(self._native_wake, await self._native.next_due_in())

    async def _heartbeat(self) -> None:
        lease = self._settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            now = clock.now_float()
            await self._store.extend_leases(self.id, now + lease)
            released = await self._store.release_expired_leases(now)
            if released:
                log.warning(
                    "took back lines of a worker that stopped",
                    extra={"action": "leases_released", "lines": released},
                )
                self.wake()

    # -- batches ------------------------------------------------------------------------

    async def _housekeeper(self) -> None:
        # lines of a worker that died before this one started come back at once
        await self._store.release_expired_leases(clock.now_float())
        while True:
            did_work = await self._housekeep()
            self._progress.set()
            if not did_work:
                await _wait(self._housekeeping, self._settings.idle_poll_seconds)

    async def _housekeep(self) -> bool:
        did_work = False
        now = clock.now()
        for batch_id, status in await self._store.batches_needing_work(now):
            failures, retry_at = self._step_failures.get(batch_id, (0, 0.0))
            if retry_at > clock.now_float():
                continue  # it failed just now: give it (or the database) a moment
            if not await self._store.claim_batch(
                batch_id, self.id, clock.now_float(), self._settings.lease_seconds
            ):
                continue
            did_work = True
            try:
                await self._advance(batch_id, status, now)
            except Exception:  # one broken batch must not stop the others
                log.exception(
                    "batch step failed", extra={"action": "batch_error", "batch_id": batch_id}
                )
                delay = min(self._settings.backoff_max_seconds, 2.0**failures)
                self._step_failures[batch_id] = (failures + 1, clock.now_float() + delay)
            else:
                self._step_failures.pop(batch_id, None)
        return did_work

    async def _advance(self, batch_id: str, status: BatchStatus, now: int) -> None:
        """Take one batch a step further: validate, expire or finalize it."""
        if status is BatchStatus.VALIDATING:
            await validate_batch(
                self._store,
                self._blobs,
                self._router,
                self._config.limits,
                batch_id,
                self._native.native_providers,
            )
            self.wake()
            return
        if status is BatchStatus.CANCELLING and not await self._store.has_items(batch_id):
            # cancelled before its file was read: read it now, its lines end cancelled
            await validate_batch(
                self._store,
                self._blobs,
                self._router,
                self._config.limits,
                batch_id,
                self._native.native_providers,
            )
        if status is BatchStatus.IN_PROGRESS:
            batch = await self._store.get_batch(None, batch_id)
            if batch is not None and batch.expires_at <= now:
                await self._store.expire_batch(batch_id, now)
                if await self._store.has_active_items(batch_id):
                    return  # in-flight lines finish first
        await finalize_batch(self._store, self._blobs, batch_id)
        self._stopped.pop(batch_id, None)
