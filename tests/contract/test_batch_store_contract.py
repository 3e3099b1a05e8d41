"""The ``BatchStore`` contract: batches as clients see them and as they move through their
lifecycle (compare-and-set status changes, batch leases, finishing), on every
implementation (SQLite, PostgreSQL, memory)."""

from __future__ import annotations

import asyncio

import pytest

from batchway.core.models import RequestCounts, Usage
from batchway.core.ports import Store
from batchway.core.states import BatchStatus, ItemState
from tests.contract.conftest import DUPLICATE, MakeBatch
from tests.contract.factories import (
    DAY,
    NOW,
    OTHER,
    OWNER,
    claim,
    failed,
    fetch,
    held,
    new_batch,
    new_file,
    results,
    retry,
    states,
    status_of,
    succeeded,
)

# -- reading batches ------------------------------------------------------------------------


async def test_batch_round_trip(store: Store) -> None:
    batch = new_batch(
        model="gpt-4o",
        metadata={"project": "alpha", "run": "7"},
        output_expires_after=3600,
        completion_window="24h",
        shape="anthropic",
    )
    await store.create_batch(batch)

    assert await store.get_batch(OWNER, batch.id) == batch
    assert await store.get_batch(None, batch.id) == batch
    bare = new_batch()
    await store.create_batch(bare)
    assert await store.get_batch(OWNER, bare.id) == bare


async def test_a_batch_id_is_unique(store: Store) -> None:
    batch = new_batch()
    await store.create_batch(batch)
    with pytest.raises(DUPLICATE):
        await store.create_batch(new_batch(id=batch.id, model="another"))
    assert await store.get_batch(None, batch.id) == batch


async def test_get_batch_with_the_wrong_owner_returns_none(store: Store) -> None:
    batch = new_batch(OWNER)
    await store.create_batch(batch)

    assert await store.get_batch(OTHER, batch.id) is None
    assert await store.get_batch(OWNER, "batch_unknown") is None


async def test_list_batches_newest_first_with_cursor(store: Store, make_batch: MakeBatch) -> None:
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


async def test_list_batches_before_pages_to_newer_ones(store: Store, make_batch: MakeBatch) -> None:
    ids = [await make_batch(start=False) for _ in range(5)]  # oldest first

    newer = await store.list_batches(OWNER, limit=2, after=None, before=ids[1])
    assert [b.id for b in newer.items] == [ids[3], ids[2]] and newer.has_more
    newest = await store.list_batches(OWNER, limit=2, after=None, before=ids[3])
    assert [b.id for b in newest.items] == [ids[4]] and not newest.has_more
    # ``after`` wins when both are given
    both = await store.list_batches(OWNER, limit=10, after=ids[2], before=ids[1])
    assert [b.id for b in both.items] == [ids[1], ids[0]]


async def test_live_counts_come_from_the_lines_while_in_progress(
    store: Store, make_batch: MakeBatch
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
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=3, start=False)  # lines stored, not yet started
    batch = await store.get_batch(OWNER, batch_id)
    assert batch is not None and batch.counts == RequestCounts()


