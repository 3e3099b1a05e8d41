"""The ``ConcurrencyPool`` contract: the same grants from every implementation, in process
(``MemoryConcurrencyPool``) and in Redis (``RedisConcurrencyPool``, where every holder may
be another process), and `SharedSlots` keeping many processes' calls within one limit."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from batchway.core.concurrency import MemoryConcurrencyPool, SharedSlots, batch_share
from batchway.core.ports import ConcurrencyPool
from batchway.store.redis_concurrency import RedisConcurrencyPool
from tests.conftest import REDIS_URL
from tests.contract.test_rate_limiter_contract import delete_prefix

TTL = 60.0


@pytest.fixture(params=["memory", "redis"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[ConcurrencyPool]:
    if request.param == "memory":
        yield MemoryConcurrencyPool()
        return
    if not request.getfixturevalue("redis_available"):
        pytest.skip("Redis is not reachable")
    prefix = f"bwtest-{secrets.token_hex(6)}"
    redis_pool = RedisConcurrencyPool(REDIS_URL, prefix)
    try:
        yield redis_pool
    finally:
        await redis_pool.close()
        await delete_prefix(prefix)


async def renew(pool: ConcurrencyPool, holder: str, want: int, busy: int = 0) -> int:
    return await pool.renew("p", holder, want=want, busy=busy, limit=10, ttl_seconds=TTL)


async def test_a_lone_holder_gets_what_it_wants_up_to_the_limit(pool: ConcurrencyPool) -> None:
    assert await renew(pool, "a", 4) == 4
    assert await renew(pool, "a", 25) == 10
    assert await pool.holders("p") == {"a": 10}


async def test_holders_never_hold_more_than_the_limit_together(pool: ConcurrencyPool) -> None:
    assert await renew(pool, "a", 8, busy=0) == 8
    assert await renew(pool, "b", 8) == 2
    assert sum((await pool.holders("p")).values()) == 10


async def test_calls_in_flight_are_counted_until_they_end(pool: ConcurrencyPool) -> None:
    assert await renew(pool, "a", 10) == 10
    # b wants a share: a is told to come down to an even share, but its 10 calls in flight
    # still count, so b gets nothing until they end
    assert await renew(pool, "b", 10) == 0
    assert await renew(pool, "a", 10, busy=10) == 5
    assert await renew(pool, "b", 10) == 0
    assert await renew(pool, "a", 10, busy=5) == 5
    assert await renew(pool, "b", 10) == 5
    assert await pool.holders("p") == {"a": 5, "b": 5}


async def test_more_holders_than_the_limit_still_use_all_of_it(pool: ConcurrencyPool) -> None:
    async def two(holder: str, busy: int = 0) -> int:
        return await pool.renew("p", holder, want=2, busy=busy, limit=2, ttl_seconds=TTL)

    assert await two("a") == 2
    assert await two("b") == 0
    assert await two("c") == 0
    assert await two("a", busy=2) == 1  # an even share, but never less than one call
    assert await two("a", busy=1) == 1
    assert await two("b") == 1
    assert sum((await pool.holders("p")).values()) == 2


async def test_handing_back_frees_the_share(pool: ConcurrencyPool) -> None:
    assert await renew(pool, "a", 10) == 10
    assert await renew(pool, "a", 0, busy=0) == 0
    assert await pool.holders("p") == {}
    assert await renew(pool, "b", 10) == 10


async def test_pools_are_apart(pool: ConcurrencyPool) -> None:
    assert await pool.renew("p", "a", want=10, busy=0, limit=10, ttl_seconds=TTL) == 10
    assert await pool.renew("q", "a", want=10, busy=0, limit=3, ttl_seconds=TTL) == 3


async def test_a_holder_that_stops_renewing_is_forgotten(pool: ConcurrencyPool) -> None:
    # a killed process: its share comes back once its lease runs out (a real wait here,
    # as Redis keeps its own time)
    assert await pool.renew("p", "dead", want=10, busy=10, limit=10, ttl_seconds=0.2) == 10
    assert await renew(pool, "b", 10) == 0
    await asyncio.sleep(0.3)
    assert await renew(pool, "b", 10) == 10


class StalledPool:
    """A pool whose answers to one process wait until ``answer`` is set (a process whose
    loop stalled, or a pool slow to answer it)."""

    def __init__(self, pool: ConcurrencyPool) -> None:
        self._pool = pool
        self.answer = asyncio.Event()
        self.answer.set()

    async def renew(self, pool: str, holder: str, **kwargs: Any) -> int:
        await self.answer.wait()
        return await self._pool.renew(pool, holder, **kwargs)

    async def holders(self, pool: str) -> dict[str, int]:
        return await self._pool.holders(pool)

    async def close(self) -> None:
        await self._pool.close()


async def test_a_grant_whose_lease_may_have_run_out_starts_no_call(
    pool: ConcurrencyPool,
) -> None:
    stalled = StalledPool(pool)
    slots = SharedSlots(stalled, "p", "stalled", limit=2, ttl_seconds=0.3, renew_seconds=0.05)
    renewer = asyncio.create_task(slots.run())
    try:
        async with asyncio.timeout(30):
            await slots.acquire()
            await slots.acquire()
            stalled.answer.clear()
            slots.release()
            slots.release()
            assert slots.granted == 2  # the renewal that would lower it is held up
            await asyncio.sleep(0.4)  # the pool forgets the stalled process
            assert await pool.renew("p", "other", want=2, busy=2, limit=2, ttl_seconds=TTL) == 2

            late = asyncio.create_task(slots.acquire())
            await asyncio.sleep(0.1)
            assert not late.done()  # its old grant may be someone else's by now

            stalled.answer.set()
            await asyncio.sleep(0.2)
            assert not late.done()  # the pool says so: the other process holds the limit
            assert await pool.renew("p", "other", want=0, busy=0, limit=2, ttl_seconds=TTL) == 0
            await late  # room again, at the next renewal
            assert slots.busy == 1
            slots.release()
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)


async def test_many_processes_stay_within_the_limit(pool: ConcurrencyPool) -> None:
    limit = 7
    in_flight, peak, done = 0, 0, 0

    async def call(slots: SharedSlots) -> None:
        nonlocal in_flight, peak, done
        async with slots.call():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(random.uniform(0, 0.01))
            in_flight -= 1
            done += 1

    processes = [
        SharedSlots(pool, "shared", f"process-{i}", limit=limit, renew_seconds=0.05)
        for i in range(4)
    ]
    renewers = [asyncio.create_task(slots.run()) for slots in processes]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(call(processes[i % 4]) for i in range(400)))
    finally:
        for task in renewers:
            task.cancel()
        await asyncio.gather(*renewers, return_exceptions=True)
    assert done == 400
    assert peak <= limit
    assert await pool.holders("shared") == {}  # every process handed its share back


async def batch(pool: ConcurrencyPool, holder: str, want: int, busy: int = 0) -> int:
    """A worker's lines in a pool of 10 calls, at most 8 of them for batch lines."""
    return await pool.renew(
        "p", holder, want=want, busy=busy, limit=10, ttl_seconds=TTL, kind="batch", cap=8
    )


