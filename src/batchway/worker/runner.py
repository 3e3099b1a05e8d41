"""The worker loop: lease lines, run them under each provider's concurrency, record results.

Per provider there is a *lane*: ``max_concurrency`` runners take lines from a local queue
that a feeder keeps topped up by leasing lines in chunks (one SQL statement per chunk,
not per line). A runner hands each outcome to the `ResultRecorder` and waits until it is
committed before it takes the next line, so a crash repeats at most the calls in flight. A
heartbeat renews this worker's leases; any worker hands back the lines of workers whose
leases ran out. A housekeeping loop validates new batches, expires old ones and finalizes
finished ones; a batch whose step keeps failing is ended after ``max_step_failures``.

``drain()`` runs the same machinery until no batch has anything left to do, then
returns: tests and one-shot jobs rely on it. ``stop()`` ends ``run()`` gracefully: no new
lines are claimed, calls in flight finish and are recorded (for at most
``shutdown_grace_seconds``), and unstarted lines are handed back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from batchway.config import Config
from batchway.core import clock
from batchway.core.concurrency import SharedSlots, provider_limits, provider_pool
from batchway.core.engine import BatchEngine, RenderResult, Step
from batchway.core.models import BatchItem, ItemOutcome, LineRecord
from batchway.core.ports import (
    BlobStore,
    ConcurrencyPool,
    LineAccounting,
    LineBudgets,
    Provider,
    Store,
    UpstreamBatchStore,
    Wakeups,
)
from batchway.core.quotas import Quotas
from batchway.core.retry import RetryPolicy
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState
from batchway.core.tokens import estimate_tokens
from batchway.core.wakeups import LocalWakeups
from batchway.dialects.openai.results import output_line
from batchway.providers.registry import ProviderRegistry
from batchway.worker.executor import Executor
from batchway.worker.idle import IdleWait
from batchway.worker.native import NativeBatches
from batchway.worker.recorder import ResultRecorder

__all__ = ["Worker"]

_MIN_PREFETCH = 256  # lines one claim may take: fewer claims per line at low concurrency
_LOOP_BACKOFF_MAX = 5.0  # longest pause of a loop whose step raised
_STEPS_AT_ONCE = 4  # batches validated or finalized at the same time by one worker
_BUDGET_RETRY_SECONDS = 2.0  # a line whose key's budget could not be read waits this long
_CANCEL_ROUNDS = 20  # attempts to cancel the worker's loops (0.5 s each) before giving up

log = logging.getLogger("batchway.worker")


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


async def _cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them. A cancellation that lands inside a client
    library's call can be swallowed there (redis-py does), leaving the task running: such
    tasks are cancelled again, for a bounded time, rather than waited on forever."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(_CANCEL_ROUNDS):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.error(
            "tasks did not stop when cancelled",
            extra={"action": "worker_error", "tasks": sorted(t.get_name() for t in pending)},
        )
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a crashed loop was already raised or logged


async def _pause_after_error(name: str, failures: int) -> None:
    """A loop's step raised: log it and wait a little longer each time (capped)."""
    log.exception(f"{name} step failed", extra={"action": f"{name}_error"})
    await asyncio.sleep(min(_LOOP_BACKOFF_MAX, 0.05 * 2**failures))


class _Lane:
    """The lines of one provider: a local queue, its feeder and its runners.

    The feeder keeps between half and all of ``prefetch`` lines waiting in the queue, so
    runners never wait for a claim and a claim takes many lines in one statement.
    """

    def __init__(self, provider: Provider, idle: IdleWait) -> None:
        self.provider = provider
        self.idle = idle
        self.size = provider.max_concurrency
        self.prefetch = max(2 * self.size, _MIN_PREFETCH)
        self.queue: asyncio.Queue[BatchItem] = asyncio.Queue()
        self.running = 0
        self.wake = asyncio.Event()
        self.slots: SharedSlots | None = None  # the provider's concurrency, shared by processes

    @property
    def held(self) -> int:
        return self.queue.qsize() + self.running

    @property
    def hungry(self) -> bool:
        return self.queue.qsize() <= self.prefetch // 2

    def waiting(self) -> list[BatchItem]:
        return list(self.queue._queue)  # type: ignore[attr-defined]

    def waiting_batches(self) -> set[str]:
        return {item.batch_id for item in self.waiting()}


