"""The Alembic migrations build exactly the schema ``tables.py`` declares, on both backends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from batchway.config import Config
from batchway.store.migrate import alembic_config, head_revision, migrate
from batchway.store.sql import create_engine
from batchway.store.tables import batches, metadata


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


async def test_the_head_read_from_the_scripts_is_alembics(engine: AsyncEngine) -> None:
    await migrate(engine)
    current, head = await _revisions(engine)
    assert head_revision() == head and current == [head]


_MIGRATE_AND_TELL = """
import asyncio, sys
from batchway.store.migrate import migrate
from batchway.store.sql import create_engine
asyncio.run(migrate(create_engine(sys.argv[1])))
print(sorted({name.split(".")[0] for name in sys.modules} & {"alembic", "mako"}))
"""


async def test_a_current_database_is_recognised_without_alembic(tmp_path: Any) -> None:
    # Alembic stays out of a gateway's memory unless there is a migration to run
    url = f"sqlite+aiosqlite:///{tmp_path}/current.db"
    imported = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _MIGRATE_AND_TELL, url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        imported.append(out.decode().strip())
    assert imported == ["['alembic', 'mako']", "[]"]


async def test_batches_get_their_figures_from_their_lines(engine: AsyncEngine) -> None:
    """Migration 0009 keeps the figures of batches that had already ended, 0011 those of
    batches still running (kept up to date on their rows from then on)."""
    await migrate(engine)

    def to(revision: str) -> Any:
        def step(connection: Connection) -> None:
            config = alembic_config(connection)
            if revision == "0008":
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)

        return step

    async with engine.connect() as conn:
        await conn.run_sync(to("0008"))
        counts = ", ".join(["0"] * 9)
        for batch_id, status in (
            ("b_done", "completed"),
            ("b_running", "in_progress"),
            ("b_new", "in_progress"),
        ):
            await conn.execute(
                text(
                    "INSERT INTO batches (id, owner, endpoint, input_file_id, completion_window,"
                    " status, created_at, expires_at, total, succeeded, failed, cancelled,"
                    " expired, input_tokens, cached_tokens, output_tokens, reasoning_tokens,"
                    f" sort_key) VALUES ('{batch_id}', 'k', '/v1/chat/completions', 'f', '24h',"
                    f" '{status}', 1, 2, {counts}, 1)"
                )
            )
        lines = [
            ("b-model", "p1", 0.25, "succeeded", 3),
            ("a-model", "p2", 0.5, "succeeded", 4),
            ("b-model", "p1", 0.25, "failed", 5),
            ("b-model", "p1", 0.0, "pending", 0),
        ]
        for batch_id in ("b_done", "b_running"):
            for line, (model, provider, cost, state, tokens) in enumerate(lines, 1):
                await conn.execute(
                    text(
                        "INSERT INTO batch_items (batch_id, line, custom_id, model, provider,"
                        " body, state, attempts, not_before, input_tokens, cached_tokens,"
                        " output_tokens, reasoning_tokens, cost_usd) VALUES"
                        f" ('{batch_id}', {line}, 'c{line}', '{model}', '{provider}', :body,"
                        f" '{state}', 1, 0, {tokens}, 1, 2, 0, {cost})"
                    ),
                    {"body": b"{}"},
                )
        await conn.run_sync(to("head"))
        rows = {r.id: r for r in await conn.execute(select(batches))}
        await conn.commit()

    done, running, new = rows["b_done"], rows["b_running"], rows["b_new"]
    assert (done.cost_usd, done.models, done.providers) == (
        1.0,
        ["a-model", "b-model"],
        ["p1", "p2"],
    )
    assert (running.cost_usd, running.models, running.providers) == (
        1.0,
        ["a-model", "b-model"],
        ["p1", "p2"],
    )
    assert (running.succeeded, running.failed, running.cancelled, running.expired) == (2, 1, 0, 0)
    assert (running.input_tokens, running.cached_tokens, running.output_tokens) == (7, 2, 4)
    assert (new.cost_usd, new.succeeded, new.models) == (0.0, 0, [])


_MIGRATE = """
import asyncio, sys
from batchway.store.migrate import migrate
from batchway.store.sql import create_engine
asyncio.run(migrate(create_engine(sys.argv[1])))
"""


async def test_processes_opening_one_new_sqlite_file_at_once_take_turns(tmp_path: Any) -> None:
    # `batchway serve &` then `batchway keys create` on a fresh folder: both migrate the
    # new file at the same moment; neither may fail with "database is locked"
    for attempt in range(3):
        url = f"sqlite+aiosqlite:///{tmp_path}/race-{attempt}.db"
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", _MIGRATE, url, stderr=asyncio.subprocess.PIPE
            )
            for _ in range(3)
        ]
        for process in processes:
            _, err = await process.communicate()
            assert process.returncode == 0, err.decode()
        engine = create_engine(url)
        try:
            current, head = await _revisions(engine)
            assert current == [head]
            async with engine.connect() as conn:
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        finally:
            await engine.dispose()