async def test_batch_holders_together_keep_to_their_cap(pool: ConcurrencyPool) -> None:
    assert await batch(pool, "w1", 10) == 8
    assert await batch(pool, "w2", 10) == 0
    assert await batch(pool, "w1", 10, busy=8) == 4  # an even share of the cap, not the limit
    assert await batch(pool, "w2", 10) == 0  # w1's eight calls in flight still count
    assert await batch(pool, "w1", 10, busy=4) == 4
    assert await batch(pool, "w2", 10) == 4
    # and the interactive share is still free
    assert await renew(pool, "api", 2) == 2
    assert await pool.holders("p") == {"w1": 4, "w2": 4, "api": 2}


async def test_interactive_calls_keep_their_share_and_batch_lines_make_way(
    pool: ConcurrencyPool,
) -> None:
    assert await batch(pool, "w", 10) == 8
    # live traffic wants 5: it has its share (2) at once ...
    assert await renew(pool, "api", 5) == 2
    # ... and the worker's next grant leaves room for the rest (its calls still count)
    assert await batch(pool, "w", 10, busy=8) == 5
    assert await renew(pool, "api", 5) == 2
    assert await batch(pool, "w", 10, busy=5) == 5
    assert await renew(pool, "api", 5) == 5
    # when live traffic wants less again, batch lines take back what it left
    assert await renew(pool, "api", 1, busy=5) == 1
    assert await renew(pool, "api", 1, busy=1) == 1
    assert await batch(pool, "w", 10, busy=5) == 8
    assert sum((await pool.holders("p")).values()) == 9


