"""Wakeups: within a process, and across processes through PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from batchway.config import Config
from batchway.core.ports import Wakeups
from batchway.core.wakeups import LocalWakeups
from batchway.store import wakeups as pg_wakeups
from batchway.store.wakeups import PostgresWakeups, asyncpg_dsn, open_wakeups
from tests.conftest import POSTGRES_URL

WAIT = 30.0  # how long a word may take to arrive before the test fails (not a measure)


class Listener:
    def __init__(self, wakeups: Wakeups) -> None:
        self.heard = asyncio.Event()
        self.count = 0
        self.task = asyncio.create_task(wakeups.listen(self._on_wake))

    def _on_wake(self) -> None:
        self.count += 1
        self.heard.set()

    async def next(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.heard.wait()
        self.heard.clear()

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def postgres(postgres_available: bool) -> AsyncIterator[list[PostgresWakeups]]:
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    made: list[PostgresWakeups] = []
    yield made
    for wakeups in made:
        await wakeups.close()


async def test_local_wakeups_reach_this_processes_listeners() -> None:
    wakeups = LocalWakeups()
    first, second = Listener(wakeups), Listener(wakeups)
    await asyncio.sleep(0)  # both are listening
    wakeups.announce()
    await first.next()
    await second.next()
    await first.stop()
    wakeups.announce()
    await second.next()
    assert first.count == 1
    await second.stop()
    wakeups.announce()  # no one listens: nothing happens


async def test_an_announcement_reaches_a_listener_in_another_connection(
    postgres: list[PostgresWakeups],
) -> None:
    sender, receiver = PostgresWakeups(POSTGRES_URL), PostgresWakeups(POSTGRES_URL)
    postgres += [sender, receiver]
    listener = Listener(receiver)
    await listener.next()  # once connected, it looks for work announced meanwhile

    sender.announce()
    await listener.next()

    for _ in range(50):  # a burst is coalesced, and the last word is never lost
        sender.announce()
    await listener.next()
    await listener.stop()


async def test_an_announcement_reaches_this_processes_listener_at_once(
    postgres: list[PostgresWakeups],
) -> None:
    wakeups = PostgresWakeups(POSTGRES_URL)
    postgres.append(wakeups)
    listener = Listener(wakeups)
    await asyncio.sleep(0)
    wakeups.announce()
    assert listener.heard.is_set()  # without the round trip through the database
    await listener.stop()


async def test_an_unreachable_database_neither_raises_nor_listens_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_wakeups, "MAX_RECONNECTS", 2)
    monkeypatch.setattr(pg_wakeups, "CONNECT_TIMEOUT", 2.0)
    wakeups = PostgresWakeups("postgresql://postgres@127.0.0.1:9/none")
    local = Listener(wakeups)
    await asyncio.sleep(0)
    wakeups.announce()  # the NOTIFY fails in the background; this process still hears it
    await local.next()
    async with asyncio.timeout(WAIT):
        await wakeups._listen_remote(lambda: None)  # gives up after two failed connections
    await local.stop()
    await wakeups.close()


def test_the_backend_follows_the_database() -> None:
    assert isinstance(open_wakeups(Config(database="sqlite:///x.db")), LocalWakeups)
    assert isinstance(open_wakeups(Config(database="postgresql://u@h/db")), PostgresWakeups)
    assert asyncpg_dsn("postgresql+asyncpg://u@h:5/db") == "postgresql://u@h:5/db"
    assert asyncpg_dsn("postgres://u@h/db") == "postgresql://u@h/db"
