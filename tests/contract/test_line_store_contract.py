"""The ``LineStore`` contract: a batch's lines stored, leased by workers, their results
recorded and read back, on every implementation (SQLite, PostgreSQL, memory).

What a line holds is seen through the port alone: ``item_results`` (state and result),
``leased_items`` (who holds it, attempts), ``item_summary`` (tokens), ``next_retry_at``
and the lease sweep (when it may run again, when its lease ends).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from batchway.core.models import BatchItem, RequestCounts, Usage
from batchway.core.ports import Store
from batchway.core.states import BatchStatus, ItemState
from tests.contract.conftest import DUPLICATE, MakeBatch
from tests.contract.factories import (
    NOW,
    PROVIDER,
    claim,
    failed,
    held,
    line_ids,
    new_items,
    results,
    retry,
    states,
    succeeded,
)

# -- storing lines --------------------------------------------------------------------------


async def test_lines_are_stored_and_cleared(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=0, start=False)
    assert not await store.has_items(batch_id)
    await store.insert_items(batch_id, [])
    await store.insert_items(batch_id, new_items(2))
    await store.insert_items(batch_id, new_items(1, first_line=3))
    assert await store.has_items(batch_id)
    assert [(r.line, r.custom_id, r.state) for r in await results(store, batch_id)] == [
        (1, "req-1", ItemState.PENDING),
        (2, "req-2", ItemState.PENDING),
        (3, "req-3", ItemState.PENDING),
    ]

    await store.clear_items(batch_id)
    assert not await store.has_items(batch_id)
    assert not await store.has_items("batch_unknown")


async def test_a_line_number_is_stored_once_per_batch(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=2, start=False)
    other = await make_batch(items=0, start=False)
    with pytest.raises(DUPLICATE):
        await store.insert_items(batch_id, new_items(2, first_line=2))  # 2 again, then 3
    assert [r.line for r in await results(store, batch_id)] == [1, 2]
    await store.insert_items(other, new_items(2))  # the same numbers in another batch
    assert [r.line for r in await results(store, other)] == [1, 2]


async def test_line_ids_are_never_handed_out_again(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=2, start=False)
    first = await line_ids(store, batch_id)
    await store.clear_items(batch_id)
    await store.insert_items(batch_id, new_items(2))
    again = await line_ids(store, batch_id)
    assert not set(first) & set(again)
    assert min(int(i) for i in again) > max(int(i) for i in first)


async def test_line_counts_cover_every_batch(store: Store, make_batch: MakeBatch) -> None:
    assert await store.line_counts() == {}
    await make_batch(items=3)
    cancelled = await make_batch(items=1)
    (first, second, _, _) = await claim(store, "w1", limit=4)
    await store.record_outcomes("w1", [succeeded(first), failed(second)], NOW)
    await claim(store, "w1")  # nothing left to claim: the fourth line was already taken
    assert await store.cancel_batch(cancelled, expected=BatchStatus.IN_PROGRESS, now=NOW)

    assert await store.line_counts() == {"succeeded": 1, "failed": 1, "leased": 2}


# -- claiming lines -------------------------------------------------------------------------


async def test_claim_items_takes_lines_in_order_and_counts_the_attempt(
    store: Store, make_batch: MakeBatch
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
    assert (first.model, first.owner) == ("gpt-4o", "key_owner")

    assert await states(store, batch_id) == [ItemState.LEASED] * 3 + [ItemState.PENDING] * 2
    assert await held(store, "w1", batch_id) == {i.id: i for i in items}

    rest = await claim(store, "w2", limit=3)
    assert [i.line for i in rest] == [4, 5]
    assert [i.attempts for i in rest] == [1, 1]  # no attempt counted while they waited
    assert await claim(store, "w3") == []
    # every lease runs until NOW + 30, and no longer
    assert await store.release_expired_leases(NOW + 30) == 0
    assert await store.release_expired_leases(NOW + 30.5) == 5


async def test_claim_items_only_takes_lines_of_batches_in_progress(
    store: Store, make_batch: MakeBatch
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
    store: Store, make_batch: MakeBatch
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


async def test_lines_for_a_native_batch_api_are_claimed_apart(
    store: Store, make_batch: MakeBatch
) -> None:
    lines = [
        *new_items(2, provider="native", model="gpt-4o"),
        *new_items(1, provider="native", first_line=3, model="gpt-4o-mini"),
        *new_items(1, provider="calls", first_line=4),
    ]
    await make_batch(lines, native=("native",))

    assert await claim(store, provider="native") == []  # not lines the gateway runs itself
    picked = await store.claim_items(
        "native:up_1",
        "native",
        10,
        NOW,
        30,
        execute=False,
        model="gpt-4o-mini",
        endpoint="/v1/chat/completions",
    )
    assert [i.line for i in picked] == [3]
    assert (
        await store.claim_items(
            "native:up_2", "native", 10, NOW, 30, execute=False, model="gpt-4o", endpoint="/v1/x"
        )
        == []
    )
    rest = await store.claim_items("native:up_3", "native", 10, NOW, 30, execute=False)
    assert [i.line for i in rest] == [1, 2]
    assert [i.line for i in await claim(store, provider="calls")] == [4]


async def test_claim_items_respects_not_before(store: Store, make_batch: MakeBatch) -> None:
    await make_batch(items=1)
    (item,) = await claim(store, "w1", now=NOW)
    await store.record_outcomes("w1", [retry(item, NOW + 10)], NOW)

    assert await claim(store, "w1", now=NOW + 9.9) == []
    (again,) = await claim(store, "w1", now=NOW + 10)  # due exactly at not_before
    assert again.id == item.id
    assert again.attempts == 2


async def test_attempts_count_every_claim_including_after_a_lost_lease(
    store: Store, make_batch: MakeBatch
) -> None:
    await make_batch(items=1)
    (item,) = await claim(store, "w1", now=NOW, lease=5)
    assert await store.release_expired_leases(NOW + 6) == 1
    (again,) = await claim(store, "w2", now=NOW + 6, lease=5)
    assert again.id == item.id and again.attempts == 2


async def test_a_claimed_line_is_not_claimed_again_while_its_lease_is_live(
    store: Store, make_batch: MakeBatch
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
    store: Store, make_batch: MakeBatch
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
    store: Store, make_batch: MakeBatch
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

    results_ = await asyncio.gather(*(claimer(w) for w in workers))
    # a claimer may stop while the last lines are locked by others: sweep up what is left
    results_.append(await claim(store, "sweeper"))
    workers.append("sweeper")

    all_ids = [i.id for items in results_ for i in items]
    assert len(all_ids) == len(set(all_ids)) == 300
    assert sum(1 for items in results_ if items) > 1  # the claims did interleave
    for batch_id in batch_ids:
        assert set(await states(store, batch_id)) == {ItemState.LEASED}
    every_id = [i for batch_id in batch_ids for i in await line_ids(store, batch_id)]
    for worker, items in zip(workers, results_, strict=True):
        holding = await store.leased_items(worker, every_id, bodies=False)
        assert set(holding) == {i.id for i in items}
        assert {i.attempts for i in holding.values()} <= {1}


async def test_leased_items_are_the_lines_a_worker_holds(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    mine = await claim(store, "w1", limit=2)
    (theirs,) = await claim(store, "w2")
    ids = await line_ids(store, batch_id)

    with_bodies = await store.leased_items("w1", ids, bodies=True)
    assert with_bodies == {i.id: i for i in mine}
    without = await store.leased_items("w1", ids, bodies=False)
    assert {i: item.body for i, item in without.items()} == {i.id: b"" for i in mine}
    assert without[mine[0].id].attempts == 1 and without[mine[0].id].owner == "key_owner"
    assert await store.leased_items("w1", [theirs.id], bodies=True) == {}
    assert await store.leased_items("w1", [], bodies=True) == {}
    await store.record_outcomes("w1", [succeeded(mine[0])], NOW)
    assert list(await store.leased_items("w1", ids, bodies=False)) == [mine[1].id]


# -- recording outcomes ---------------------------------------------------------------------


async def test_record_outcomes_writes_state_result_and_usage(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    good, bad, again = await claim(store, "w1")

    written = await store.record_outcomes(
        "w1",
        [
            succeeded(good, "hi", input_tokens=10, cached_tokens=4, output_tokens=5),
            failed(bad),
            retry(again, NOW + 60),
        ],
        NOW + 2,
    )
    assert {r.batch_id for r in written} == {batch_id} and len(written) == 3

    rows = {row.line: row for row in await results(store, batch_id)}
    assert rows[1].state is ItemState.SUCCEEDED
    assert (rows[1].status_code, rows[1].response) == (200, b'{"answer": "hi"}')
    assert rows[1].request_id == f"req_{good.id}"
    assert rows[2].state is ItemState.FAILED
    assert (rows[2].error_code, rows[2].error_message) == ("invalid_request", "bad request")
    assert (rows[2].status_code, rows[2].response) == (400, b'{"error": "bad"}')
    assert rows[3].state is ItemState.PENDING
    assert (rows[3].status_code, rows[3].error_code) == (429, "rate_limited")
    assert await store.next_retry_at(NOW + 2) == NOW + 60
    _, usage = await store.item_summary(batch_id)
    assert usage == Usage(input_tokens=10, cached_tokens=4, output_tokens=5)
    assert await held(store, "w1", batch_id) == {}  # every lease went with its result


async def test_record_outcomes_returns_what_it_wrote(store: Store, make_batch: MakeBatch) -> None:
    one = await make_batch(items=2)
    two = await make_batch(items=1)
    items = await claim(store, "w1")

    assert await store.record_outcomes("w1", [], NOW) == []
    written = await store.record_outcomes("w1", [succeeded(i) for i in items], NOW)
    assert {r.batch_id for r in written} == {one, two}
    assert await store.record_outcomes("w1", [succeeded(i) for i in items], NOW) == []


async def test_an_outcome_from_a_worker_that_lost_its_lease_is_ignored(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (lost,) = await claim(store, "slow", now=NOW, lease=5)
    assert await store.release_expired_leases(NOW + 6) == 1
    (taken,) = await claim(store, "fast", now=NOW + 6, lease=5)

    # the old holder reports while the new one still works: nothing changes
    stale = await store.record_outcomes(
        "slow", [succeeded(lost, "stale", output_tokens=99)], NOW + 7
    )
    assert stale == []
    (row,) = await results(store, batch_id)
    assert (row.state, row.response) == (ItemState.LEASED, None)
    assert list(await held(store, "fast", batch_id)) == [taken.id]

    await store.record_outcomes("fast", [succeeded(taken, "fresh", output_tokens=3)], NOW + 8)
    # ... and reporting again afterwards does not overwrite the new holder's result
    await store.record_outcomes("slow", [failed(lost)], NOW + 9)
    await store.record_outcomes("slow", [succeeded(lost, "stale", output_tokens=99)], NOW + 9)

    (row,) = await results(store, batch_id)
    assert row.state is ItemState.SUCCEEDED
    assert row.response == b'{"answer": "fresh"}'
    counts, usage = await store.item_summary(batch_id)
    assert counts == RequestCounts(total=1, succeeded=1)
    assert usage == Usage(output_tokens=3)


async def test_a_terminal_line_cannot_be_recorded_twice(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (item,) = await claim(store, "w1")
    await store.record_outcomes("w1", [succeeded(item, "first")], NOW)
    assert await store.record_outcomes("w1", [failed(item)], NOW + 1) == []

    (row,) = await results(store, batch_id)
    assert (row.state, row.response) == (ItemState.SUCCEEDED, b'{"answer": "first"}')


async def test_fail_unrecorded_fails_a_held_line_without_a_log(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=1)
    (item,) = await claim(store, "w1")
    assert not await store.fail_unrecorded("w2", item.id, "nope", NOW)  # not its line
    assert await store.fail_unrecorded("w1", item.id, "The result could not be stored.", NOW)
    (row,) = await results(store, batch_id)
    assert (row.state, row.error_code) == (ItemState.FAILED, "result_not_recorded")
    assert (row.error_message, row.status_code, row.response) == (
        "The result could not be stored.",
        None,
        None,
    )
    assert await held(store, "w1", batch_id) == {}
    assert not await store.fail_unrecorded("w1", item.id, "again", NOW)


# -- leases ---------------------------------------------------------------------------------


async def test_release_expired_leases_hands_back_only_expired_leases(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=4)
    short = await claim(store, "short", limit=2, now=NOW, lease=5)
    await claim(store, "long", limit=2, now=NOW, lease=50)

    assert await store.release_expired_leases(NOW + 5) == 0  # a lease ending now is still held
    assert await store.release_expired_leases(NOW + 10) == 2
    assert await held(store, "short", batch_id) == {}
    assert len(await held(store, "long", batch_id)) == 2
    assert await states(store, batch_id) == [ItemState.PENDING] * 2 + [ItemState.LEASED] * 2
    assert await store.release_expired_leases(NOW + 10) == 0
    again = await claim(store, "other", now=NOW + 10)
    assert sorted(i.id for i in again) == sorted(i.id for i in short)


async def test_extend_leases_keeps_a_workers_leases_alive(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    (kept,) = await claim(store, "keeper", limit=1, now=NOW, lease=5)
    await claim(store, "quitter", limit=1, now=NOW, lease=5)
    assert await store.claim_batch(batch_id, "keeper", NOW, 5)

    await store.extend_leases("keeper", NOW + 100)

    assert await store.release_expired_leases(NOW + 10) == 1  # only the quitter's line
    assert await states(store, batch_id) == [ItemState.LEASED, ItemState.PENDING]
    assert list(await held(store, "keeper", batch_id)) == [kept.id]
    (retaken,) = await claim(store, "other", now=NOW + 10, lease=1000)
    assert retaken.line == 2
    # the batch lease is extended too, to the same time
    assert not await store.claim_batch(batch_id, "other", NOW + 10, 5)
    assert not await store.claim_batch(batch_id, "other", NOW + 100, 5)
    assert await store.release_expired_leases(NOW + 100) == 0
    assert await store.release_expired_leases(NOW + 100.5) == 1
    assert await store.claim_batch(batch_id, "other", NOW + 100.5, 5)


async def test_a_line_whose_worker_keeps_dying_fails_after_max_attempts(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    now = NOW
    for _ in range(3):  # claimed three times, each worker dies holding it
        await claim(store, "w1", now=now, lease=5)
        now += 6
        await store.release_expired_leases(now, max_attempts=3)
    rows = await results(store, batch_id)
    assert [r.state for r in rows] == [ItemState.FAILED, ItemState.FAILED]
    assert {r.error_code for r in rows} == {"worker_lost"}
    assert {r.error_message for r in rows} == {
        "The worker running this line stopped during each of its 3 attempts; it was not "
        "tried again."
    }
    assert await claim(store, "w2", now=now) == []


async def test_lines_handed_back_unstarted_keep_their_attempts(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3)
    items = await claim(store, "w1")
    assert [i.attempts for i in items] == [1, 1, 1]
    # the first was sent (its call was cut short), the others never left the queue
    assert await store.release_worker("w1", unstarted=[items[1].id, items[2].id]) == 3
    assert await states(store, batch_id) == [ItemState.PENDING] * 3
    again = await claim(store, "w2")
    assert [(i.line, i.attempts) for i in again] == [(1, 2), (2, 1), (3, 1)]


async def test_release_worker_hands_back_only_its_own_lines(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    (mine,) = await claim(store, "w1", limit=1)
    (theirs,) = await claim(store, "w2", limit=1)

    # naming another worker's line as unstarted does not take its attempt back
    assert await store.release_worker("w1", unstarted=[theirs.id]) == 1
    assert list(await held(store, "w2", batch_id)) == [theirs.id]
    (again,) = await claim(store, "w3")
    assert (again.id, again.attempts) == (mine.id, 2)


# -- cancelling, settling, summing up -------------------------------------------------------


async def test_settle_unfinished_ends_only_pending_lines(
    store: Store, make_batch: MakeBatch
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

    assert await states(store, batch_id) == [
        ItemState.SUCCEEDED,
        ItemState.CANCELLED,
        ItemState.LEASED,
        ItemState.CANCELLED,
    ]
    assert list(await held(store, "w1", batch_id)) == [running.id]


async def test_item_summary_counts_states_and_sums_tokens_of_successes_only(
    store: Store, make_batch: MakeBatch
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
    store: Store, make_batch: MakeBatch
) -> None:
    lines = new_items(2500)
    random.Random(7).shuffle(lines)  # stored out of order: results follow the line number
    batch_id = await make_batch(lines)
    other = await make_batch(items=3)
    items = await claim(store, "w1", limit=5000)
    assert len(items) == 2503
    outcomes = [succeeded(i) if i.line % 3 else failed(i) for i in items if i.batch_id == batch_id]
    await store.record_outcomes("w1", outcomes, NOW)

    rows = await results(store, batch_id)

    assert [r.line for r in rows] == list(range(1, 2501))
    assert [r.custom_id for r in rows] == [f"req-{n}" for n in range(1, 2501)]
    for row in rows[:6]:
        if row.line % 3:
            assert row.state is ItemState.SUCCEEDED and row.status_code == 200
            assert row.response == b'{"answer": "ok"}' and row.error_code is None
        else:
            assert row.state is ItemState.FAILED and row.error_code == "invalid_request"
            assert row.error_message == "bad request"
    assert [r.line async for r in store.item_results(other)] == [1, 2, 3]
    assert await results(store, "batch_unknown") == []


# -- idle checks ----------------------------------------------------------------------------


async def test_has_work(store: Store, make_batch: MakeBatch) -> None:
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


async def test_has_active_items(store: Store, make_batch: MakeBatch) -> None:
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


async def test_next_retry_at(store: Store, make_batch: MakeBatch) -> None:
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
    store: Store, make_batch: MakeBatch
) -> None:
    # intake stores lines chunk by chunk while the batch is still validating: none can run,
    # and an idle worker must not poll for them as if they were due
    await make_batch(items=3, start=False)
    assert await claim(store) == []

    assert await store.next_retry_at(NOW) is None


async def test_a_store_is_healthy(store: Store) -> None:
    assert await store.healthy()
