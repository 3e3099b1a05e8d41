"""A provider's ``max_concurrency`` shared by every process (cluster-wide slots).

Each process holds a *grant*: how many calls it may have in flight to a provider. It asks a
`ConcurrencyPool` (Redis, shared by all processes; or `MemoryConcurrencyPool`) for a new
grant whenever what it wants changes and at least every ``renew_seconds``, saying how many
it wants and how many calls it may have in flight until the answer comes (``busy``: the
calls in flight, or the grant in force if that is more). The pool:

- never grants more than the limit less what the other holders hold, and records a
  holder's share as ``max(grant, busy)``, so calls already under way are counted until they
  end: the calls in flight across all processes never exceed the limit;
- gives a holder at most an even share of what its kind may use while another holder of
  its kind wants more than it has, so one busy process cannot keep the others out;
- forgets a holder that has not renewed for ``ttl_seconds`` (a killed process).

A process whose lease may have run out (its loop stalled, or the pool was slow to answer)
starts no call on its old grant: new calls wait for the next answer, as the pool may have
handed that room to another process meanwhile.

A provider has one pool, ``calls:{provider}``, shared by its two kinds of holder:

- *interactive* holders (a process's synchronous calls) may use all of the limit;
- *batch* holders (a worker's lines) together hold at most ``cap``, ``1 - interactive_share``
  of the limit, and leave room for what interactive holders want and do not have yet: when
  live traffic wants more than its share, batch grants come down at their next renewal and
  the room returns as batch calls end.

So batch and interactive calls across all processes never exceed the limit, and a big batch
never takes the interactive share.

An interactive holder also asks for some *spare* room beyond the calls it wants, granted
only out of the part of the interactive share no interactive holder uses: a new call seldom
waits for a renewal, and batch lines lose nothing to it. The pool is asked when demand
changes, never on a call's path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchway.config import Config
from batchway.core.ports import ConcurrencyPool, HolderKind, Provider

__all__ = [
    "Grant",
    "InteractiveSlots",
    "MemoryConcurrencyPool",
    "SharedSlots",
    "batch_share",
    "decide_grant",
    "provider_limits",
    "provider_pool",
]

log = logging.getLogger("batchway.concurrency")

_HAND_BACK_SECONDS = 5.0
_HEADROOM_SHARE = 0.25  # an interactive holder asks for a quarter more than it uses
# a grant is used for this part of its lease, counted from when it was asked for: the pool's
# lease started later, and the margin covers clocks that tick a little apart
_LEASE_USE = 0.9


@dataclass
class Grant:
    """One holder's entry in a pool."""

    count: int  # what it holds: max(grant, busy)
    want: int
    expires_at: float
    kind: HolderKind = "interactive"


def provider_pool(provider: str) -> str:
    """The pool of a provider's calls, batch and interactive."""
    return f"calls:{provider}"


