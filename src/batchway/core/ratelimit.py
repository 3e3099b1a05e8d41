"""Rate limits over rolling windows: requests and tokens per key and per provider.

A window of ``seconds`` is cut into ``BUCKETS`` buckets of ``seconds / BUCKETS``. A bucket
counts toward the window while any part of it overlaps ``[now - seconds, now]``, so the sum
over-counts by at most one bucket and no interval of ``seconds`` ever holds more than the limit.
A charge that does not fit learns exactly when enough old buckets will have left.

Backends only keep the buckets: the arithmetic on time (which bucket is current, when one
leaves) and the shaping of a :class:`Decision` live here, so that the in-process and the
Redis backend decide alike.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from batchway.core.ports import RateLimiter

__all__ = [
    "BUCKETS",
    "Decision",
    "Limit",
    "LimitState",
    "MemoryRateLimiter",
    "Ticket",
    "WindowView",
    "bucket_index",
    "bucket_leaves_at",
    "charge_cap",
    "decide",
    "hold",
]

BUCKETS = 60  # buckets per window: the window over-counts by at most 1/60 of its length

Unit = Literal["requests", "tokens"]
Charges = Sequence[tuple["Limit", int]]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` units in any rolling window of ``seconds``."""

    unit: Unit
    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 0 or not self.seconds > 0:
            raise ValueError(f"a limit needs limit >= 0 and seconds > 0, not {self}")

    @property
    def name(self) -> str:
        """The limit's name in headers: ``tokens`` per minute, ``tokens-hour``, ``tokens-10s``."""
        if self.seconds == 60:
            return self.unit
        if self.seconds == 3600:
            return f"{self.unit}-hour"
        return f"{self.unit}-{self.seconds:g}s"


@dataclass(frozen=True, slots=True)
class LimitState:
    """One window after a decision."""

    limit: Limit
    remaining: int  # units left in the window after this decision, 0 to limit.limit
    reset_seconds: float  # seconds until the window is back to its full limit


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an acquire charged, so that ``settle`` can correct it; opaque to callers."""

    subject: str
    charges: tuple[tuple[Limit, int, int], ...]  # (limit, amount charged, bucket index charged)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a charge passed, and the state of each window it touched."""

    allowed: bool
    retry_after: float  # seconds until this same charge could pass; 0.0 if allowed
    states: tuple[LimitState, ...]  # one per charged limit, in the order given
    ticket: Ticket | None  # set when allowed


# -- window arithmetic, shared by every backend ---------------------------------------------


def bucket_index(limit: Limit, now: float) -> int:
    """The bucket of ``limit``'s window that ``now`` falls in."""
    return math.floor(now / (limit.seconds / BUCKETS))


def bucket_leaves_at(limit: Limit, index: int) -> float:
    """The first instant at which bucket ``index`` no longer counts toward the window.

    The bucket overlaps ``[now - seconds, now]`` until ``now`` reaches the start of bucket
    ``index + BUCKETS + 1``. The product is nudged past any rounding, to the first float at
    which :func:`bucket_index` says so, so that a caller who waits until exactly this instant
    finds the bucket gone.
    """
    width = limit.seconds / BUCKETS
    gone = index + BUCKETS + 1
    at = gone * width
    while math.floor(at / width) < gone:
        at = math.nextafter(at, math.inf)
    while math.floor((before := math.nextafter(at, -math.inf)) / width) >= gone:
        at = before
    return at


def charge_cap(limit: Limit, share: float) -> int:
    """How full a charge with ``share`` may fill the window: ``floor(limit * share)``.

    The small tolerance keeps ``100 * 0.29`` (28.999999999999996 in binary) at 29.
    """
    return math.floor(limit.limit * share + 1e-9)


# what a backend saw of one window, before charging: (bucket the charge goes in, units in
# the window, newest bucket in the window or None, and for a charge that does not fit the
# bucket whose leaving lets it fit, else None)
WindowView = tuple[int, int, int | None, int | None]


def _fits(used: int, amount: int, cap: int) -> bool:
    """Whether ``amount`` may join a window holding ``used`` (the Redis script mirrors this)."""
    return amount == 0 or used <= 0 or used + amount <= cap