async def test_interactive_holders_may_use_the_whole_limit(pool: ConcurrencyPool) -> None:
    assert await renew(pool, "api", 10) == 10
    assert await batch(pool, "w", 10) == 0
    assert await renew(pool, "api", 3, busy=10) == 3
    assert await batch(pool, "w", 10) == 0  # the ten calls are still in flight
    assert await renew(pool, "api", 3, busy=3) == 3
    assert await batch(pool, "w", 10) == 7


async def test_batch_lines_and_live_calls_of_many_processes_stay_within_the_limit(
    pool: ConcurrencyPool,
) -> None:
    limit, cap = 9, 6
    in_flight, peak, done = 0, 0, {"batch": 0, "interactive": 0}

    async def call(slots: SharedSlots) -> None:
        nonlocal in_flight, peak
        async with slots.call():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(random.uniform(0, 0.01))
            in_flight -= 1
            done[slots.kind] += 1

    every = {"limit": limit, "renew_seconds": 0.05}
    processes = [
        SharedSlots(pool, "mixed", f"worker-{i}", kind="batch", cap=cap, **every) for i in range(3)
    ] + [
        SharedSlots(pool, "mixed", f"api-{i}", headroom=0.25, min_headroom=2, **every)
        for i in range(2)
    ]
    renewers = [asyncio.create_task(slots.run()) for slots in processes]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(call(processes[i % 5]) for i in range(500)))
    finally:
        for task in renewers:
            task.cancel()
        await asyncio.gather(*renewers, return_exceptions=True)
    assert done == {"batch": 300, "interactive": 200}
    assert peak <= limit
    assert await pool.holders("mixed") == {}


async def test_a_call_that_gives_up_waiting_leaves_nothing_held() -> None:
    slots = SharedSlots(MemoryConcurrencyPool(), "p", "me", limit=1, renew_seconds=0.05)
    renewer = asyncio.create_task(slots.run())
    try:
        async with asyncio.timeout(30):
            async with slots.call():
                waiting = asyncio.create_task(slots.acquire())
                await asyncio.sleep(0.01)
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            assert slots.busy == 0
            async with slots.call():  # the room is still there for the next call
                assert slots.busy == 1
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)


def test_an_interactive_holder_asks_for_spare_room() -> None:
    pool = MemoryConcurrencyPool()
    slots = SharedSlots(pool, "p", "me", limit=100, min_headroom=4, headroom=0.25)
    assert (slots.wanted(), slots.spare()) == (0, 4)
    slots.busy = 40
    assert (slots.wanted(), slots.spare()) == (40, 10)
    slots.busy = 95
    assert (slots.wanted(), slots.spare()) == (95, 5)  # never more than the limit


async def test_spare_room_comes_only_out_of_the_unused_interactive_share(
    pool: ConcurrencyPool,
) -> None:
    async def api(holder: str, want: int, spare: int, busy: int = 0) -> int:
        return await pool.renew(
            "p", holder, want=want, busy=busy, limit=10, ttl_seconds=TTL, cap=8, spare=spare
        )

    # two idle replicas each ask for 4 spare: together they get the share (2), no more
    assert await api("api-1", 0, 4) == 2
    assert await api("api-2", 0, 4) == 0
    assert await batch(pool, "w", 10) == 8  # batch lines lose nothing to it
    # a call that wants room has it ahead of spare room, once batch lines make way
    assert await api("api-2", 1, 4) == 0
    assert await batch(pool, "w", 10, busy=8) == 7
    assert await batch(pool, "w", 10, busy=7) == 7
    assert await api("api-2", 1, 4) == 1
    assert sum((await pool.holders("p")).values()) == 10
    # calls wanted beyond the share get room (batch lines gone here), spare room does not
    assert await batch(pool, "w", 0) == 0
    assert await api("api-1", 5, 4) == 5


def test_batch_lines_leave_the_interactive_share() -> None:
    assert batch_share(64, 0.2) == 51
    assert batch_share(1, 0.5) == 1
    assert batch_share(10, 0.0) == 10


async def test_with_redis_down_each_process_keeps_to_its_own_limit() -> None:
    unreachable = RedisConcurrencyPool("redis://127.0.0.1:9/0", "bwtest")
    slots = SharedSlots(unreachable, "p", "me", limit=3, renew_seconds=0.05)
    renewer = asyncio.create_task(slots.run())
    try:
        async with asyncio.timeout(30):
            async with slots.call():
                assert slots.granted == 3
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
        await unreachable.close()
