"""The batch engine driven against the in-memory stores: no SQL, no HTTP, no worker.

Each test plays the worker's part by hand (claim lines, record outcomes, advance the batch)
so that what the engine decides at each step is visible.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchway.config import BatchLimits, Config
from batchway.core import clock
from batchway.core.engine import BatchEngine, Step
from batchway.core.engine.lifecycle import Lifecycle
from batchway.core.models import ApiKey, Batch, ItemOutcome, StoredFile, Usage
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState
from batchway.dialects.openai.results import output_line
from batchway.errors import InvalidTransition
from batchway.testing.memory import MemoryBlobStore, MemoryStore

CHAT = "/v1/chat/completions"
OWNER = "key_engine"
WORKER = "worker-1"
CONFIG = Config.model_validate(
    {
        "providers": {"sim": {"kind": "simulated", "latency_ms": 0}},
        "models": {"team-chat": {"provider": "sim", "model": "upstream-chat"}},
    }
)


class FixedPricing:
    """A dollar per thousand output tokens, half at batch price."""

    record_bodies = True

    def price(
        self, model: str, provider: str, usage: Usage, native: bool
    ) -> tuple[float, str | None]:
        cost = usage.output_tokens / 1000
        return (cost / 2 if native else cost), "upstream-chat"


def line(custom_id: str, model: str = "team-chat") -> bytes:
    request = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": custom_id}]},
    }
    return orjson.dumps(request) + b"\n"


class Setup:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.blobs = MemoryBlobStore()
        self.engine = BatchEngine(
            store=self.store,
            blobs=self.blobs,
            router=Router(CONFIG),
            limits=BatchLimits(max_reported_errors=5),
            render=output_line,
            pricing=FixedPricing(),
        )
        self.files = 0

    async def batch(self, content: bytes, *, expires_in: int = 3600) -> str:
        if await self.store.get_key(OWNER) is None:
            key = ApiKey(id=OWNER, name="engine", key_hash="hash", created_at=clock.now())
            await self.store.create_key(key)
        self.files += 1
        file_id = f"file-{self.files}"
        writer = self.blobs.writer(file_id)
        await writer.write(content)
        size = await writer.commit()
        now = clock.now()
        await self.store.create_file(
            StoredFile(
                id=file_id,
                owner=OWNER,
                filename="in.jsonl",
                purpose="batch",
                bytes=size,
                created_at=now,
            ),
            file_id,
        )
        batch_id = f"batch_{self.files}"
        created = await self.store.create_batch(
            Batch(
                id=batch_id,
                owner=OWNER,
                endpoint=CHAT,
                input_file_id=file_id,
                completion_window="24h",
                status=BatchStatus.VALIDATING,
                created_at=now,
                expires_at=now + expires_in,
            )
        )
        assert created
        return batch_id

    async def get(self, batch_id: str) -> Batch:
        batch = await self.store.get_batch(None, batch_id)
        assert batch is not None
        return batch

    async def run_lines(self, answer: dict[str, Any] | None = None, limit: int = 100) -> int:
        """Claim and answer every runnable line (succeeded, or failed when answer is None)."""
        items = await self.engine.claim(WORKER, "sim", limit, 60)
        records = []
        for item in items:
            if answer is None:
                outcome = ItemOutcome(
                    item_id=item.id,
                    state=ItemState.FAILED,
                    status_code=400,
                    response=b'{"error":{"message":"no"}}',
                )
            else:
                outcome = ItemOutcome(
                    item_id=item.id,
                    state=ItemState.SUCCEEDED,
                    status_code=200,
                    response=orjson.dumps(answer),
                    usage=Usage(input_tokens=10, output_tokens=500),
                )
            records.append(self.engine.record(item, outcome))
        await self.store.record_outcomes(WORKER, records, clock.now_float())
        return len(items)

    async def file_lines(self, file_id: str | None) -> list[dict[str, Any]]:
        assert file_id is not None
        blob = await self.store.file_blob_key(file_id)
        assert blob is not None
        data = b"".join([chunk async for chunk in self.blobs.chunks(blob)])
        return [orjson.loads(raw) for raw in data.splitlines()]


@pytest.fixture
def setup() -> Setup:
    return Setup()


async def test_a_batch_runs_from_validation_to_completed_with_its_output_file(
    setup: Setup,
) -> None:
    batch_id = await setup.batch(line("a") + line("b") + line("c"))

    assert (
        await setup.engine.advance(batch_id, BatchStatus.VALIDATING, clock.now()) is Step.VALIDATED
    )
    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.IN_PROGRESS and batch.counts.total == 3
    assert batch.model == "team-chat"

    assert await setup.run_lines({"answer": 42}) == 3
    assert await setup.engine.advance(batch_id, BatchStatus.IN_PROGRESS, clock.now()) is Step.DONE

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.COMPLETED
    assert batch.counts.succeeded == 3 and batch.counts.failed == 0
    assert batch.usage.output_tokens == 1500
    assert batch.error_file_id is None
    output = await setup.file_lines(batch.output_file_id)
    assert [o["custom_id"] for o in output] == ["a", "b", "c"]
    assert all(o["response"]["body"] == {"answer": 42} for o in output)


async def test_records_are_priced_and_logged_before_the_store_sees_them(setup: Setup) -> None:
    batch_id = await setup.batch(line("a"))
    await setup.engine.validate(batch_id)
    (item,) = await setup.engine.claim(WORKER, "sim", 10, 60)
    usage = Usage(output_tokens=2000)
    ok = ItemOutcome(item_id=item.id, state=ItemState.SUCCEEDED, status_code=200, usage=usage)

    record = setup.engine.record(item, ok)
    native = setup.engine.record(
        item,
        ItemOutcome(
            item_id=item.id, state=ItemState.SUCCEEDED, status_code=200, usage=usage, native=True
        ),
    )
    retry = setup.engine.record(item, ItemOutcome(item_id=item.id, state=ItemState.PENDING))

    assert record.cost_usd == 2.0 and native.cost_usd == 1.0
    assert record.log is not None
    assert (record.log.kind, record.log.batch_id, record.log.custom_id) == ("batch", batch_id, "a")
    assert record.log.upstream_model == "upstream-chat" and record.log.key_id == OWNER
    assert record.log.request_body == item.body  # the pricing asks for bodies
    assert retry.log is None and retry.cost_usd == 0.0  # a retry is not a finished call


async def test_a_bad_file_fails_validation_with_every_line_named_and_nothing_stored(
    setup: Setup,
) -> None:
    batch_id = await setup.batch(line("a") + b"not json\n" + line("b", model="nope"))

    await setup.engine.validate(batch_id)

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.FAILED and batch.failed_at is not None
    assert [(e.code, e.line) for e in batch.errors] == [
        ("invalid_json_line", 2),
        ("model_not_found", 3),
    ]
    assert not await setup.store.has_items(batch_id)


async def test_an_input_file_deleted_before_validation_fails_the_batch(setup: Setup) -> None:
    batch_id = await setup.batch(line("a"))
    batch = await setup.get(batch_id)
    await setup.store.delete_file(OWNER, batch.input_file_id, clock.now())

    await setup.engine.validate(batch_id)

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.FAILED
    assert [e.code for e in batch.errors] == ["file_not_found"]


async def test_an_expired_batch_waits_for_lines_in_flight_then_ends_expired(
    setup: Setup,
) -> None:
    batch_id = await setup.batch(line("a") + line("b") + line("c"), expires_in=0)
    await setup.engine.validate(batch_id)
    (in_flight,) = await setup.engine.claim(WORKER, "sim", 1, 60)

    step = await setup.engine.advance(batch_id, BatchStatus.IN_PROGRESS, clock.now())

    assert step is Step.WAITING  # one line is still running
    assert (await setup.get(batch_id)).status is BatchStatus.FINALIZING
    done = ItemOutcome(item_id=in_flight.id, state=ItemState.SUCCEEDED, status_code=200)
    await setup.store.record_outcomes(
        WORKER, [setup.engine.record(in_flight, done)], clock.now_float()
    )
    assert await setup.engine.advance(batch_id, BatchStatus.FINALIZING, clock.now()) is Step.DONE

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.EXPIRED and batch.expired_at is not None
    assert (batch.counts.succeeded, batch.counts.expired) == (1, 2)
    errors = await setup.file_lines(batch.error_file_id)
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


async def test_a_batch_cancelled_before_it_was_read_ends_cancelled_with_every_line(
    setup: Setup,
) -> None:
    batch_id = await setup.batch(line("a") + line("b"))
    assert await setup.engine.lifecycle.cancel(await setup.get(batch_id), clock.now())

    assert await setup.engine.advance(batch_id, BatchStatus.CANCELLING, clock.now()) is Step.DONE

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.CANCELLED and batch.cancelled_at is not None
    assert batch.counts.cancelled == 2
    errors = await setup.file_lines(batch.error_file_id)
    assert [e["custom_id"] for e in errors] == ["a", "b"]
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


async def test_failed_lines_go_to_the_error_file(setup: Setup) -> None:
    batch_id = await setup.batch(line("a") + line("b"))
    await setup.engine.validate(batch_id)
    await setup.run_lines(None)
    await setup.engine.finalize(batch_id)

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.COMPLETED and batch.output_file_id is None
    errors = await setup.file_lines(batch.error_file_id)
    assert [e["response"]["status_code"] for e in errors] == [400, 400]


@pytest.mark.parametrize(
    ("cancel", "expected"), [(False, BatchStatus.FAILED), (True, BatchStatus.CANCELLED)]
)
async def test_giving_up_ends_a_running_batch_without_result_files(
    setup: Setup, cancel: bool, expected: BatchStatus
) -> None:
    batch_id = await setup.batch(line("a") + line("b"))
    await setup.engine.validate(batch_id)
    if cancel:
        assert await setup.engine.lifecycle.cancel(await setup.get(batch_id), clock.now())

    assert await setup.engine.give_up(batch_id, 5, RuntimeError("disk full"))

    batch = await setup.get(batch_id)
    assert batch.status is expected and batch.output_file_id is batch.error_file_id is None
    assert [e.code for e in batch.errors] == ["internal_error"]
    assert "failed 5 times (RuntimeError)" in batch.errors[0].message
    counted = batch.counts.cancelled if cancel else batch.counts.failed
    assert counted == 2
    assert not await setup.engine.give_up(batch_id, 5, RuntimeError("again"))  # ended already


async def test_giving_up_on_validation_removes_the_lines_read_so_far(setup: Setup) -> None:
    batch_id = await setup.batch(line("a"))

    assert await setup.engine.give_up(batch_id, 5, OSError("unreadable"))

    batch = await setup.get(batch_id)
    assert batch.status is BatchStatus.FAILED and batch.counts.total == 0
    assert "could not be validated" in batch.errors[0].message


async def test_the_lifecycle_refuses_a_change_the_state_machine_forbids(setup: Setup) -> None:
    batch_id = await setup.batch(line("a"))
    lifecycle = Lifecycle(setup.store)

    with pytest.raises(InvalidTransition):
        await lifecycle.move(batch_id, BatchStatus.VALIDATING, BatchStatus.COMPLETED)
    with pytest.raises(InvalidTransition):
        await lifecycle.expire(await setup.get(batch_id), clock.now())  # not in progress

    assert (await setup.get(batch_id)).status is BatchStatus.VALIDATING  # nothing written
    # a write that keeps the status is no change, and passes
    assert await lifecycle.move(batch_id, BatchStatus.VALIDATING, BatchStatus.VALIDATING)
    # compare-and-set: a batch that moved on meanwhile is not written
    assert not await lifecycle.move(batch_id, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING)
