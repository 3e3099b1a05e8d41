"""No poison state: a deleted batch, a result the database refuses, a batch whose steps keep
failing — each ends its own batch (or line) with a clear reason and never stops the others."""

from __future__ import annotations

import anthropic
import pytest
from sqlalchemy import func, insert, select

from batchway.core import clock
from batchway.store.tables import batch_items, request_logs
from tests.conftest import RunningGateway
from tests.helpers import chat_line, read_results, start_batch, unique


def _message_request(custom_id: str) -> dict:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "fake-ok",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"{unique()} {custom_id}"}],
        },
    }


def _max_line_id(gw: RunningGateway) -> int:
    async def read() -> int:
        async with gw.gateway.store.engine.connect() as conn:
            return int(await conn.scalar(select(func.max(batch_items.c.id))) or 0)

    return gw.run(read())


def test_a_deleted_message_batch_leaves_later_batches_alone(gw: RunningGateway):
    key = gw.create_key()
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    first = client.messages.batches.create(requests=[_message_request(f"a{i}") for i in range(3)])
    gw.drain()
    assert client.messages.batches.retrieve(first.id).processing_status == "ended"
    highest = _max_line_id(gw)
    client.messages.batches.delete(first.id)

    # the deleted lines' ids are never handed out again: their request logs still name them
    second = client.messages.batches.create(requests=[_message_request(f"b{i}") for i in range(3)])
    gw.drain()
    second = client.messages.batches.retrieve(second.id)
    assert second.processing_status == "ended"
    assert second.request_counts.succeeded == 3
    assert _max_line_id(gw) == highest + 3


def test_a_result_the_database_refuses_fails_its_line_alone(gw: RunningGateway):
    client = gw.client()
    start_batch(client, [chat_line("warm-up", prompt=unique())])
    gw.drain()
    poisoned_id = _max_line_id(gw) + 2  # a line of one of the next batches

    async def stale_log_row() -> None:
        # a request log that already names the line (as one left behind by a deleted
        # batch would): recording the line's own log row breaks the unique constraint
        async with gw.gateway.store.engine.begin() as conn:
            await conn.execute(
                insert(request_logs).values(
                    created_at_ms=clock.now() * 1000,
                    kind="batch",
                    key_id="key_gone",
                    model="fake-ok",
                    provider="fake",
                    endpoint="/v1/chat/completions",
                    item_id=poisoned_id,
                    status="succeeded",
                )
            )

    gw.run(stale_log_row())
    first = start_batch(client, [chat_line(f"p{i}", prompt=unique()) for i in range(4)])
    second = start_batch(client, [chat_line(f"o{i}", prompt=unique()) for i in range(4)])
    gw.drain()

    async def owner_of_line() -> tuple[str, str]:
        async with gw.gateway.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(batch_items.c.batch_id, batch_items.c.custom_id).where(
                        batch_items.c.id == poisoned_id
                    )
                )
            ).one()
            return row.batch_id, row.custom_id

    # batches are validated side by side: either may hold the line with that id
    poisoned_batch, poisoned_line = gw.run(owner_of_line())
    poisoned, other = (first, second) if poisoned_batch == first.id else (second, first)
    other = client.batches.retrieve(other.id)
    assert other.status == "completed"
    assert other.request_counts is not None and other.request_counts.completed == 4
    poisoned = client.batches.retrieve(poisoned.id)
    assert poisoned.status == "completed"
    assert poisoned.request_counts is not None
    assert (poisoned.request_counts.completed, poisoned.request_counts.failed) == (3, 1)
    [error] = read_results(client, poisoned.error_file_id)
    assert error.custom_id == poisoned_line
    assert error.error is not None and error.error.code == "result_not_recorded"
    assert len(read_results(client, poisoned.output_file_id)) == 3


@pytest.fixture
def gives_up_fast(make_gateway) -> RunningGateway:
    gateway: RunningGateway = make_gateway(worker={"max_step_failures": 3})
    return gateway


def _block_result_files(gw: RunningGateway, batch_id: str) -> None:
    """A folder where the batch's output file must go: every finalization fails."""
    from batchway.core.ids import result_file_id

    root = gw.gateway.blobs.root  # type: ignore[attr-defined]
    for kind in ("output", "error"):
        (root / result_file_id(batch_id, kind)).mkdir()


def test_a_batch_whose_finalization_keeps_failing_fails_alone(gives_up_fast: RunningGateway):
    gw = gives_up_fast
    client = gw.client()
    broken = start_batch(client, [chat_line(f"x{i}", prompt=unique()) for i in range(3)])
    _block_result_files(gw, broken.id)
    healthy = start_batch(client, [chat_line(f"h{i}", prompt=unique()) for i in range(3)])
    gw.drain()

    assert client.batches.retrieve(healthy.id).status == "completed"
    broken = client.batches.retrieve(broken.id)
    assert broken.status == "failed"
    assert broken.failed_at is not None
    assert broken.errors is not None and broken.errors.data is not None
    [error] = broken.errors.data
    assert error.code == "internal_error"
    assert "failed 3 times" in (error.message or "")
    assert broken.request_counts is not None and broken.request_counts.completed == 3


def test_a_cancelled_batch_ends_cancelled_even_when_its_files_cannot_be_written(
    gives_up_fast: RunningGateway,
):
    gw = gives_up_fast
    client = gw.client()
    batch = start_batch(client, [chat_line(f"c{i}", prompt=unique()) for i in range(3)])
    _block_result_files(gw, batch.id)
    client.batches.cancel(batch.id)
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None


def test_an_expiring_batch_ends_expired_even_when_its_files_cannot_be_written(
    gives_up_fast: RunningGateway,
):
    gw = gives_up_fast
    client = gw.client()
    batch = start_batch(client, [chat_line(f"e{i}", prompt=unique()) for i in range(3)])
    _block_result_files(gw, batch.id)

    async def window_over() -> None:
        from sqlalchemy import update

        from batchway.store.tables import batches

        async with gw.gateway.store.engine.begin() as conn:
            await conn.execute(update(batches).where(batches.c.id == batch.id).values(expires_at=0))

    gw.run(window_over())
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired"
    assert batch.expired_at is not None


def test_a_batch_whose_input_vanished_fails_with_a_reason(gives_up_fast: RunningGateway):
    gw = gives_up_fast
    client = gw.client()
    batch = start_batch(client, [chat_line("v0", prompt=unique())])
    for path in gw.gateway.blobs.root.iterdir():  # type: ignore[attr-defined]
        path.unlink()  # the disk lost the input file under the gateway
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == ["internal_error"]
    assert "could not be validated" in (batch.errors.data[0].message or "")