def decide(subject: str, charges: Charges, now: float, views: Sequence[WindowView]) -> Decision:
    """The decision for ``charges``, given what the backend saw of each window.

    The charge passes when every window has room. Otherwise it must wait for the slowest
    window to free enough room. (On the hot path of every request: plain loops, no
    generators.)
    """
    states = []
    allowed = True
    for view in views:
        if view[3] is not None:
            allowed = False
            break
    if allowed:
        charged = []
        # views has one entry per charge (the backends build it so): strict would only cost
        for (limit, amount), (bucket, used, _, _) in zip(charges, views, strict=False):
            charged.append((limit, amount, bucket))
            used += amount
            if used <= 0:
                states.append(LimitState(limit, limit.limit, 0.0))
            else:  # as _state, inlined; the bucket just charged is the newest
                reset = (bucket + BUCKETS + 1) * (limit.seconds / BUCKETS) - now
                left = limit.limit - used if used < limit.limit else 0
                states.append(LimitState(limit, left, reset))
        return Decision(True, 0.0, tuple(states), Ticket(subject, tuple(charged)))
    retry_after = 0.0
    for index, (_, used, newest, frees) in enumerate(views):
        limit = charges[index][0]
        if frees is not None:
            wait = bucket_leaves_at(limit, frees) - now
            if wait > retry_after:
                retry_after = wait
        states.append(_state(limit, used, newest, now))
    return Decision(False, retry_after, tuple(states), None)


def _state(limit: Limit, used: int, newest: int | None, now: float) -> LimitState:
    if used <= 0 or newest is None:
        return LimitState(limit, limit.limit, 0.0)
    # a header hint, so the plain product will do (retry_after is the exact one)
    reset = (newest + BUCKETS + 1) * (limit.seconds / BUCKETS) - now
    return LimitState(limit, limit.limit - used if used < limit.limit else 0, reset)


# -- the in-process backend -----------------------------------------------------------------


class _Window:
    """One window's buckets, oldest first, and their running sum."""

    __slots__ = ("amounts", "order", "used")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # bucket indices, ascending
        self.amounts: dict[int, int] = {}  # bucket index -> units charged
        self.used = 0


class MemoryRateLimiter:
    """Windows counted in this process only (one gateway process, or tests).

    Check and charge run without an ``await`` in between, so an acquire is atomic with
    respect to every other task on the event loop.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        # one entry per (subject, unit, seconds) ever charged; a window left empty stays
        self._windows: dict[tuple[str, str, float], _Window] = {}

    async def acquire(
        self, subject: str, charges: Sequence[tuple[Limit, int]], *, share: float = 1.0
    ) -> Decision:
        """See :meth:`RateLimiter.acquire`."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], not {share!r}")
        now = self._clock()
        all_windows = self._windows
        windows: list[_Window] = []
        views: list[WindowView] = []
        for limit, amount in charges:
            if amount < 0:
                raise ValueError(f"a charge amount must be >= 0, not {amount}")
            key = (subject, limit.unit, limit.seconds)
            window = all_windows.get(key)
            if window is None:
                window = all_windows[key] = _Window()
            windows.append(window)
            bucket = math.floor(now / (limit.seconds / BUCKETS))  # bucket_index, inlined
            order, amounts = window.order, window.amounts
            low = bucket - BUCKETS
            while order and order[0] < low:
                window.used -= amounts.pop(order.popleft())
            used = window.used
            if not order:
                views.append((bucket, used, None, None))
                continue
            newest = order[-1]
            if newest > bucket:
                # the clock went back: charge the newest bucket, which stays longest
                bucket = newest
            frees = None
            cap = limit.limit if share == 1.0 else charge_cap(limit, share)
            if not (amount == 0 or used <= 0 or used + amount <= cap):  # _fits, inlined
                frees = _frees_at(window, used, amount, cap)
            views.append((bucket, used, newest, frees))
        decision = decide(subject, charges, now, views)
        if decision.allowed:
            for index, window in enumerate(windows):
                amount = charges[index][1]
                bucket = views[index][0]
                amounts = window.amounts
                if bucket in amounts:
                    amounts[bucket] += amount
                else:
                    amounts[bucket] = amount
                    window.order.append(bucket)
                window.used += amount
        return decision

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """See :meth:`RateLimiter.settle`."""
        for limit, charged, bucket in ticket.charges:
            if limit.unit != "tokens" or tokens == charged:
                continue
            window = self._windows.get((ticket.subject, limit.unit, limit.seconds))
            if window is not None and bucket in window.amounts:
                window.amounts[bucket] += tokens - charged
                window.used += tokens - charged

    async def close(self) -> None:
        """Nothing to release."""


def _frees_at(window: _Window, used: int, amount: int, cap: int) -> int:
    """The oldest bucket whose leaving (with all older ones) lets ``amount`` fit."""
    amounts = window.amounts
    for bucket in window.order:
        used -= amounts[bucket]
        if _fits(used, amount, cap):
            return bucket
    raise AssertionError("an empty window always fits")  # pragma: no cover


# -- waiting for quota ----------------------------------------------------------------------


async def hold(
    limiter: RateLimiter,
    subject: str,
    charges: Sequence[tuple[Limit, int]],
    *,
    share: float = 1.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Ticket:
    """Wait until ``limiter`` lets the charges through, then return their ticket.

    For the batch scheduler, which never refuses a line for quota. ``sleep`` is for tests.
    """
    while True:
        decision = await limiter.acquire(subject, charges, share=share)
        if decision.ticket is not None:
            return decision.ticket
        await sleep(decision.retry_after)
