"""The store ports' implementations, one fixture each, parametrized over every backend:
the SQL store on SQLite and on PostgreSQL, and the in-memory fakes (``-k memory`` runs
those alone, with no database, file or socket).

Every test in this folder is a contract: it must pass on every implementation, through
the port's own methods only. A behaviour only the SQL store has (a column no port reads)
is tested in tests/integration instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from batchway.config import Config
from batchway.core.models import NewItem
from batchway.core.ports import RequestLogs, Store, UpstreamBatchStore
from batchway.core.states import BatchStatus
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import migrate
from batchway.store.sql import SqlStore, create_engine
from batchway.store.upstream import SqlUpstreamBatches
from batchway.testing.memory import (
    MemoryRequestLogs,
    MemoryStore,
    MemoryUpstreamBatches,
    UniqueViolation,
)
from tests.contract.factories import NOW, OWNER, PROVIDER, new_batch, new_items

# what a write the schema refuses raises: the database's error, or the fake's
DUPLICATE = (IntegrityError, UniqueViolation)

MakeBatch = Callable[..., Awaitable[str]]


@pytest.fixture
async def store(store_database: str | None) -> AsyncIterator[Store]:
    """A fresh, empty store on each backend."""
    if store_database is None:
        yield MemoryStore()
        return
    engine = create_engine(Config(database=store_database).async_database_url)
    await migrate(engine)
    sql_store = SqlStore(engine)
    try:
        yield sql_store
    finally:
        await sql_store.close()


@pytest.fixture
def upstream(store: Store) -> UpstreamBatchStore:
    """The upstream batches, on the store's database."""
    if isinstance(store, SqlStore):
        return SqlUpstreamBatches(store)
    assert isinstance(store, MemoryStore)
    return MemoryUpstreamBatches(store)


@pytest.fixture
def logs(store: Store) -> RequestLogs:
    """The request log, on the store's database."""
    if isinstance(store, SqlStore):
        return SqlRequestLogs(store)
    assert isinstance(store, MemoryStore)
    return MemoryRequestLogs(store)


@pytest.fixture
def make_batch(store: Store) -> MakeBatch:
    """``await make_batch(items=N)``: a batch with N lines, moved to ``in_progress``.

    ``items`` may also be a list of ``NewItem``; ``start=False`` leaves it validating;
    ``native`` names providers whose lines may go to their native batch API.
    """

    async def make(
        items: int | list[NewItem] = 0,
        *,
        owner: str = OWNER,
        start: bool = True,
        provider: str = PROVIDER,
        native: tuple[str, ...] = (),
        **fields: Any,
    ) -> str:
        batch = new_batch(owner, **fields)
        lines = new_items(items, provider) if isinstance(items, int) else items
        await store.create_batch(batch)
        await store.insert_items(batch.id, lines, native)
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
