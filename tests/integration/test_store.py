"""The SQL store against a real database: every test runs on SQLite and on PostgreSQL.

Time is passed in explicitly everywhere (the store never reads the clock), so the tests
use a fixed ``NOW`` and move it by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from batchway.config import Config
from batchway.core.models import (
    ApiKey,
    Batch,
    BatchItem,
    ItemOutcome,
    NewItem,
    RequestCounts,
    StoredFile,
    Usage,
)
from batchway.core.states import BatchStatus, ItemState
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from batchway.store.tables import batch_items, batches

NOW = 1_700_000_000
DAY = 86_400
OWNER = "key_owner"
OTHER = "key_other"
PROVIDER = "sim"

_serial = itertools.count(1)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    engine = create_engine(Config(database=database_url).async_database_url)
    await migrate(engine)
    sql_store = SqlStore(engine)
    try:
        yield sql_store
    finally:
        await sql_store.close()


# -- factories ------------------------------------------------------------------------------


def new_key(**fields: Any) -> ApiKey:
    n = next(_serial)
    values: dict[str, Any] = {
        "id": f"key_{n:04d}",
        "name": f"key {n}",
        "key_hash": f"{n:064x}",
        "created_at": NOW + n,
    }
    return ApiKey(**{**values, **fields})


def new_file(owner: str = OWNER, **fields: Any) -> StoredFile:
    n = next(_serial)
    values: dict[str, Any] = {
        "id": f"file-{n:04d}",
        "owner": owner,
        "filename": f"input-{n}.jsonl",
        "purpose": "batch",
        "bytes": 100 + n,
        "created_at": NOW,
    }
    return StoredFile(**{**values, **fields})


def new_batch(owner: str = OWNER, **fields: Any) -> Batch:
    n = next(_serial)
    values: dict[str, Any] = {
        "id": f"batch_{n:04d}",
        "owner": owner,
        "endpoint": "/v1/chat/completions",
        "input_file_id": f"file-in-{n}",
        "completion_window": "24h",
        "status": BatchStatus.VALIDATING,
        "created_at": NOW,
        "expires_at": NOW + DAY,
    }
    return Batch(**{**values, **fields})


def new_items(count: int, provider: str = PROVIDER, first_line: int = 1) -> list[NewItem]:
    return [
        NewItem(
            line=line,
            custom_id=f"req-{line}",
            model="gpt-4o",
            provider=provider,
            body=b'{"model": "gpt-4o", "line": %d}' % line,
        )
        for line in range(first_line, first_line + count)
    ]


MakeBatch = Callable[..., Awaitable[str]]


@pytest.fixture
def make_batch(store: SqlStore) -> MakeBatch:
    """``await make_batch(items=N)``: a batch with N lines, moved to ``in_progress``.

    ``items`` may also be a list of ``NewItem``; ``start=False`` leaves it validating.
    """

    async def make(
        items: int | list[NewItem] = 0,
        *,
        owner: str = OWNER,
        start: bool = True,
        provider: str = PROVIDER,
        **fields: Any,
    ) -> str:
        batch = new_batch(owner, **fields)
        lines = new_items(items, provider) if isinstance(items, int) else items
        await store.create_batch(batch)
        await store.insert_items(batch.id, lines)
        if start:
            moved = await store.set_batch_status(
                batch.id,
                expected=[BatchStatus.VALIDATING],
                status=BatchStatus.IN_PROGRESS,
                in_progress_at=NOW,
                total=len(lines),
            )
            assert moved
        return batch.id

    return make


async def claim(
    store: SqlStore,
    worker: str = "w1",
    limit: int = 1000,
    now: float = NOW,
    lease: float = 30.0,
    provider: str = PROVIDER,
) -> list[BatchItem]:
    return await store.claim_items(worker, provider, limit, now, lease)


def succeeded(item: BatchItem, text: str = "ok", **usage: int) -> ItemOutcome:
    return ItemOutcome(
        item_id=item.id,
        state=ItemState.SUCCEEDED,
        status_code=200,
        response=b'{"answer": "%s"}' % text.encode(),
        request_id=f"req_{item.id}",
        usage=Usage(**usage),
    )


def failed(item: BatchItem, **usage: int) -> ItemOutcome:
    return ItemOutcome(
        item_id=item.id,
        state=ItemState.FAILED,
        status_code=400,
        response=b'{"error": "bad"}',
        error_code="invalid_request",
        error_message="bad request",
        usage=Usage(**usage),
    )


def retry(item: BatchItem, not_before: float) -> ItemOutcome:
    return ItemOutcome(
        item_id=item.id,
        state=ItemState.PENDING,
        status_code=429,
        error_code="rate_limited",
        error_message="slow down",
        not_before=not_before,
    )


async def item_rows(store: SqlStore, batch_id: str) -> list[Row[Any]]:
    """The stored lines of a batch, in input order (columns the store has no reader for)."""
    async with store.engine.connect() as conn:
        result = await conn.execute(
            select(batch_items)
            .where(batch_items.c.batch_id == batch_id)
            .order_by(batch_items.c.line)
        )
        return list(result.all())


async def states(store: SqlStore, batch_id: str) -> list[ItemState]:
    return [ItemState(row.state) for row in await item_rows(store, batch_id)]


async def batch_row(store: SqlStore, batch_id: str) -> Row[Any]:
    async with store.engine.connect() as conn:
        result = await conn.execute(select(batches).where(batches.c.id == batch_id))
        return result.one()


async def fetch(store: SqlStore, batch_id: str) -> Batch:
    batch = await store.get_batch(None, batch_id)
    assert batch is not None
    return batch


async def status_of(store: SqlStore, batch_id: str) -> BatchStatus:
    return (await fetch(store, batch_id)).status


# -- keys -----------------------------------------------------------------------------------


async def test_keys_are_found_by_hash_and_id_and_listed_oldest_first(store: SqlStore) -> None:
    full = new_key(models=("gpt-4o", "claude"), rpm=60, tpm=10_000, budget_usd=12.5)
    bare = new_key(created_at=NOW - 1)  # older, though stored second
    await store.create_key(full)
    await store.create_key(bare)

    assert await store.key_by_hash(full.key_hash) == full
    assert await store.get_key(bare.id) == bare
    assert await store.key_by_hash("0" * 64) is None
    assert await store.get_key("key_unknown") is None
    assert [k.id for k in await store.list_keys()] == [bare.id, full.id]


async def test_a_key_hash_is_unique(store: SqlStore) -> None:
    key = new_key()
    await store.create_key(key)
    with pytest.raises(IntegrityError):
        await store.create_key(new_key(key_hash=key.key_hash))


async def test_revoke_key(store: SqlStore) -> None:
    key = new_key()
    other = new_key()
    await store.create_key(key)
    await store.create_key(other)

    assert await store.revoke_key(key.id) is True
    revoked = await store.key_by_hash(key.key_hash)
    assert revoked is not None and revoked.revoked
    untouched = await store.get_key(other.id)
    assert untouched is not None and not untouched.revoked
    assert await store.revoke_key("key_unknown") is False


# -- files ----------------------------------------------------------------------------------


async def test_file_round_trip(store: SqlStore) -> None:
    file = new_file(expires_at=NOW + DAY, purpose="batch_output", status="processed")
    await store.create_file(file, "blob/one")

    assert await store.get_file(OWNER, file.id, NOW) == file
    assert await store.get_file(None, file.id, NOW) == file  # internal reads see every owner
    assert await store.file_blob_key(file.id) == "blob/one"
    assert await store.get_file(OWNER, "file-unknown", NOW) is None
    assert await store.file_blob_key("file-unknown") is None


async def test_list_files_pages_newest_first_by_default(store: SqlStore) -> None:
    ids = []
    for _ in range(5):
        file = new_file()
        await store.create_file(file, file.id)
        ids.append(file.id)
    newest_first = ids[::-1]

    async def page(after: str | None, limit: int = 2) -> tuple[list[str], bool]:
        result = await store.list_files(
            OWNER, NOW, purpose=None, limit=limit, after=after, ascending=False
        )
        return [f.id for f in result.items], result.has_more

    assert await page(None) == (newest_first[:2], True)
    assert await page(newest_first[1]) == (newest_first[2:4], True)
    assert await page(newest_first[3]) == (newest_first[4:], False)
    assert await page(None, limit=5) == (newest_first, False)
    assert await page(None, limit=10) == (newest_first, False)


async def test_list_files_ascending(store: SqlStore) -> None:
    ids = []
    for _ in range(4):
        file = new_file()
        await store.create_file(file, file.id)
        ids.append(file.id)

    first = await store.list_files(OWNER, NOW, purpose=None, limit=3, after=None, ascending=True)
    assert [f.id for f in first.items] == ids[:3] and first.has_more
    rest = await store.list_files(OWNER, NOW, purpose=None, limit=3, after=ids[2], ascending=True)
    assert [f.id for f in rest.items] == ids[3:] and not rest.has_more


async def test_list_files_filters_by_purpose(store: SqlStore) -> None:
    inputs = [new_file(purpose="batch") for _ in range(2)]
    output = new_file(purpose="batch_output")
    for file in [*inputs, output]:
        await store.create_file(file, file.id)

    listed = await store.list_files(
        OWNER, NOW, purpose="batch", limit=10, after=None, ascending=True
    )
    assert [f.id for f in listed.items] == [f.id for f in inputs]
    listed = await store.list_files(
        OWNER, NOW, purpose="batch_output", limit=10, after=None, ascending=True
    )
    assert [f.id for f in listed.items] == [output.id]


async def test_another_owner_sees_none_of_the_files(store: SqlStore) -> None:
    file = new_file(OWNER)
    await store.create_file(file, "blob/mine")

    assert await store.get_file(OTHER, file.id, NOW) is None
    listed = await store.list_files(OTHER, NOW, purpose=None, limit=10, after=None, ascending=True)
    assert listed.items == [] and not listed.has_more
    # a cursor naming someone else's file does not leak it either
    listed = await store.list_files(
        OTHER, NOW, purpose=None, limit=10, after=file.id, ascending=False
    )
    assert listed.items == []
    assert await store.delete_file(OTHER, file.id, NOW) is None
    assert await store.get_file(OWNER, file.id, NOW) == file


async def test_expired_files_are_hidden_from_get_list_and_delete(store: SqlStore) -> None:
    gone = new_file(expires_at=NOW - 1)
    ending = new_file(expires_at=NOW)  # expiry is exclusive: at NOW it is gone
    alive = new_file(expires_at=NOW + 1)
    forever = new_file(expires_at=None)
    for file in (gone, ending, alive, forever):
        await store.create_file(file, file.id)

    for file in (gone, ending):
        assert await store.get_file(OWNER, file.id, NOW) is None
        assert await store.get_file(None, file.id, NOW) is None
        assert await store.delete_file(OWNER, file.id, NOW) is None
    assert await store.get_file(OWNER, alive.id, NOW) == alive
    listed = await store.list_files(OWNER, NOW, purpose=None, limit=10, after=None, ascending=True)
    assert [f.id for f in listed.items] == [alive.id, forever.id]
    later = await store.list_files(
        OWNER, NOW + 1, purpose=None, limit=10, after=None, ascending=True
    )
    assert [f.id for f in later.items] == [forever.id]


async def test_delete_file_returns_the_blob_key_once(store: SqlStore) -> None:
    file = new_file()
    keep = new_file()
    await store.create_file(file, "blob/delete-me")
    await store.create_file(keep, "blob/keep")

    assert await store.delete_file(OWNER, file.id, NOW) == "blob/delete-me"
    assert await store.delete_file(OWNER, file.id, NOW) is None
    assert await store.get_file(OWNER, file.id, NOW) is None
    assert await store.file_blob_key(file.id) is None
    assert await store.get_file(OWNER, keep.id, NOW) == keep


async def test_listings_do_not_skip_rows_created_in_the_same_clock_tick(
    store: SqlStore, make_batch: MakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a coarse clock (time_ns ticks every ~15 ms on Windows before Python 3.13) gives
    # several rows one sort_key, e.g. the output and error files finish_batch writes
    monkeypatch.setattr("batchway.store.sql.time", SimpleNamespace(time_ns=lambda: 42))
    file_ids = []
    for _ in range(3):
        file = new_file()
        await store.create_file(file, file.id)
        file_ids.append(file.id)
    batch_ids = [await make_batch(start=False) for _ in range(3)]

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


# -- batches --------------------------------------------------------------------------------


async def test_batch_round_trip(store: SqlStore) -> None:
    batch = new_batch(
        model="gpt-4o",
        metadata={"project": "alpha", "run": "7"},
        output_expires_after=3600,
        completion_window="24h",
    )
    await store.create_batch(batch)

    assert await store.get_batch(OWNER, batch.id) == batch
    assert await store.get_batch(None, batch.id) == batch
    bare = new_batch()
    await store.create_batch(bare)
    assert await store.get_batch(OWNER, bare.id) == bare


async def test_get_batch_with_the_wrong_owner_returns_none(store: SqlStore) -> None:
    batch = new_batch(OWNER)
    await store.create_batch(batch)

    assert await store.get_batch(OTHER, batch.id) is None
    assert await store.get_batch(OWNER, "batch_unknown") is None


async def test_list_batches_newest_first_with_cursor(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    ids = [await make_batch(start=False) for _ in range(5)]
    await make_batch(owner=OTHER, start=False)
    newest_first = ids[::-1]

    first = await store.list_batches(OWNER, limit=2, after=None)
    assert [b.id for b in first.items] == newest_first[:2] and first.has_more
    second = await store.list_batches(OWNER, limit=2, after=newest_first[1])
    assert [b.id for b in second.items] == newest_first[2:4] and second.has_more
    last = await store.list_batches(OWNER, limit=2, after=newest_first[3])
    assert [b.id for b in last.items] == newest_first[4:] and not last.has_more
    everything = await store.list_batches(OWNER, limit=5, after=None)
    assert [b.id for b in everything.items] == newest_first and not everything.has_more
    others = await store.list_batches(OTHER, limit=10, after=None)
    assert len(others.items) == 1 and not others.has_more
    # a cursor naming someone else's batch is ignored rather than leaking its position
    assert (await store.list_batches(OTHER, limit=10, after=ids[0])).items == others.items


async def test_live_counts_come_from_the_lines_while_in_progress(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=6)
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None and batch.status is BatchStatus.IN_PROGRESS
    assert batch.counts == RequestCounts(total=6, processing=6)

    first, second, third = await claim(store, limit=3)
    assert (await fetch(store, batch_id)).counts == RequestCounts(total=6, processing=6)
    await store.record_outcomes(
        "w1", [succeeded(first), failed(second), retry(third, NOW + 5)], NOW + 1
    )

    expected = RequestCounts(total=6, processing=4, succeeded=1, failed=1)
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None and batch.counts == expected
    listed = await store.list_batches(OWNER, limit=10, after=None)
    assert [b.counts for b in listed.items] == [expected]


async def test_a_validating_batch_shows_its_stored_counts(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3, start=False)  # lines stored, not yet started
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None and batch.counts == RequestCounts()


# -- claiming lines -------------------------------------------------------------------------


async def test_claim_items_takes_lines_in_order_and_counts_the_attempt(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=5)

    items = await claim(store, "w1", limit=3, lease=30)
    assert [i.line for i in items] == [1, 2, 3]
    first = items[0]
    assert first.batch_id == batch_id
    assert first.custom_id == "req-1"
    assert first.provider == PROVIDER
    assert first.endpoint == "/v1/chat/completions"
    assert first.body == b'{"model": "gpt-4o", "line": 1}'
    assert first.attempts == 1

    rows = await item_rows(store, batch_id)
    assert [r.state for r in rows] == ["leased"] * 3 + ["pending"] * 2
    assert [r.lease_owner for r in rows] == ["w1"] * 3 + [None] * 2
    assert [r.lease_expires_at for r in rows[:3]] == [NOW + 30] * 3
    assert [r.attempts for r in rows] == [1, 1, 1, 0, 0]

    rest = await claim(store, "w2", limit=3)
    assert [i.line for i in rest] == [4, 5]
    assert await claim(store, "w3") == []


async def test_claim_items_only_takes_lines_of_batches_in_progress(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    await make_batch(items=2, start=False)  # validating: lines stored, not started
    finalizing = await make_batch(items=2)
    assert await store.set_batch_status(
        finalizing, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FINALIZING
    )
    cancelled = await make_batch(items=2)
    assert await store.set_batch_status(
        cancelled, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.CANCELLING
    )
    running = await make_batch(items=2)

    items = await claim(store)
    assert {i.batch_id for i in items} == {running}
    assert len(items) == 2


async def test_claim_items_only_takes_lines_for_the_given_provider(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    mixed = [
        *new_items(2, provider="alpha", first_line=1),
        *new_items(2, provider="beta", first_line=3),
        *new_items(1, provider="alpha", first_line=5),
    ]
    await make_batch(mixed)

    alpha = await claim(store, provider="alpha")
    assert [(i.line, i.provider) for i in alpha] == [(1, "alpha"), (2, "alpha"), (5, "alpha")]
    beta = await claim(store, provider="beta")
    assert [i.line for i in beta] == [3, 4]
    assert await claim(store, provider="gamma") == []


async def test_claim_items_respects_not_before(store: SqlStore, make_batch: MakeBatch) -> None:
    await make_batch(items=1)
    (item,) = await claim(store, "w1", now=NOW)
    await store.record_outcomes("w1", [retry(item, NOW + 10)], NOW)

    assert await claim(store, "w1", now=NOW + 9.9) == []
    (again,) = await claim(store, "w1", now=NOW + 10)  # due exactly at not_before
    assert again.id == item.id
    assert again.attempts == 2


async def test_attempts_count_every_claim_including_after_a_lost_lease(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    await make_batch(items=1)
    (item,) = await claim(store, "w1", now=NOW, lease=5)
    assert await store.release_expired_leases(NOW + 6) == 1
    (again,) = await claim(store, "w2", now=NOW + 6, lease=5)
    assert again.id == item.id and again.attempts == 2


async def test_a_claimed_line_is_not_claimed_again_while_its_lease_is_live(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    await make_batch(items=3)
    taken = await claim(store, "w1", now=NOW, lease=30)
    assert len(taken) == 3

    assert await claim(store, "w2", now=NOW + 29) == []
    # even past the lease end: only the sweeper hands a line back
    assert await claim(store, "w2", now=NOW + 31) == []
    assert await store.release_expired_leases(NOW + 29) == 0
    assert await store.release_expired_leases(NOW + 31) == 3
    again = await claim(store, "w2", now=NOW + 31)
    assert sorted(i.id for i in again) == sorted(i.id for i in taken)


async def test_two_concurrent_claims_never_share_a_line(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    await make_batch(items=300)

    first, second = await asyncio.gather(
        claim(store, "w1", limit=200), claim(store, "w2", limit=200)
    )
    ids_first = {i.id for i in first}
    ids_second = {i.id for i in second}
    assert not ids_first & ids_second
    assert len(first) + len(second) == 300


async def test_many_concurrent_claimers_take_every_line_exactly_once(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_ids = [await make_batch(items=150) for _ in range(2)]
    workers = [f"w{n}" for n in range(8)]

    async def claimer(worker: str) -> list[BatchItem]:
        mine: list[BatchItem] = []
        while True:
            items = await claim(store, worker, limit=9)
            if not items:
                return mine
            mine += items

    results = await asyncio.gather(*(claimer(w) for w in workers))
    # a claimer may stop while the last lines are locked by others: sweep up what is left
    results.append(await claim(store, "sweeper"))
    workers.append("sweeper")

    all_ids = [i.id for items in results for i in items]
    assert len(all_ids) == len(set(all_ids)) == 300
    assert sum(1 for items in results if items) > 1  # the claims did interleave
    held: dict[str, set[str]] = {}
    for batch_id in batch_ids:
        for row in await item_rows(store, batch_id):
            assert row.state == "leased" and row.attempts == 1
            held.setdefault(row.lease_owner, set()).add(str(row.id))
    for worker, items in zip(workers, results, strict=True):
        assert held.get(worker, set()) == {i.id for i in items}


# -- recording outcomes ---------------------------------------------------------------------


async def test_record_outcomes_writes_state_result_and_usage(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    good, bad, again = await claim(store, "w1")

    touched = await store.record_outcomes(
        "w1",
        [
            succeeded(good, "hi", input_tokens=10, cached_tokens=4, output_tokens=5),
            failed(bad),
            retry(again, NOW + 60),
        ],
        NOW + 2,
    )
    assert touched == {batch_id}

    rows = {row.line: row for row in await item_rows(store, batch_id)}
    assert rows[1].state == "succeeded"
    assert (rows[1].status_code, rows[1].response) == (200, b'{"answer": "hi"}')
    assert rows[1].request_id == f"req_{good.id}"
    assert (rows[1].input_tokens, rows[1].cached_tokens, rows[1].output_tokens) == (10, 4, 5)
    assert rows[1].finished_at == NOW + 2
    assert rows[2].state == "failed"
    assert (rows[2].error_code, rows[2].error_message) == ("invalid_request", "bad request")
    assert rows[2].finished_at == NOW + 2
    assert rows[3].state == "pending"
    assert rows[3].not_before == NOW + 60 and rows[3].finished_at is None
    for row in rows.values():
        assert row.lease_owner is None and row.lease_expires_at is None


async def test_record_outcomes_returns_every_batch_touched(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    one = await make_batch(items=2)
    two = await make_batch(items=1)
    items = await claim(store, "w1")

    assert await store.record_outcomes("w1", [], NOW) == set()
    touched = await store.record_outcomes("w1", [succeeded(i) for i in items], NOW)
    assert touched == {one, two}


async def test_an_outcome_from_a_worker_that_lost_its_lease_is_ignored(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (lost,) = await claim(store, "slow", now=NOW, lease=5)
    assert await store.release_expired_leases(NOW + 6) == 1
    (taken,) = await claim(store, "fast", now=NOW + 6, lease=5)

    # the old holder reports while the new one still works: nothing changes
    await store.record_outcomes("slow", [succeeded(lost, "stale", output_tokens=99)], NOW + 7)
    (row,) = await item_rows(store, batch_id)
    assert (row.state, row.lease_owner, row.response) == ("leased", "fast", None)

    await store.record_outcomes("fast", [succeeded(taken, "fresh", output_tokens=3)], NOW + 8)
    # ... and reporting again afterwards does not overwrite the new holder's result
    await store.record_outcomes("slow", [failed(lost)], NOW + 9)
    await store.record_outcomes("slow", [succeeded(lost, "stale", output_tokens=99)], NOW + 9)

    (row,) = await item_rows(store, batch_id)
    assert row.state == "succeeded"
    assert row.response == b'{"answer": "fresh"}'
    assert row.output_tokens == 3
    assert row.finished_at == NOW + 8
    counts, usage = await store.item_summary(batch_id)
    assert counts == RequestCounts(total=1, succeeded=1)
    assert usage == Usage(output_tokens=3)


async def test_a_terminal_line_cannot_be_recorded_twice(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (item,) = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(item, "first")], NOW)
    await store.record_outcomes("w1", [failed(item)], NOW + 1)

    (row,) = await item_rows(store, batch_id)
    assert (row.state, row.response, row.finished_at) == ("succeeded", b'{"answer": "first"}', NOW)


# -- leases ---------------------------------------------------------------------------------


async def test_release_expired_leases_hands_back_only_expired_leases(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    short = await claim(store, "short", limit=2, now=NOW, lease=5)
    await claim(store, "long", limit=2, now=NOW, lease=50)

    assert await store.release_expired_leases(NOW + 5) == 0  # a lease ending now is still held
    assert await store.release_expired_leases(NOW + 10) == 2
    rows = await item_rows(store, batch_id)
    by_id = {str(r.id): r for r in rows}
    for item in short:
        row = by_id[item.id]
        assert (row.state, row.lease_owner, row.lease_expires_at) == ("pending", None, None)
    assert [r.lease_owner for r in rows if r.state == "leased"] == ["long", "long"]
    assert await store.release_expired_leases(NOW + 10) == 0


async def test_extend_leases_keeps_a_workers_leases_alive(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    await claim(store, "keeper", limit=1, now=NOW, lease=5)
    await claim(store, "quitter", limit=1, now=NOW, lease=5)
    assert await store.claim_batch(batch_id, "keeper", NOW, 5)

    await store.extend_leases("keeper", NOW + 100)

    assert await store.release_expired_leases(NOW + 10) == 1  # only the quitter's line
    rows = await item_rows(store, batch_id)
    assert [(r.state, r.lease_owner, r.lease_expires_at) for r in rows] == [
        ("leased", "keeper", NOW + 100),
        ("pending", None, None),
    ]
    (retaken,) = await claim(store, "other", now=NOW + 10)
    assert retaken.line == 2
    # the batch lease is extended too
    assert not await store.claim_batch(batch_id, "other", NOW + 10, 5)
    assert (await batch_row(store, batch_id)).lease_expires_at == NOW + 100


# -- cancelling, expiring, settling ---------------------------------------------------------


async def test_cancel_batch_cancels_pending_lines_and_leaves_leased_ones(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    (running,) = await claim(store, "w1", limit=1)

    # compare-and-set: a stale expectation changes nothing
    assert not await store.cancel_batch(batch_id, expected=BatchStatus.VALIDATING, now=NOW)
    assert await states(store, batch_id) == [ItemState.LEASED] + [ItemState.PENDING] * 3
    assert await status_of(store, batch_id) is BatchStatus.IN_PROGRESS

    assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW + 1)
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.CANCELLING
    assert batch.cancelling_at == NOW + 1
    assert batch.counts == RequestCounts(total=4, processing=1, cancelled=3)
    assert await store.finish_as(batch_id) is BatchStatus.CANCELLED
    rows = await item_rows(store, batch_id)
    assert [(r.line, r.state) for r in rows] == [
        (1, "leased"),
        (2, "cancelled"),
        (3, "cancelled"),
        (4, "cancelled"),
    ]
    assert rows[0].lease_owner == "w1" and rows[0].id == int(running.id)
    assert all(r.finished_at == NOW + 1 for r in rows[1:])

    assert not await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW + 2)
    assert (await fetch(store, batch_id)).cancelling_at == NOW + 1


async def test_cancel_a_validating_batch(store: SqlStore, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(start=False)
    assert not await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    assert await store.cancel_batch(batch_id, expected=BatchStatus.VALIDATING, now=NOW)
    assert await status_of(store, batch_id) is BatchStatus.CANCELLING
    assert not await store.cancel_batch("batch_unknown", expected=BatchStatus.VALIDATING, now=NOW)


async def test_expire_batch_expires_pending_lines_and_moves_to_finalizing(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    done, running = await claim(store, "w1", limit=2)
    await store.record_outcomes("w1", [succeeded(done)], NOW)

    assert await store.expire_batch(batch_id, NOW + DAY)
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.FINALIZING
    assert batch.finalizing_at == NOW + DAY
    assert batch.counts == RequestCounts(total=4, processing=1, succeeded=1, expired=2)
    assert await store.finish_as(batch_id) is BatchStatus.EXPIRED
    assert await states(store, batch_id) == [
        ItemState.SUCCEEDED,
        ItemState.LEASED,
        ItemState.EXPIRED,
        ItemState.EXPIRED,
    ]

    assert not await store.expire_batch(batch_id, NOW + DAY + 1)  # no longer in progress
    validating = await make_batch(start=False)
    assert not await store.expire_batch(validating, NOW + DAY)


async def test_settle_unfinished_ends_only_pending_lines(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    (done,) = await claim(store, "w1", limit=1)
    await claim(store, "dead", limit=1, lease=1)
    (running,) = await claim(store, "w1", limit=1, lease=30)
    await store.record_outcomes("w1", [succeeded(done)], NOW)
    assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    # the dead worker's line comes back as pending after the cancel
    assert await store.release_expired_leases(NOW + 2) == 1

    await store.settle_unfinished(batch_id, ItemState.CANCELLED, NOW + 3)

    rows = await item_rows(store, batch_id)
    assert [(r.state, r.finished_at) for r in rows] == [
        ("succeeded", NOW),
        ("cancelled", NOW + 3),
        ("leased", None),
        ("cancelled", NOW),
    ]
    assert rows[2].id == int(running.id)


# -- batches needing work, batch leases, finishing ------------------------------------------


async def test_batches_needing_work(store: SqlStore, make_batch: MakeBatch) -> None:
    # each batch routes to its own provider, so that claims can pick their lines
    validating = await make_batch(items=1, start=False)
    busy = await make_batch(items=2, provider="busy")
    await claim(store, provider="busy", limit=1)  # one line leased, one pending
    drained = await make_batch(items=1, provider="drained")
    (done,) = await claim(store, provider="drained")
    await store.record_outcomes("w1", [succeeded(done)], NOW)
    past_due = await make_batch(items=1, expires_at=NOW)
    not_due = await make_batch(items=1, expires_at=NOW + 1)
    cancel_leased = await make_batch(items=2, provider="cancel-leased")
    (in_flight,) = await claim(store, provider="cancel-leased", limit=1)
    cancel_idle = await make_batch(items=2)
    final_leased = await make_batch(items=2, provider="final-leased")
    await claim(store, provider="final-leased", limit=1)
    final_idle = await make_batch(items=2)
    for batch_id in (cancel_leased, cancel_idle):
        assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    for batch_id in (final_leased, final_idle):
        assert await store.expire_batch(batch_id, NOW)
    completed = await make_batch(items=0)
    assert await store.set_batch_status(
        completed, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.COMPLETED
    )
    failed_batch = await make_batch(start=False)
    assert await store.set_batch_status(
        failed_batch, expected=[BatchStatus.VALIDATING], status=BatchStatus.FAILED
    )

    needing = dict(await store.batches_needing_work(NOW))
    assert needing == {
        validating: BatchStatus.VALIDATING,
        drained: BatchStatus.IN_PROGRESS,  # every line ended
        past_due: BatchStatus.IN_PROGRESS,  # its window closed
        cancel_idle: BatchStatus.CANCELLING,
        final_idle: BatchStatus.FINALIZING,
    }
    assert busy not in needing and not_due not in needing
    assert cancel_leased not in needing and final_leased not in needing

    # once the in-flight line of the cancelled batch ends, it is ready to finish
    await store.record_outcomes("w1", [succeeded(in_flight)], NOW)
    needing = dict(await store.batches_needing_work(NOW))
    assert needing[cancel_leased] is BatchStatus.CANCELLING
    assert not_due in dict(await store.batches_needing_work(NOW + 1))


async def test_claim_batch_lease(store: SqlStore, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(start=False)

    assert await store.claim_batch(batch_id, "w1", NOW, 10)
    assert not await store.claim_batch(batch_id, "w2", NOW + 5, 10)
    assert await store.claim_batch(batch_id, "w1", NOW + 5, 10)  # the holder renews
    assert not await store.claim_batch(batch_id, "w2", NOW + 14.9, 10)
    assert await store.claim_batch(batch_id, "w2", NOW + 15.1, 10)  # w1's lease ran out
    assert not await store.claim_batch(batch_id, "w1", NOW + 16, 10)
    row = await batch_row(store, batch_id)
    assert (row.lease_owner, row.lease_expires_at) == ("w2", NOW + 25.1)
    assert not await store.claim_batch("batch_unknown", "w1", NOW, 10)


async def test_concurrent_claim_batch_has_one_winner(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(start=False)
    workers = [f"w{n}" for n in range(6)]

    won = await asyncio.gather(*(store.claim_batch(batch_id, w, NOW, 10) for w in workers))

    assert sum(won) == 1
    assert (await batch_row(store, batch_id)).lease_owner == workers[won.index(True)]


async def test_finish_batch_writes_files_counts_and_status_together(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    good, bad = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(good, input_tokens=7), failed(bad)], NOW)
    assert await store.set_batch_status(
        batch_id,
        expected=[BatchStatus.IN_PROGRESS],
        status=BatchStatus.FINALIZING,
        finalizing_at=NOW,
        finish_as=BatchStatus.COMPLETED.value,
    )
    assert await store.claim_batch(batch_id, "w1", NOW, 30)
    output = new_file(purpose="batch_output", id=f"file-out-{batch_id}", expires_at=NOW + DAY)
    error = new_file(purpose="batch_output", id=f"file-err-{batch_id}", expires_at=NOW + DAY)
    counts = RequestCounts(total=2, succeeded=1, failed=1)
    usage = Usage(input_tokens=7)

    async def finish(expected: BatchStatus) -> bool:
        return await store.finish_batch(
            batch_id,
            expected=expected,
            status=BatchStatus.COMPLETED,
            now=NOW + 1,
            outputs=[(output, "blob/out"), (error, "blob/err")],
            counts=counts,
            usage=usage,
            values={
                "completed_at": NOW + 1,
                "output_file_id": output.id,
                "error_file_id": error.id,
            },
        )

    assert not await finish(BatchStatus.IN_PROGRESS)
    assert await store.get_file(OWNER, output.id, NOW) is None
    assert await status_of(store, batch_id) is BatchStatus.FINALIZING

    assert await finish(BatchStatus.FINALIZING)
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.COMPLETED
    assert (batch.completed_at, batch.finalizing_at) == (NOW + 1, NOW)
    assert (batch.output_file_id, batch.error_file_id) == (output.id, error.id)
    assert batch.counts == counts
    assert batch.usage == usage
    assert await store.get_file(OWNER, output.id, NOW) == output
    assert await store.file_blob_key(error.id) == "blob/err"
    row = await batch_row(store, batch_id)
    assert (row.lease_owner, row.lease_expires_at) == (None, None)

    assert not await finish(BatchStatus.FINALIZING)  # a second finalizer loses


async def test_finish_batch_is_all_or_nothing(store: SqlStore, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=0)
    assert await store.set_batch_status(
        batch_id, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FINALIZING
    )
    output = new_file(purpose="batch_output")

    with pytest.raises(IntegrityError):  # the second insert of the same id fails
        await store.finish_batch(
            batch_id,
            expected=BatchStatus.FINALIZING,
            status=BatchStatus.COMPLETED,
            now=NOW,
            outputs=[(output, "blob/a"), (output, "blob/b")],
            counts=RequestCounts(total=5, succeeded=5),
            usage=Usage(),
            values={"completed_at": NOW},
        )

    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None
    assert batch.status is BatchStatus.FINALIZING and batch.completed_at is None
    assert batch.counts.succeeded == 0
    assert await store.get_file(OWNER, output.id, NOW) is None


async def test_concurrent_finish_batch_has_one_winner(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=0)
    assert await store.set_batch_status(
        batch_id, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FINALIZING
    )
    output = new_file(purpose="batch_output")

    async def finish(n: int) -> bool:
        return await store.finish_batch(
            batch_id,
            expected=BatchStatus.FINALIZING,
            status=BatchStatus.COMPLETED,
            now=NOW,
            outputs=[(output, f"blob/{n}")],
            counts=RequestCounts(total=n),
            usage=Usage(),
            values={"completed_at": NOW, "output_file_id": output.id},
        )

    won = await asyncio.gather(*(finish(n) for n in range(1, 5)))

    assert sum(won) == 1
    winner = won.index(True) + 1
    assert (await fetch(store, batch_id)).counts.total == winner
    assert await store.file_blob_key(output.id) == f"blob/{winner}"


async def test_item_summary_counts_states_and_sums_tokens_of_successes_only(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=6)
    first, second, bad, again = await claim(store, "w1", limit=4)
    await store.record_outcomes(
        "w1",
        [
            succeeded(first, input_tokens=10, cached_tokens=2, output_tokens=5, reasoning_tokens=1),
            succeeded(second, input_tokens=20, output_tokens=7),
            failed(bad, input_tokens=1000, output_tokens=1000),
            retry(again, NOW + 5),
        ],
        NOW,
    )

    counts, usage = await store.item_summary(batch_id)
    assert counts == RequestCounts(total=6, processing=3, succeeded=2, failed=1)
    assert usage == Usage(input_tokens=30, cached_tokens=2, output_tokens=12, reasoning_tokens=1)

    assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    counts, _ = await store.item_summary(batch_id)
    assert counts == RequestCounts(total=6, succeeded=2, failed=1, cancelled=3)

    expiring = await make_batch(items=2)
    assert await store.expire_batch(expiring, NOW)
    assert await store.item_summary(expiring) == (RequestCounts(total=2, expired=2), Usage())
    assert await store.item_summary("batch_unknown") == (RequestCounts(), Usage())


async def test_item_results_yields_every_line_in_input_order_across_pages(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    lines = new_items(2500)
    random.Random(7).shuffle(lines)  # stored out of order: results follow the line number
    batch_id = await make_batch(lines)
    other = await make_batch(items=3)
    items = await claim(store, "w1", limit=5000)
    assert len(items) == 2503
    outcomes = [succeeded(i) if i.line % 3 else failed(i) for i in items if i.batch_id == batch_id]
    await store.record_outcomes("w1", outcomes, NOW)

    results = [row async for row in store.item_results(batch_id)]

    assert [r.line for r in results] == list(range(1, 2501))
    assert [r.custom_id for r in results] == [f"req-{n}" for n in range(1, 2501)]
    for row in results[:6]:
        if row.line % 3:
            assert row.state is ItemState.SUCCEEDED and row.status_code == 200
            assert row.response == b'{"answer": "ok"}' and row.error_code is None
        else:
            assert row.state is ItemState.FAILED and row.error_code == "invalid_request"
            assert row.error_message == "bad request"
    assert [r.line async for r in store.item_results(other)] == [1, 2, 3]


# -- idle checks ----------------------------------------------------------------------------


async def test_has_work(store: SqlStore, make_batch: MakeBatch) -> None:
    assert not await store.has_work()
    failed_batch = await make_batch(start=False)
    assert await store.has_work()  # validating
    assert await store.set_batch_status(
        failed_batch, expected=[BatchStatus.VALIDATING], status=BatchStatus.FAILED
    )
    assert not await store.has_work()

    batch_id = await make_batch(items=1)
    assert await store.has_work()  # in progress
    assert await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    assert await store.has_work()  # cancelling
    assert await store.set_batch_status(
        batch_id, expected=[BatchStatus.CANCELLING], status=BatchStatus.CANCELLED
    )
    assert not await store.has_work()

    finalizing = await make_batch(items=0)
    assert await store.expire_batch(finalizing, NOW)
    assert await store.has_work()  # finalizing


async def test_has_active_items(store: SqlStore, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=2)
    other = await make_batch(items=1)
    assert await store.has_active_items(batch_id)  # pending

    items = [i for i in await claim(store, "w1") if i.batch_id == batch_id]
    assert await store.has_active_items(batch_id)  # leased
    await store.record_outcomes("w1", [succeeded(items[0])], NOW)
    assert await store.has_active_items(batch_id)
    await store.record_outcomes("w1", [failed(items[1])], NOW)
    assert not await store.has_active_items(batch_id)
    assert await store.has_active_items(other)
    assert not await store.has_active_items("batch_unknown")


async def test_next_retry_at(store: SqlStore, make_batch: MakeBatch) -> None:
    assert await store.next_retry_at(NOW) is None
    await make_batch(items=3)
    assert await store.next_retry_at(NOW) is None  # never tried: runnable now, not waiting

    a, b, c = await claim(store, "w1")
    assert await store.next_retry_at(NOW) is None  # leased lines are not waiting
    await store.record_outcomes("w1", [retry(a, NOW + 5.5), retry(b, NOW + 3.25)], NOW)
    assert await store.next_retry_at(NOW) == NOW + 3.25
    await store.record_outcomes("w1", [succeeded(c)], NOW)
    assert await store.next_retry_at(NOW) == NOW + 3.25
    # once a retry is due it is runnable, no longer something to wait for
    assert await store.next_retry_at(NOW + 3.25) == NOW + 5.5
    assert await store.next_retry_at(NOW + 5.5) is None

    (again,) = await claim(store, "w1", now=NOW + 4)
    assert again.id == b.id
    assert await store.next_retry_at(NOW + 4) == NOW + 5.5
    await store.record_outcomes("w1", [succeeded(again)], NOW + 4)
    (last,) = await claim(store, "w1", now=NOW + 6)
    await store.record_outcomes("w1", [succeeded(last)], NOW + 6)
    assert await store.next_retry_at(NOW) is None


async def test_next_retry_at_ignores_lines_of_a_batch_still_validating(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    # intake stores lines chunk by chunk while the batch is still validating: none can run,
    # and an idle worker must not poll for them as if they were due
    await make_batch(items=3, start=False)
    assert await claim(store) == []

    assert await store.next_retry_at(NOW) is None


async def test_a_line_whose_worker_keeps_dying_fails_after_max_attempts(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    now = NOW
    for _ in range(3):  # claimed three times, each worker dies holding it
        await claim(store, "w1", now=now, lease=5)
        now += 6
        await store.release_expired_leases(now, max_attempts=3)
    rows = await item_rows(store, batch_id)
    assert [r.state for r in rows] == ["failed", "failed"]
    assert {r.error_code for r in rows} == {"worker_lost"}
    assert await claim(store, "w2", now=now) == []


async def test_lines_handed_back_unstarted_keep_their_attempts(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    items = await claim(store, "w1")
    assert [i.attempts for i in items] == [1, 1, 1]
    # the first was sent (its call was cut short), the others never left the queue
    assert await store.release_worker("w1", unstarted=[items[1].id, items[2].id]) == 3
    rows = await item_rows(store, batch_id)
    assert [(r.state, r.attempts) for r in rows] == [("pending", 1), ("pending", 0), ("pending", 0)]


async def test_fail_unrecorded_fails_a_held_line_without_a_log(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (item,) = await claim(store, "w1")
    assert not await store.fail_unrecorded("w2", item.id, "nope", NOW)  # not its line
    assert await store.fail_unrecorded("w1", item.id, "The result could not be stored.", NOW)
    (row,) = await item_rows(store, batch_id)
    assert (row.state, row.error_code, row.lease_owner) == ("failed", "result_not_recorded", None)


async def test_end_batch_ends_it_at_once_with_its_lines(
    store: SqlStore, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    items = await claim(store, "w1", limit=1)
    await store.record_outcomes("w1", [succeeded(items[0])], NOW)
    ended = await store.end_batch(
        batch_id,
        expected=BatchStatus.IN_PROGRESS,
        status=BatchStatus.FAILED,
        lines=ItemState.FAILED,
        values={"failed_at": NOW, "errors": [{"code": "internal_error", "message": "x"}]},
    )
    assert ended
    batch = await fetch(store, batch_id)
    assert batch.status is BatchStatus.FAILED
    assert (batch.counts.succeeded, batch.counts.failed, batch.counts.total) == (1, 2, 3)
    assert [e.code for e in batch.errors] == ["internal_error"]
    assert not await store.end_batch(
        batch_id,
        expected=BatchStatus.IN_PROGRESS,
        status=BatchStatus.FAILED,
        lines=None,
        values={},
    )