def decide_grant(
    holders: dict[str, Grant],
    holder: str,
    want: int,
    limit: int,
    *,
    kind: HolderKind = "interactive",
    cap: int | None = None,
    spare: int = 0,
) -> int:
    """The grant for ``holder`` given the other live holders (the rule both pools apply).
    An even share (among holders of one kind) is at least one call, so that more holders
    than the limit still leaves the limit in use (some then wait their turn)."""
    cap = limit if cap is None else min(cap, limit)
    others = [grant for name, grant in holders.items() if name != holder]
    peers = [grant for grant in others if grant.kind == kind]
    free = limit - sum(grant.count for grant in others)
    if kind == "batch":
        # within the cap, and out of the way of interactive calls waiting for room
        unmet = sum(max(0, g.want - g.count) for g in others if g.kind == "interactive")
        free = min(free - unmet, cap - sum(grant.count for grant in peers))
        share = cap
    else:
        # room beyond the calls wanted only out of what the interactive share leaves
        reserve = limit - cap - sum(grant.count for grant in peers) - want
        free = min(free, want + min(spare, max(0, reserve)))
        share = limit
    grant = max(0, min(want + spare, free))
    if any(peer.want > peer.count for peer in peers):
        contenders = sum(1 for peer in peers if peer.want > 0) + (1 if want > 0 else 0)
        grant = min(grant, max(1, share // max(contenders, 1)))
    return grant


class MemoryConcurrencyPool:
    """The pool within one process (tests, and the contract the Redis pool is held to)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pools: dict[str, dict[str, Grant]] = {}

    async def renew(
        self,
        pool: str,
        holder: str,
        *,
        want: int,
        busy: int,
        limit: int,
        ttl_seconds: float,
        kind: HolderKind = "interactive",
        cap: int | None = None,
        spare: int = 0,
    ) -> int:
        now = self._clock()
        holders = self._pools.setdefault(pool, {})
        for name in [name for name, grant in holders.items() if grant.expires_at <= now]:
            del holders[name]
        grant = decide_grant(holders, holder, want, limit, kind=kind, cap=cap, spare=spare)
        if want == busy == spare == 0:
            holders.pop(holder, None)
        else:
            holders[holder] = Grant(max(grant, busy), want, now + ttl_seconds, kind)
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
    """This process's part of one pool: ``async with slots.call():`` around each call (or
    ``acquire()`` and ``release()`` around a call that outlives a block, a stream)."""

    def __init__(
        self,
        pool: ConcurrencyPool,
        name: str,
        holder: str,
        *,
        limit: int,
        kind: HolderKind = "interactive",
        cap: int | None = None,
        headroom: float = 0.0,
        min_headroom: int = 0,
        ttl_seconds: float = 10.0,
        renew_seconds: float | None = None,
        min_renew_seconds: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self.name = name
        self._holder = holder
        self.limit = limit
        self.kind: HolderKind = kind
        self.cap = limit if cap is None else min(cap, limit)  # batch holders' cap
        self.own_limit = self.cap if kind == "batch" else limit  # the most this may hold
        self._headroom = headroom
        self._min_headroom = min_headroom
        self._ttl = ttl_seconds
        # renewed five times a lease by default: a missed renewal or two never loses it
        self._renew = ttl_seconds / 5 if renew_seconds is None else renew_seconds
        self._min_renew = min_renew_seconds
        self._clock = clock
        self.granted = 0
        self._granted_until = 0.0  # when the grant's lease may run out (``clock``)
        self.busy = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._changed = asyncio.Event()
        self._failures = 0

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Wait for room for one call, and take it (first come, first served)."""
        self._changed.set()
        if self.busy < self.granted and not self._waiters and self._clock() < self._granted_until:
            self.busy += 1
            return
        room = asyncio.get_running_loop().create_future()
        self._waiters.append(room)
        try:
            await room  # resolved once the room is ours (``busy`` already counts it)
        except asyncio.CancelledError:
            if room.done() and not room.cancelled():
                self.release()  # the room came as the wait was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(room)
            raise

    def release(self) -> None:
        """Give back the room of one call that has ended."""
        self.busy -= 1
        self._changed.set()
        self._hand_out()

    def _hand_out(self) -> None:
        if self._clock() >= self._granted_until:
            return  # the lease may have run out: the next answer hands out the room
        while self._waiters and self.busy < self.granted:
            room = self._waiters.popleft()
            if not room.done():
                self.busy += 1
                room.set_result(None)

    def wanted(self) -> int:
        """The calls in flight and waiting."""
        return min(self.own_limit, self.busy + len(self._waiters))

    def spare(self) -> int:
        """The room to ask for beyond the calls wanted."""
        calls = self.busy + len(self._waiters)
        room = max(self._min_headroom, int(calls * self._headroom))
        return max(0, min(self.own_limit - calls, room))

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
            hand_back = asyncio.ensure_future(self._ask(want=0, busy=0))
            await asyncio.wait({hand_back}, timeout=_HAND_BACK_SECONDS)
            if hand_back.done():
                with contextlib.suppress(Exception):
                    hand_back.result()
            else:
                hand_back.cancel()

    def _ask(self, *, want: int, busy: int, spare: int = 0) -> Awaitable[int]:
        return self._pool.renew(
            self.name,
            self._holder,
            want=want,
            busy=busy,
            limit=self.limit,
            ttl_seconds=self._ttl,
            kind=self.kind,
            cap=self.cap,
            spare=spare,
        )

    async def _renew_once(self) -> None:
        # while this renewal is on its way, calls may start up to the grant in force: the
        # pool must count that many, not just the calls in flight now, or it could hand
        # them to another process meanwhile; a lower grant takes effect from the answer.
        # A grant whose lease may have run out is not in force: only the calls in flight.
        asked_at = self._clock()
        in_force = asked_at < self._granted_until
        held = max(self.busy, self.granted) if in_force else self.busy
        try:
            granted = await self._ask(want=self.wanted(), busy=held, spare=self.spare())
            self._failures = 0
            self._granted_until = asked_at + self._ttl * _LEASE_USE
        except Exception as exc:  # the pool's store is down: this process alone decides
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                log.warning(
                    "shared concurrency unavailable, using this process's own limit: %s",
                    exc,
                    extra={"action": "concurrency_failed", "pool": self.name},
                )
            granted = self.own_limit
            self._granted_until = math.inf
        self.granted = granted
        self._hand_out()


class InteractiveSlots:
    """This process's synchronous calls in each provider's pool (``limits``: each provider's
    limit and batch cap). A provider's part starts with its first call here (a process that
    serves none holds nothing) and is handed back at ``close()``."""

    def __init__(
        self,
        pool: ConcurrencyPool,
        limits: Mapping[str, tuple[int, int]],
        holder: str,
        *,
        headroom: int,
        ttl_seconds: float,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._holder = holder
        self._headroom = headroom
        self._ttl = ttl_seconds
        self._slots: dict[str, SharedSlots] = {}
        self._renewers: list[asyncio.Task[None]] = []

    def of(self, provider: str) -> SharedSlots | None:
        """The provider's slots (None for a provider the pool does not know)."""
        slots = self._slots.get(provider)
        if slots is None and provider in self._limits:
            limit, cap = self._limits[provider]
            slots = self._slots[provider] = SharedSlots(
                self._pool,
                provider_pool(provider),
                self._holder,
                limit=limit,
                kind="interactive",
                cap=cap,
                headroom=_HEADROOM_SHARE,
                min_headroom=self._headroom,
                ttl_seconds=self._ttl,
            )
            self._renewers.append(asyncio.create_task(slots.run(), name=f"slots-{provider}"))
        return slots

    async def close(self) -> None:
        for task in self._renewers:
            task.cancel()
        await asyncio.gather(*self._renewers, return_exceptions=True)
        self._renewers.clear()
        self._slots.clear()


def batch_share(limit: int, interactive_share: float) -> int:
    """How many of a provider's ``limit`` concurrent calls batch lines may use."""
    return max(1, math.floor(limit * (1.0 - interactive_share)))


def provider_limits(config: Config, providers: Iterable[Provider]) -> dict[str, tuple[int, int]]:
    """Each provider's ``max_concurrency`` and the part of it batch lines may use."""
    limits = {}
    for provider in providers:
        settings = config.providers.get(provider.name)
        share = settings.interactive_share if settings is not None else 0.0
        limit = provider.max_concurrency
        limits[provider.name] = (limit, batch_share(limit, share))
    return limits
