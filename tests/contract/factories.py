"""Test data for the store contract, and readers that see a store only through its ports.

Time is passed in explicitly everywhere (the stores never read the clock), so the tests
use a fixed ``NOW`` and move it by hand instead of sleeping.
"""

from __future__ import annotations

import itertools
from typing import Any

from batchway.core.analytics import LogFilter
from batchway.core.line_records import LineRecords
from batchway.core.models import (
    ApiKey,
    Batch,
    BatchItem,
    ItemOutcome,
    ItemResult,
    LineRecord,
    NewItem,
    RequestLog,
    StoredFile,
    Usage,
)
from batchway.core.ports import RequestLogs, Store
from batchway.core.states import BatchStatus, ItemState

NOW = 1_700_000_000
DAY = 86_400
OWNER = "key_owner"
OTHER = "key_other"
PROVIDER = "sim"

_serial = itertools.count(1)


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


def new_items(
    count: int, provider: str = PROVIDER, first_line: int = 1, model: str = "gpt-4o"
) -> list[NewItem]:
    return [
        NewItem(
            line=line,
            custom_id=f"req-{line}",
            model=model,
            provider=provider,
            body=b'{"model": "%s", "line": %d}' % (model.encode(), line),
        )
        for line in range(first_line, first_line + count)
    ]


async def claim(
    store: Store,
    worker: str = "w1",
    limit: int = 1000,
    now: float = NOW,
    lease: float = 30.0,
    provider: str = PROVIDER,
) -> list[BatchItem]:
    return await store.claim_items(worker, provider, limit, now, lease)


def _record(item: BatchItem, outcome: ItemOutcome) -> LineRecord:
    return LineRecords(None).of(item, outcome, NOW)


def succeeded(item: BatchItem, text: str = "ok", **usage: int) -> LineRecord:
    return _record(
        item,
        ItemOutcome(
            item_id=item.id,
            state=ItemState.SUCCEEDED,
            status_code=200,
            response=b'{"answer": "%s"}' % text.encode(),
            request_id=f"req_{item.id}",
            usage=Usage(**usage),
        ),
    )


def failed(item: BatchItem, **usage: int) -> LineRecord:
    return _record(
        item,
        ItemOutcome(
            item_id=item.id,
            state=ItemState.FAILED,
            status_code=400,
            response=b'{"error": "bad"}',
            error_code="invalid_request",
            error_message="bad request",
            usage=Usage(**usage),
        ),
    )


def retry(item: BatchItem, not_before: float) -> LineRecord:
    return _record(
        item,
        ItemOutcome(
            item_id=item.id,
            state=ItemState.PENDING,
            status_code=429,
            error_code="rate_limited",
            error_message="slow down",
            not_before=not_before,
        ),
    )


async def results(store: Store, batch_id: str) -> list[ItemResult]:
    """Every stored line of a batch, in input order, as the store reads them back."""
    return [row async for row in store.item_results(batch_id)]


async def states(store: Store, batch_id: str) -> list[ItemState]:
    return [row.state for row in await results(store, batch_id)]


async def line_ids(store: Store, batch_id: str) -> list[str]:
    return [str(row.id) for row in await results(store, batch_id)]


async def held(store: Store, worker: str, batch_id: str) -> dict[str, BatchItem]:
    """The lines of ``batch_id`` that ``worker`` holds."""
    return await store.leased_items(worker, await line_ids(store, batch_id), bodies=True)


async def fetch(store: Store, batch_id: str) -> Batch:
    batch = await store.get_batch(None, batch_id)
    assert batch is not None
    return batch


async def status_of(store: Store, batch_id: str) -> BatchStatus:
    return (await fetch(store, batch_id)).status


# -- request logs ---------------------------------------------------------------------------

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# midnight UTC, 2023-11-15: every bucket below starts at a whole hour or day after it
T0 = 1_700_006_400_000
assert T0 % DAY_MS == 0


def entry(at: int = T0, **fields: Any) -> RequestLog:
    """A successful interactive call unless told otherwise."""
    n = next(_serial)
    values: dict[str, Any] = {
        "created_at_ms": at,
        "kind": "interactive",
        "key_id": "key_a",
        "model": "gpt-4o",
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "status": "succeeded",
        "status_code": 200,
        "usage": Usage(input_tokens=10, cached_tokens=2, output_tokens=5),
        "latency_ms": 12.5,
        "cost_usd": 0.25,
        "request_id": f"req_{n}",
    }
    return RequestLog(**{**values, **fields})


def line(at: int = T0, **fields: Any) -> RequestLog:
    """A batch line that finished."""
    n = next(_serial)
    values: dict[str, Any] = {
        "kind": "batch",
        "batch_id": "batch_1",
        "custom_id": f"line-{n}",
        "item_id": 10_000_000 + n,
    }
    return entry(at, **{**values, **fields})


async def everything(logs: RequestLogs, filters: LogFilter | None = None) -> list[RequestLog]:
    page = await logs.query(filters or LogFilter(), limit=1000, before_id=None)
    assert not page.has_more
    return page.items
