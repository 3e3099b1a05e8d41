"""The Alembic migrations build exactly the schema ``tables.py`` declares, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from batchway.config import Config
from batchway.store.migrate import alembic_config, migrate
from batchway.store.sql import create_engine
from batchway.store.tables import metadata


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async_engine = create_engine(Config(database=database_url).async_database_url)
    try:
        yield async_engine
    finally:
        await async_engine.dispose()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _schema(engine: AsyncEngine) -> dict[str, Any]:
    def describe(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                sorted(i["name"] or "" for i in inspector.get_indexes(table)),
            )
            for table in sorted(inspector.get_table_names())
        }

    async with engine.connect() as conn:
        return await conn.run_sync(describe)


async def _revisions(engine: AsyncEngine) -> tuple[list[str], str | None]:
    """The revision the database is at, and the newest one among the scripts."""

    def read(connection: Connection) -> tuple[list[str], str | None]:
        current = connection.execute(text("SELECT version_num FROM alembic_version"))
        head = ScriptDirectory.from_config(alembic_config(connection)).get_current_head()
        return list(current.scalars()), head

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_the_migrated_schema_matches_tables_py(engine: AsyncEngine) -> None:
    await migrate(engine)

    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_an_empty_database_differs_from_tables_py(engine: AsyncEngine) -> None:
    # the comparison above can see a difference at all; PostgreSQL test databases are
    # cloned from an already migrated template (built by migrating an empty database)
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite test databases start empty")
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == set(metadata.tables)


async def test_migrating_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await migrate(engine)
    schema = await _schema(engine)
    current, head = await _revisions(engine)
    assert head is not None and current == [head]

    await migrate(engine)

    assert await _schema(engine) == schema
    assert await _revisions(engine) == ([head], head)
    assert set(schema) == {"alembic_version", *metadata.tables}
