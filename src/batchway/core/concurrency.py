"""A provider's ``max_concurrency`` shared by every process (cluster-wide slots).

Each process holds a *grant*: how many calls it may have in flight to a provider. It asks a
`ConcurrencyPool` (Redis, shared by all processes; or `MemoryConcurrencyPool`) for a new
grant whenever what it wants changes and at least every ``renew_seconds``, saying how many
it wants and how many calls it may have in flight until the answer comes (``busy``: the
calls in flight, or the grant in force if that is more). The pool:

- never grants more than the limit less what the other holders hold, and records a
  holder's share as ``max(grant, busy)``, so calls already under way are counted until they
  end: the calls in flight across all processes never exceed the limit;
- gives a holder at most an even share of the limit while another holder wants more than
  it has, so one busy process cannot keep the others out;
- forgets a holder that has not renewed for ``ttl_seconds`` (a killed process).

Batch lines use the pool ``batch:{provider}`` with ``1 - interactive_share`` of the limit,
so that interactive traffic keeps its share of the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchway.core.ports import ConcurrencyPool

__all__ = ["Grant", "MemoryConcurrencyPool", "SharedSlots", "batch_share", "decide_grant"]

log = logging.getLogger("batchway.concurrency")

_HAND_BACK_SECONDS = 5.0


@dataclass
class Grant:
    """One holder's entry in a pool."""

    count: int  # what it holds: max(grant, busy)
    want: int
    expires_at: float


def decide_grant(holders: dict[str, Grant], holder: str, want: int, limit: int) -> int:
    """The grant for ``holder`` given the other live holders (the rule both pools apply).
    An even share is at least one call, so that more holders than the limit still leaves
    the limit in use (some of them then wait their turn)."""
    others = [grant for name, grant in holders.items() if name != holder]
    free = limit - sum(grant.count for grant in others)
    grant = max(0, min(want, free))
    if any(other.want > other.count for other in others):
        contenders = sum(1 for other in others if other.want > 0) + (1 if want > 0 else 0)
        grant = min(grant, max(1, limit // max(contenders, 1)))
    return grant


class MemoryConcurrencyPool:
    """The pool within one process (tests, and the contract the Redis pool is held to)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pools: dict[str, dict[str, Grant]] = {}

    async def renew(
        self, pool: str, holder: str, *, want: int, busy: int, limit: int, ttl_seconds: float
    ) -> int:
        now = self._clock()
        holders = self._pools.setdefault(pool, {})
        for name in [name for name, grant in holders.items() if grant.expires_at <= now]:
            del holders[name]
        grant = decide_grant(holders, holder, want, limit)
        if want == 0 and busy == 0:
            holders.pop(holder, None)
        else:
            holders[holder] = Grant(max(grant, busy), want, now + ttl_seconds)
        return grant

    async def holders(self, pool: str) -> dict[str, int]:
        now = self._clock()
        return {
            name: grant.count
            for name, grant in self._pools.get(pool, {}).items()
            if grant.expires_at > now
        }

    async def close(self) -> None:
        self._pools.clear()


class SharedSlots:
    """This process's part of one pool: ``async with slots.call():`` around each call."""

    def __init__(
        self,
        pool: ConcurrencyPool,
        name: str,
        holder: str,
        *,
        limit: int,
        ttl_seconds: float = 10.0,
        renew_seconds: float = 1.0,
        min_renew_seconds: float = 0.01,
    ) -> None:
        self._pool = pool
        self.name = name
        self._holder = holder
        self.limit = limit
        self._ttl = ttl_seconds
        self._renew = renew_seconds
        self._min_renew = min_renew_seconds
        self.granted = 0
        self.busy = 0
        self._waiting = 0
        self._room = asyncio.Condition()
        self._changed = asyncio.Event()
        self._failures = 0

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        async with self._room:
            self._waiting += 1
            self._changed.set()
            try:
                await self._room.wait_for(lambda: self.busy < self.granted)
            finally:
                self._waiting -= 1
            self.busy += 1
        try:
            yield
        finally:
            async with self._room:
                self.busy -= 1
                self._room.notify()
            self._changed.set()

    async def run(self) -> None:
        """Keep the grant up to date until cancelled; then hand it back."""
        try:
            loop = asyncio.get_running_loop()
            task = asyncio.current_task()
            while True:
                await self._renew_once()
                if task is not None and task.cancelling():
                    # the client swallowed the cancellation that came during the call
                    raise asyncio.CancelledError
                await asyncio.sleep(self._min_renew)  # coalesce a burst of changes
                # a timer, not asyncio.timeout: before Python 3.12 a timeout expiring as the
                # task is cancelled can swallow the cancellation, and this loop never ends
                timer = loop.call_later(self._renew, self._changed.set)
                try:
                    await self._changed.wait()
                finally:
                    timer.cancel()
                self._changed.clear()
        finally:
            # hand the share back now rather than at the lease's end; bounded, and not
            # cancelled halfway by the cancellation that ended the loop
            hand_back = asyncio.ensure_future(
                self._pool.renew(
                    self.name, self._holder, want=0, busy=0, limit=self.limit, ttl_seconds=self._ttl
                )
            )
            await asyncio.wait({hand_back}, timeout=_HAND_BACK_SECONDS)
            if hand_back.done():
                with contextlib.suppress(Exception):
                    hand_back.result()
            else:
                hand_back.cancel()

    async def _renew_once(self) -> None:
        want = min(self.limit, self.busy + self._waiting)
        # while this renewal is on its way, calls may start up to the grant in force: the
        # pool must count that many, not just the calls in flight now, or it could hand
        # them to another process meanwhile; a lower grant takes effect from the answer
        held = max(self.busy, self.granted)
        try:
            granted = await self._pool.renew(
                self.name,
                self._holder,
                want=want,
                busy=held,
                limit=self.limit,
                ttl_seconds=self._ttl,
            )
            self._failures = 0
        except Exception as exc:  # the pool's store is down: this process alone decides
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                log.warning(
                    "shared concurrency unavailable, using this process's own limit: %s",
                    exc,
                    extra={"action": "concurrency_failed", "pool": self.name},
                )
            granted = self.limit
        async with self._room:
            self.granted = granted
            self._room.notify_all()


def batch_share(limit: int, interactive_share: float) -> int:
    """How many of a provider's ``limit`` concurrent calls batch lines may use."""
    return max(1, math.floor(limit * (1.0 - interactive_share)))
