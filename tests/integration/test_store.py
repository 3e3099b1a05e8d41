"""What only the SQL store has: columns no port reads back, and the ordering of rows whose
clock readings tie. On SQLite and on PostgreSQL.

Everything a port shows is in the store contract (tests/contract), which runs on the SQL
store and on the in-memory one alike; the tests here read the tables themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Row

from batchway.config import Config
from batchway.core.states import BatchStatus, ItemState
from batchway.store.migrate import migrate
from batchway.store.plans import Many, Plan, Rows
from batchway.store.sql import SqlStore, create_engine
from batchway.store.tables import batch_items
from tests.contract.factories import (
    NOW,
    OWNER,
    claim,
    failed,
    new_batch,
    new_file,
    new_items,
    retry,
    succeeded,
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    sql_store = SqlStore(engine)
    try:
        yield sql_store
    finally:
        await sql_store.close()


async def make_batch(store: SqlStore, items: int, *, start: bool = True, **fields: Any) -> str:
    batch = new_batch(OWNER, **fields)
    await store.create_batch(batch)
    await store.insert_items(batch.id, new_items(items))
    if start:
        assert await store.set_batch_status(
            batch.id, expected=[BatchStatus.VALIDATING], status=BatchStatus.IN_PROGRESS
        )
    return batch.id


async def item_rows(store: SqlStore, batch_id: str) -> list[Row[Any]]:
    """The stored lines of a batch, in input order (columns the store has no reader for)."""
    async with store.engine.connect() as conn:
        result = await conn.execute(
            select(batch_items)
            .where(batch_items.c.batch_id == batch_id)
            .order_by(batch_items.c.line)
        )
        return list(result.all())


async def test_listings_do_not_skip_rows_created_in_the_same_clock_tick(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL only: rows are ordered by a ``time_ns`` sort key, which a coarse clock repeats;
    the in-memory store numbers its rows and never has ties."""
    # a coarse clock (time_ns ticks every ~15 ms on Windows before Python 3.13) gives
    # several rows one sort_key, e.g. the output and error files finish_batch writes
    monkeypatch.setattr("batchway.store.sql.time", SimpleNamespace(time_ns=lambda: 42))
    file_ids = []
    for _ in range(3):
        file = new_file()
        await store.create_file(file, file.id)
        file_ids.append(file.id)
    batch_ids = [await make_batch(store, 0, start=False) for _ in range(3)]

    seen_files: list[str] = []
    after = None
    while True:
        page = await store.list_files(
            OWNER, NOW, purpose=None, limit=1, after=after, ascending=True
        )
        seen_files += [f.id for f in page.items]
        if not page.has_more:
            break
        after = page.items[-1].id
    seen_batches: list[str] = []
    after = None
    while True:
        batch_page = await store.list_batches(OWNER, limit=1, after=after)
        seen_batches += [b.id for b in batch_page.items]
        if not batch_page.has_more:
            break
        after = batch_page.items[-1].id

    assert sorted(seen_files) == sorted(file_ids)
    assert sorted(seen_batches) == sorted(batch_ids)


async def test_a_recorded_line_keeps_when_it_ended_and_what_it_cost(store: SqlStore) -> None:
    """SQL only: ``finished_at``, a line's ``cost_usd`` and its lease columns are written
    for reports and operators, and no port reads them back."""
    batch_id = await make_batch(store, 3)
    good, bad, again = await claim(store, "w1", lease=30)
    rows = await item_rows(store, batch_id)
    assert [r.lease_expires_at for r in rows] == [NOW + 30] * 3

    await store.record_outcomes(
        "w1",
        [
            replace(
                succeeded(good, input_tokens=10, cached_tokens=4, output_tokens=5), cost_usd=0.5
            ),
            failed(bad, input_tokens=3),
            retry(again, NOW + 60),
        ],
        NOW + 2,
    )

    first, second, third = await item_rows(store, batch_id)
    assert (first.finished_at, first.cost_usd) == (NOW + 2, 0.5)
    assert (first.input_tokens, first.cached_tokens, first.output_tokens) == (10, 4, 5)
    assert (second.finished_at, second.input_tokens) == (NOW + 2, 3)
    assert (third.finished_at, third.not_before) == (None, NOW + 60)
    for row in (first, second, third):
        assert (row.lease_owner, row.lease_expires_at) == (None, None)
    # a second report does not move the time it ended
    await store.record_outcomes("w1", [failed(good)], NOW + 5)
    assert (await item_rows(store, batch_id))[0].finished_at == NOW + 2


