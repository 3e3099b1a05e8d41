"""The console's service (``core.overview``) on the in-memory stores: who sees what, the
figures a batch page shows, lines with their logs, batch savings and key standings."""

from __future__ import annotations

import pytest

from batchway.config import BatchLimits, Config
from batchway.core import clock
from batchway.core.analytics import LogFilter, UsageQuery
from batchway.core.batches import BatchService
from batchway.core.call_pricing import CallPricing
from batchway.core.files import FileService
from batchway.core.keys import ADMIN
from batchway.core.listings import BatchFilter, LineFilter
from batchway.core.models import ApiKey, Batch, NewItem, RequestLog, Usage
from batchway.core.overview import Overview
from batchway.core.pricing import PriceTable
from batchway.core.routing import Router
from batchway.core.states import BatchStatus, ItemState
from batchway.errors import InvalidRequest, NotFound
from batchway.testing.memory import MemoryBlobStore, MemoryRequestLogs, MemoryStore
from tests.contract.factories import claim, failed, succeeded

CONFIG = Config.model_validate(
    {
        "providers": {"up": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:1/v1"}},
        "models": {"gpt-4o": {"provider": "up", "model": "gpt-4o"}},
    }
)


class Setup:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.logs = MemoryRequestLogs(self.store)
        router = Router(CONFIG)
        batches = BatchService(
            self.store,
            self.store,
            BatchLimits(),
            file_service=FileService(self.store, MemoryBlobStore(), BatchLimits()),
            router=router,
        )
        self.overview = Overview(
            batches=batches,
            batch_store=self.store,
            lines=self.store,
            keys=self.store,
            logs=self.logs,
            pricing=CallPricing(PriceTable(), router),
        )

    async def key(self, key_id: str, **fields: object) -> ApiKey:
        key = ApiKey(id=key_id, name=key_id, key_hash=key_id * 4, created_at=clock.now(), **fields)  # type: ignore[arg-type]
        await self.store.create_key(key)
        return key

    async def batch(self, owner: str, lines: int = 2) -> str:
        batch_id = f"batch_{owner}_{len(self.store.tables.batches)}"
        now = clock.now()
        await self.store.create_batch(
            Batch(
                id=batch_id,
                owner=owner,
                endpoint="/v1/chat/completions",
                input_file_id="file-x",
                completion_window="24h",
                status=BatchStatus.VALIDATING,
                created_at=now,
                expires_at=now + 3600,
            )
        )
        items = [
            NewItem(line=n, custom_id=f"c{n}", model="gpt-4o", provider="up", body=b"{}")
            for n in range(1, lines + 1)
        ]
        await self.store.insert_items(batch_id, items, ())
        await self.store.set_batch_status(
            batch_id,
            expected=[BatchStatus.VALIDATING],
            status=BatchStatus.IN_PROGRESS,
            in_progress_at=now,
            total=lines,
        )
        return batch_id


@pytest.fixture
async def setup() -> Setup:
    s = Setup()
    await s.key("key_a")
    await s.key("key_b", budget_usd=10.0)
    return s


async def test_a_key_sees_only_its_own_batches_whatever_the_filter(setup: Setup):
    mine = await setup.batch("key_a")
    theirs = await setup.batch("key_b")
    principal = (await setup.store.get_key("key_a")).principal()  # type: ignore[union-attr]

    own = await setup.overview.batches(principal, BatchFilter(owner="key_b"), limit=10, after=None)
    every = await setup.overview.batches(ADMIN, BatchFilter(), limit=10, after=None)

    assert [r.batch.id for r in own.items] == [mine]
    assert [r.batch.id for r in every.items] == [theirs, mine]
    with pytest.raises(NotFound):
        await setup.overview.batch(principal, theirs)
    with pytest.raises(NotFound):
        await setup.overview.lines(principal, theirs, LineFilter(), limit=10, after_line=None)


async def test_the_batch_page_adds_up_its_lines_and_joins_their_logs(setup: Setup):
    batch_id = await setup.batch("key_a", lines=3)
    first, second, _ = await claim(setup.store, "w1", provider="up")
    await setup.store.record_outcomes(
        "w1", [succeeded(first, input_tokens=4, output_tokens=6), failed(second)], clock.now()
    )

    row = await setup.overview.batch(ADMIN, batch_id)
    lines = await setup.overview.lines(ADMIN, batch_id, LineFilter(), limit=10, after_line=None)

    assert (row.figures.counts.succeeded, row.figures.counts.failed) == (1, 1)
    assert row.figures.counts.processing == 1
    assert row.figures.models == ("gpt-4o",) and row.figures.providers == ("up",)
    assert [r.line.state for r in lines.items] == [
        ItemState.SUCCEEDED,
        ItemState.FAILED,
        ItemState.LEASED,
    ]
    assert [r.log is not None for r in lines.items] == [True, True, False]
    assert lines.items[0].log is not None and lines.items[0].log.custom_id == "c1"


async def test_logs_of_another_key_are_hidden(setup: Setup):
    await setup.logs.insert([_log("key_a"), _log("key_b")])
    principal = (await setup.store.get_key("key_a")).principal()  # type: ignore[union-attr]

    page = await setup.overview.logs(principal, LogFilter(key_id="key_b"), limit=10, before_id=None)
    (theirs,) = (
        await setup.overview.logs(ADMIN, LogFilter(key_id="key_b"), limit=10, before_id=None)
    ).items

    assert [log.key_id for log in page.items] == ["key_a"]
    assert theirs.id is not None
    with pytest.raises(NotFound):
        await setup.overview.log(principal, theirs.id)
    assert (await setup.overview.log(ADMIN, theirs.id)).key_id == "key_b"


@pytest.mark.parametrize("limit", [0, 201])
async def test_a_page_size_out_of_bounds_is_refused(setup: Setup, limit: int):
    with pytest.raises(InvalidRequest):
        await setup.overview.batches(ADMIN, BatchFilter(), limit=limit, after=None)


async def test_batch_savings_weigh_batch_cost_against_the_normal_price(setup: Setup):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    await setup.logs.insert(
        [
            _log("key_a", kind="batch", usage=usage, cost=1.25),  # half of gpt-4o's $2.50
            _log("key_a", kind="interactive", usage=usage, cost=2.5),
        ]
    )

    (saving,) = await setup.overview.batch_savings(ADMIN, UsageQuery())

    assert saving.model == "gpt-4o" and saving.batch.requests == 1
    assert saving.at_normal_price == pytest.approx(2.5)
    assert saving.saved_usd == pytest.approx(1.25)


async def test_key_standing_counts_spending_and_recent_traffic(setup: Setup):
    now_ms = int(clock.now_float() * 1000)
    await setup.logs.insert(
        [
            _log("key_b", cost=3.0, at=now_ms - 1_000),
            _log("key_b", cost=1.0, at=now_ms - 30 * 60_000),
            _log("key_b", cost=0.5, at=now_ms - 30 * 60_000, kind="batch"),
        ]
    )

    standings = {s.key.id: s for s in await setup.overview.key_standings()}

    b = standings["key_b"]
    assert b.spent_usd == pytest.approx(4.5)
    assert b.budget_left_usd == pytest.approx(5.5)
    assert (b.last_minute.requests, b.last_hour.requests) == (1, 2)
    assert standings["key_a"].budget_left_usd is None
    for standing in standings.values():  # all keys at once reads as each key alone
        assert standing == await setup.overview.key_standing(standing.key)


def _log(
    key_id: str,
    *,
    kind: str = "interactive",
    usage: Usage | None = None,
    cost: float = 0.1,
    at: int | None = None,
) -> RequestLog:
    return RequestLog(
        created_at_ms=at if at is not None else int(clock.now_float() * 1000),
        kind=kind,  # type: ignore[arg-type]
        key_id=key_id,
        model="gpt-4o",
        provider="up",
        endpoint="/v1/chat/completions",
        status="succeeded",
        usage=usage or Usage(input_tokens=1, output_tokens=1),
        cost_usd=cost,
    )