class Worker:
    """Runs batches. One per process is plenty; several processes may share a database."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        upstream: UpstreamBatchStore,
        blobs: BlobStore,
        providers: ProviderRegistry,
        router: Router,
        accounting: LineAccounting | None = None,
        quotas: Quotas | None = None,
        budgets: LineBudgets | None = None,
        wakeups: Wakeups | None = None,
        concurrency: ConcurrencyPool | None = None,
        worker_id: str | None = None,
        render: RenderResult = output_line,
    ) -> None:
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._settings = config.worker
        self._wakeups = wakeups or LocalWakeups()
        self._store = store
        self._quotas = quotas
        self._accounting = accounting
        self._budgets = budgets
        self._executor = Executor(
            providers,
            RetryPolicy(
                max_attempts=self._settings.max_attempts,
                base_seconds=self._settings.backoff_base_seconds,
                max_seconds=self._settings.backoff_max_seconds,
            ),
        )
        self._lanes = {p.name: _Lane(p, self._idle_wait()) for p in providers}
        self._housekeeping_idle = self._idle_wait()
        self._native_idle = self._idle_wait()
        if concurrency is not None:
            limits = provider_limits(config, providers)
            for name, lane in self._lanes.items():
                limit, cap = limits[name]
                lane.slots = SharedSlots(
                    concurrency,
                    provider_pool(name),
                    self.id,
                    limit=limit,
                    kind="batch",
                    cap=cap,
                    ttl_seconds=config.rate_limits.concurrency_lease_seconds,
                )
        self._native = NativeBatches(
            worker_id=self.id,
            store=store,
            upstream=upstream,
            providers=providers,
            settings=self._settings,
            on_results=self._results_arrived,
            accounting=accounting,
        )
        self._engine = BatchEngine(
            store=store,
            blobs=blobs,
            router=router,
            limits=config.limits,
            render=render,
            pricing=accounting,
            native_for=self._native.native_providers,
        )
        self._recorder = ResultRecorder(
            worker_id=self.id,
            store=store,
            max_items=self._settings.flush_max_items,
            interval=self._settings.flush_interval_seconds,
            max_attempts=self._settings.max_record_attempts,
            on_recorded=self._recorded,
        )
        self._native_wake = asyncio.Event()
        self._housekeeping = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: collections.Counter[str] = collections.Counter()  # batch → in flight
        # batches cancelled or expired while some of their lines wait in a local queue
        self._stopped: dict[str, ItemState] = {}
        # batches whose last step raised: how often, and when to try again
        self._step_failures: dict[str, tuple[int, float]] = {}
        self._steps: dict[str, asyncio.Task[None]] = {}  # batch steps under way

    def _results_arrived(self) -> None:
        self._housekeeping.set()

    def wake(self) -> None:
        """New work may be waiting (a batch was created or cancelled in this process)."""
        self._housekeeping.set()
        self._native_wake.set()
        for lane in self._lanes.values():
            lane.wake.set()

    def stop(self) -> None:
        """End ``run()`` gracefully (safe to call from a signal handler on the loop)."""
        self._stopping.set()
        self._progress.set()
        self.wake()

    # -- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until ``stop()`` (or until cancelled)."""
        await self._run_until(None)

    async def drain(self) -> None:
        """Work until no batch has anything left to do."""
        await self._run_until(self._idle)

    async def _run_until(self, done: Callable[[], Awaitable[bool]] | None) -> None:
        self._stopping.clear()
        tasks = [
            asyncio.create_task(self._recorder.run(), name="recorder"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._housekeeper(), name="housekeeper"),
            asyncio.create_task(self._wakeups.listen(self.wake), name="wakeups"),
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
            if lane.slots is not None:
                tasks.append(
                    asyncio.create_task(lane.slots.run(), name=f"slots-{lane.provider.name}")
                )
        try:
            while not self._stopping.is_set():
                for task in tasks:  # a crashed loop must not leave the worker waiting forever
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if done is not None and await done():
                    break
                await _wait(self._progress, self._settings.idle_poll_seconds)
            if self._stopping.is_set():
                await self._finish_in_flight()
        finally:
            tasks += self._steps.values()
            await _cancel_all(tasks)
            await self._hand_back()

    async def _finish_in_flight(self) -> None:
        """Let the calls under way end and their results be written (within the grace)."""
        grace = self._settings.shutdown_grace_seconds
        in_flight = sum(lane.running for lane in self._lanes.values())
        log.info(
            "stopping: letting calls in flight finish",
            extra={"action": "worker_stopping", "lines": in_flight, "grace_seconds": grace},
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while any(lane.running for lane in self._lanes.values()) or (
                    self._recorder.pending
                ):
                    await _wait(self._progress, 0.05)

    async def _hand_back(self) -> None:
        """Write what is left and hand back every lease this worker holds."""
        unstarted = [item.id for lane in self._lanes.values() for item in lane.waiting()]
        for lane in self._lanes.values():
            while not lane.queue.empty():
                lane.queue.get_nowait()
        with contextlib.suppress(Exception):  # logged by the recorder
            await self._recorder.flush()
        try:
            released = await self._store.release_worker(self.id, unstarted)
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
        return nothing_held and not self._recorder.pending and not await self._store.has_work()

    # -- lines --------------------------------------------------------------------------

    async def _feeder(self, lane: _Lane) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._feed(lane)
            except Exception:  # a database hiccup must not stop the lane for good
                await _pause_after_error("feeder", failures)
                failures += 1
            else:
                failures = 0

    async def _feed(self, lane: _Lane) -> None:
        await self._note_stopped_batches(lane)
        if not lane.hungry:
            await _wait(lane.wake, self._settings.idle_poll_seconds)
            return
        items = await self._engine.claim(
            self.id,
            lane.provider.name,
            lane.prefetch - lane.queue.qsize(),
            self._settings.lease_seconds,
        )
        if self._stopping.is_set():  # claimed as the stop came: handed back unstarted
            lane.queue._queue.extend(items)  # type: ignore[attr-defined]
            return
        for item in items:
            lane.queue.put_nowait(item)
        wait = lane.idle.after(found_work=bool(items))
        if not items:
            await _wait(lane.wake, await self._until_retry_due(wait))

    async def _note_stopped_batches(self, lane: _Lane) -> None:
        """Learn which waiting lines belong to batches that were cancelled or expired since
        they were claimed: those lines end without being sent."""
        waiting = lane.waiting_batches() - self._stopped.keys()
        if waiting:
            self._stopped.update(await self._store.stopped_batches(waiting))

    def _idle_wait(self) -> IdleWait:
        return IdleWait(self._settings.idle_poll_seconds, self._settings.idle_poll_max_seconds)

    async def _until_retry_due(self, wait: float) -> float:
        """How long a feeder with nothing to run may sleep: ``wait``, or until the next
        retry is due if sooner."""
        now = clock.now_float()
        due = await self._store.next_retry_at(now)
        if due is not None:
            wait = min(wait, due - now)
        return max(wait, 0.005)

    async def _runner(self, lane: _Lane) -> None:
        while True:
            item = await lane.queue.get()
            if self._stopping.is_set():  # handed back unstarted
                lane.queue.put_nowait(item)
                await asyncio.Event().wait()  # until the worker cancels its loops
            lane.running += 1
            self._running[item.batch_id] += 1
            try:
                outcome = await self._outcome(item)
            finally:
                lane.running -= 1
                self._running[item.batch_id] -= 1
                if not self._running[item.batch_id]:
                    del self._running[item.batch_id]
            # the next line waits until this result is on disk: a crash repeats at most
            # one call per runner
            await self._recorder.submit(self._engine.record(item, outcome))
            if lane.hungry:
                lane.wake.set()

    async def _outcome(self, item: BatchItem) -> ItemOutcome:
        stopped = self._stopped.get(item.batch_id)
        if stopped is not None:
            return ItemOutcome(item_id=item.id, state=stopped)
        try:
            exhausted = self._budgets is not None and await self._budgets.exhausted(item.owner)
        except Exception:  # the budget cannot be read now: the line waits and tries again
            log.exception("cannot read a budget", extra={"action": "budget_error"})
            return ItemOutcome(
                item_id=item.id,
                state=ItemState.PENDING,
                not_before=clock.now_float()
                + min(_BUDGET_RETRY_SECONDS, self._settings.backoff_max_seconds),
            )
        if exhausted:
            return _budget_exceeded(item)
        outcome = await self._run_within_quota(item)
        if self._budgets is not None and outcome.state is ItemState.SUCCEEDED:
            self._budgets.spend(item.owner, item.model, item.provider, outcome.usage)
        return outcome

    async def _run_within_quota(self, item: BatchItem) -> ItemOutcome:
        """Run a line once its provider's rate limits have room for it (batch share)."""
        quotas = self._quotas
        if quotas is None or not quotas.provider_limited(item.provider):
            return await self._execute(item)
        tokens = 0
        if quotas.provider_counts_tokens(item.provider):
            tokens = estimate_tokens(item.endpoint, _json_object(item.body))
        ticket = await quotas.hold_provider(item.provider, tokens)
        outcome = await self._execute(item)
        await quotas.settle(ticket, outcome.usage.total_tokens)
        return outcome

    async def _execute(self, item: BatchItem) -> ItemOutcome:
        """The call, within the provider's concurrency shared by every process (if so)."""
        lane = self._lanes.get(item.provider)
        if lane is None or lane.slots is None:
            return await self._executor.run(item)
        async with lane.slots.call():
            return await self._executor.run(item)

    async def _recorded(self, records: Sequence[LineRecord]) -> None:
        """After a commit: retried lines may run again, ended batches be finalized."""
        if self._accounting is not None:
            self._accounting.logged([r.log for r in records if r.log is not None])
        if any(r.outcome.state is ItemState.PENDING for r in records):
            for lane in self._lanes.values():
                lane.wake.set()
        # a batch of which this worker still holds lines has not ended: ask the database
        # only about the others (usually just at a batch's tail)
        held = self._held_batches()
        try:
            for batch_id in {r.batch_id for r in records} - held:
                if not await self._store.has_active_items(batch_id):
                    self._housekeeping.set()
                    break
        except Exception:  # the housekeeper looks again by itself
            self._housekeeping.set()
        self._progress.set()

    def _held_batches(self) -> set[str]:
        held = set(self._running)
        for lane in self._lanes.values():
            held |= lane.waiting_batches()
        return held

    async def _native_loop(self) -> None:
        while True:
            try:
                moved = await self._native.step()
            except Exception:  # a database hiccup must not stop native batches for good
                log.exception("native batch step failed", extra={"action": "native_error"})
                moved = False
            self._progress.set()
            wait = self._native_idle.after(found_work=moved)
            if not moved:
                with contextlib.suppress(Exception):  # unreadable now: the idle wait it is
                    wait = await self._native.next_due_in(wait)
                await _wait(self._native_wake, wait)

    async def _heartbeat(self) -> None:
        lease = self._settings.lease_seconds
        failures = 0
        while True:
            await asyncio.sleep(lease / 3)
            try:
                now = clock.now_float()
                await self._store.extend_leases(self.id, now + lease)
                released = await self._store.release_expired_leases(
                    now, self._settings.max_attempts
                )
            except Exception:
                await _pause_after_error("heartbeat", failures)
                failures += 1
                continue
            failures = 0
            if released:
                log.warning(
                    "took back lines of a worker that stopped",
                    extra={"action": "leases_released", "lines": released},
                )
                self._wakeups.announce()

    # -- batches ------------------------------------------------------------------------

    async def _housekeeper(self) -> None:
        failures = 0
        started = False
        while True:
            try:
                if not started:
                    # lines of a worker that died before this one started come back at once
                    await self._store.release_expired_leases(
                        clock.now_float(), self._settings.max_attempts
                    )
                    started = True
                did_work = await self._housekeep()
            except Exception:  # the list of batches could not be read: try again soon
                await _pause_after_error("housekeeping", failures)
                failures += 1
                continue
            failures = 0
            self._progress.set()
            wait = self._housekeeping_idle.after(found_work=did_work)
            if not did_work:
                await _wait(self._housekeeping, wait)

    async def _housekeep(self) -> bool:
        """Start a step for each batch that needs one (several run at once, so one long
        validation or finalization never holds up the others)."""
        did_work = False
        now = clock.now()
        for batch_id, status in await self._store.batches_needing_work(now):
            if self._stopping.is_set() or len(self._steps) >= _STEPS_AT_ONCE:
                break
            if batch_id in self._steps:
                continue
            failures, retry_at = self._step_failures.get(batch_id, (0, 0.0))
            if retry_at > clock.now_float():
                continue  # it failed just now: give it (or the database) a moment
            if not await self._store.claim_batch(
                batch_id, self.id, clock.now_float(), self._settings.lease_seconds
            ):
                continue
            did_work = True
            task = asyncio.create_task(self._step(batch_id, status, now, failures))
            self._steps[batch_id] = task
        return did_work

    async def _step(self, batch_id: str, status: BatchStatus, now: int, failures: int) -> None:
        try:
            await self._advance(batch_id, status, now)
        except Exception as exc:  # one broken batch must not stop the others
            log.exception(
                "batch step failed", extra={"action": "batch_error", "batch_id": batch_id}
            )
            failures += 1
            if failures >= self._settings.max_step_failures:
                self._step_failures.pop(batch_id, None)
                try:
                    await self._give_up(batch_id, failures, exc)
                except Exception:  # the database: the next round tries again
                    log.exception("cannot end a batch", extra={"action": "batch_error"})
            else:
                delay = min(self._settings.backoff_max_seconds, 2.0**failures)
                self._step_failures[batch_id] = (failures, clock.now_float() + delay)
        else:
            self._step_failures.pop(batch_id, None)
        finally:
            self._steps.pop(batch_id, None)
            self._housekeeping.set()
            self._progress.set()

    async def _advance(self, batch_id: str, status: BatchStatus, now: int) -> None:
        """Take one batch a step further (the engine decides what the step is)."""
        step = await self._engine.advance(batch_id, status, now)
        if step is Step.VALIDATED:
            self._wakeups.announce()  # its lines are ready, for every worker
        elif step is Step.DONE:
            self._stopped.pop(batch_id, None)

    async def _give_up(self, batch_id: str, failures: int, error: BaseException) -> None:
        await self._engine.give_up(batch_id, failures, error)
        self._stopped.pop(batch_id, None)