async def test_lines_that_never_ran_keep_when_they_ended(store: SqlStore) -> None:
    """SQL only: ``finished_at`` of cancelled, expired and settled lines (no port reads it)."""
    cancelled = await make_batch(store, 2)
    expired = await make_batch(store, 1)
    (running,) = await claim(store, "w1", limit=1, lease=1)
    assert await store.cancel_batch(cancelled, expected=BatchStatus.IN_PROGRESS, now=NOW + 1)
    assert await store.expire_batch(expired, NOW + 2)
    assert await store.release_expired_leases(NOW + 3) == 1  # back as pending after the cancel
    await store.settle_unfinished(cancelled, ItemState.CANCELLED, NOW + 4)

    assert [(r.state, r.finished_at) for r in await item_rows(store, cancelled)] == [
        ("cancelled", NOW + 4),
        ("cancelled", NOW + 1),
    ]
    assert [(r.state, r.finished_at) for r in await item_rows(store, expired)] == [
        ("expired", NOW + 2)
    ]
    assert str((await item_rows(store, cancelled))[0].id) == running.id


async def test_a_native_claim_names_its_upstream_batch(store: SqlStore) -> None:
    """SQL only: ``upstream_batch_id`` tells operators which upstream batch holds a line."""
    batch = new_batch(OWNER)
    await store.create_batch(batch)
    await store.insert_items(batch.id, new_items(1, provider="native"), ["native"])
    assert await store.set_batch_status(
        batch.id, expected=[BatchStatus.VALIDATING], status=BatchStatus.IN_PROGRESS
    )

    (item,) = await store.claim_items("native:up_1", "native", 10, NOW, 30, execute=False)
    (row,) = await item_rows(store, batch.id)
    assert (row.upstream_batch_id, row.execute_only, str(row.id)) == ("up_1", False, item.id)


async def test_a_write_cancelled_mid_statement_leaves_the_database_writable(
    store: SqlStore,
) -> None:
    """A worker stopped while its statement runs: the statement's transaction is rolled
    back and its connection goes back clean. (SQLite used to keep that connection's write
    lock until garbage collection, so every later write waited and failed "locked".)"""
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) "
        "SELECT count(*) FROM c"
        if store.is_sqlite
        else "SELECT pg_sleep(0.5)"
    )
    batch_id = await make_batch(store, 1)

    async def write_slowly() -> None:
        async with store._write() as conn:
            await conn.execute(
                batch_items.update().where(batch_items.c.batch_id == batch_id).values(attempts=7)
            )
            await conn.exec_driver_sql(slow)

    task = asyncio.ensure_future(write_slowly())
    await asyncio.sleep(0.1)  # into the slow statement
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def next_write() -> None:
        async with store._write() as conn:
            await conn.execute(
                batch_items.update().where(batch_items.c.batch_id == batch_id).values(attempts=1)
            )

    await asyncio.wait_for(next_write(), timeout=10)
    assert [row.attempts for row in await item_rows(store, batch_id)] == [1]


async def test_a_read_plan_may_not_write(store: SqlStore) -> None:
    """A plan run as reads is refused at its first write, on either database, and leaves
    nothing written."""
    batch_id = await make_batch(store, 1)

    def plan() -> Plan[None]:
        yield Rows("SELECT 1", ())
        yield Many("UPDATE batch_items SET attempts = 99", [()])

    with pytest.raises(TypeError, match="read-only plan wrote"):
        await store._read_plan(plan())
    assert [row.attempts for row in await item_rows(store, batch_id)] == [0]