async def test_set_batch_status_is_a_compare_and_set_writing_its_values(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(start=False)
    errors = [{"code": "bad_line", "message": "no", "line": 3, "param": "body"}]

    assert not await store.set_batch_status(
        batch_id, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FAILED, failed_at=NOW
    )
    assert await store.set_batch_status(
        batch_id,
        expected=[BatchStatus.IN_PROGRESS, BatchStatus.VALIDATING],
        status=BatchStatus.FAILED,
        failed_at=NOW,
        errors=errors,
    )
    batch = await fetch(store, batch_id)
    assert (batch.status, batch.failed_at) == (BatchStatus.FAILED, NOW)
    assert [(e.code, e.message, e.line, e.param) for e in batch.errors] == [
        ("bad_line", "no", 3, "body")
    ]
    assert not await store.set_batch_status(
        "batch_unknown", expected=list(BatchStatus), status=BatchStatus.FAILED
    )


async def test_delete_batch_takes_its_lines_and_result_files(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)
    keep = await make_batch(items=1)
    output, error = new_file(purpose="batch_output"), new_file(purpose="batch_output")
    await store.create_file(output, "blob/out")
    await store.create_file(error, "blob/err")
    assert await store.set_batch_status(
        batch_id,
        expected=[BatchStatus.IN_PROGRESS],
        status=BatchStatus.COMPLETED,
        output_file_id=output.id,
        error_file_id=error.id,
    )

    assert sorted(await store.delete_batch(batch_id)) == ["blob/err", "blob/out"]
    assert await store.get_batch(None, batch_id) is None
    assert not await store.has_items(batch_id)
    assert await store.file_blob_key(output.id) is None
    assert await store.delete_batch(batch_id) == []
    assert len(await results(store, keep)) == 1


# -- cancelling and expiring ----------------------------------------------------------------


async def test_cancel_batch_cancels_pending_lines_and_leaves_leased_ones(
    store: Store, make_batch: MakeBatch
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
    assert [(r.line, r.state) for r in await results(store, batch_id)] == [
        (1, ItemState.LEASED),
        (2, ItemState.CANCELLED),
        (3, ItemState.CANCELLED),
        (4, ItemState.CANCELLED),
    ]
    assert list(await held(store, "w1", batch_id)) == [running.id]

    assert not await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW + 2)
    assert (await fetch(store, batch_id)).cancelling_at == NOW + 1


async def test_cancel_a_validating_batch(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(start=False)
    assert not await store.cancel_batch(batch_id, expected=BatchStatus.IN_PROGRESS, now=NOW)
    assert await store.cancel_batch(batch_id, expected=BatchStatus.VALIDATING, now=NOW)
    assert await status_of(store, batch_id) is BatchStatus.CANCELLING
    assert not await store.cancel_batch("batch_unknown", expected=BatchStatus.VALIDATING, now=NOW)


async def test_expire_batch_expires_pending_lines_and_moves_to_finalizing(
    store: Store, make_batch: MakeBatch
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
    assert await store.finish_as(validating) is None
    assert await store.finish_as("batch_unknown") is None


async def test_stopped_batches_say_how_their_unstarted_lines_end(
    store: Store, make_batch: MakeBatch
) -> None:
    cancelling = await make_batch(items=1)
    expiring = await make_batch(items=1)
    running = await make_batch(items=1)
    finalizing = await make_batch(items=0)
    assert await store.cancel_batch(cancelling, expected=BatchStatus.IN_PROGRESS, now=NOW)
    assert await store.expire_batch(expiring, NOW)
    assert await store.set_batch_status(
        finalizing,
        expected=[BatchStatus.IN_PROGRESS],
        status=BatchStatus.FINALIZING,
        finish_as=BatchStatus.COMPLETED.value,
    )

    stopped = await store.stopped_batches([cancelling, expiring, running, finalizing, "batch_x"])

    assert stopped == {cancelling: ItemState.CANCELLED, expiring: ItemState.EXPIRED}
    assert await store.stopped_batches([]) == {}


# -- batches needing work, batch leases -----------------------------------------------------


async def test_batches_needing_work(store: Store, make_batch: MakeBatch) -> None:
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


async def test_claim_batch_lease(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(start=False)

    assert await store.claim_batch(batch_id, "w1", NOW, 10)
    assert not await store.claim_batch(batch_id, "w2", NOW + 5, 10)
    assert await store.claim_batch(batch_id, "w1", NOW + 5, 10)  # the holder renews
    assert not await store.claim_batch(batch_id, "w2", NOW + 14.9, 10)
    assert await store.claim_batch(batch_id, "w2", NOW + 15.1, 10)  # w1's lease ran out
    assert not await store.claim_batch(batch_id, "w1", NOW + 16, 10)
    # w2 holds it until NOW + 25.1, and no longer
    assert not await store.claim_batch(batch_id, "w3", NOW + 25, 10)
    assert await store.claim_batch(batch_id, "w3", NOW + 25.2, 10)
    assert not await store.claim_batch("batch_unknown", "w1", NOW, 10)


async def test_concurrent_claim_batch_has_one_winner(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(start=False)
    workers = [f"w{n}" for n in range(6)]

    won = await asyncio.gather(*(store.claim_batch(batch_id, w, NOW, 10) for w in workers))

    assert sum(won) == 1
    winner = workers[won.index(True)]
    assert all(
        [await store.claim_batch(batch_id, w, NOW + 1, 10) is (w == winner) for w in workers]
    )


async def test_release_worker_hands_back_its_batches(store: Store, make_batch: MakeBatch) -> None:
    mine = await make_batch(start=False)
    theirs = await make_batch(start=False)
    assert await store.claim_batch(mine, "w1", NOW, 60)
    assert await store.claim_batch(theirs, "w2", NOW, 60)

    assert await store.release_worker("w1") == 0  # no lines held

    assert await store.claim_batch(mine, "w3", NOW + 1, 60)
    assert not await store.claim_batch(theirs, "w3", NOW + 1, 60)


# -- finishing ------------------------------------------------------------------------------


async def test_finish_batch_writes_files_counts_and_status_together(
    store: Store, make_batch: MakeBatch
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

    figures = await store.batch_figures([batch_id])
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
    assert await store.claim_batch(batch_id, "w2", NOW + 2, 30)  # w1's lease went with it
    assert await store.batch_figures([batch_id]) == figures  # kept as the lines said

    assert not await finish(BatchStatus.FINALIZING)  # a second finalizer loses


async def test_finish_batch_replaces_result_files_written_before(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=0)
    assert await store.set_batch_status(
        batch_id, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FINALIZING
    )
    output = new_file(purpose="batch_output")
    await store.create_file(output, "blob/from-a-finalizer-that-died")

    assert await store.finish_batch(
        batch_id,
        expected=BatchStatus.FINALIZING,
        status=BatchStatus.COMPLETED,
        now=NOW,
        outputs=[(output, "blob/final")],
        counts=RequestCounts(),
        usage=Usage(),
        values={"completed_at": NOW, "output_file_id": output.id},
    )
    assert await store.file_blob_key(output.id) == "blob/final"


async def test_finish_batch_is_all_or_nothing(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=0)
    assert await store.set_batch_status(
        batch_id, expected=[BatchStatus.IN_PROGRESS], status=BatchStatus.FINALIZING
    )
    output = new_file(purpose="batch_output")

    with pytest.raises(DUPLICATE):  # the second insert of the same id fails
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


async def test_concurrent_finish_batch_has_one_winner(store: Store, make_batch: MakeBatch) -> None:
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


# -- giving up on a batch -------------------------------------------------------------------


async def test_end_batch_ends_it_at_once_with_its_lines(
    store: Store, make_batch: MakeBatch
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


async def test_end_batch_without_lines_removes_them(store: Store, make_batch: MakeBatch) -> None:
    batch_id = await make_batch(items=3, start=False)  # half validated
    assert await store.end_batch(
        batch_id,
        expected=BatchStatus.VALIDATING,
        status=BatchStatus.FAILED,
        lines=None,
        values={"failed_at": NOW},
    )
    assert not await store.has_items(batch_id)
    batch = await fetch(store, batch_id)
    assert (batch.status, batch.failed_at, batch.counts) == (
        BatchStatus.FAILED,
        NOW,
        RequestCounts(),
    )


async def test_end_batch_with_a_stale_expectation_changes_nothing(
    store: Store, make_batch: MakeBatch
) -> None:
    batch_id = await make_batch(items=2)  # validated meanwhile by another worker
    (running,) = await claim(store, "w1", limit=1)

    assert not await store.end_batch(
        batch_id,
        expected=BatchStatus.VALIDATING,
        status=BatchStatus.FAILED,
        lines=None,
        values={"failed_at": NOW},
    )
    assert not await store.end_batch(
        batch_id,
        expected=BatchStatus.FINALIZING,
        status=BatchStatus.FAILED,
        lines=ItemState.FAILED,
        values={"failed_at": NOW},
    )

    assert await states(store, batch_id) == [ItemState.LEASED, ItemState.PENDING]
    assert list(await held(store, "w1", batch_id)) == [running.id]
    assert (await fetch(store, batch_id)).status is BatchStatus.IN_PROGRESS
