"""Apply the Alembic migrations; run on every start (a no-op when the schema is current).

A database already at the newest revision is recognised without importing Alembic, which
with Mako costs a gateway ~11 MB of memory for its whole life.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from batchway.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

__all__ = ["alembic_config", "head_revision", "migrate"]

_SCRIPTS = Path(__file__).with_name("migrations")
LOCK_WAIT_SECONDS = 300.0
_REVISION = re.compile(r'^(down_revision|revision) = (?:"(\w+)"|None)$', re.MULTILINE)


def alembic_config(connection: Connection) -> AlembicConfig:
    """An Alembic config bound to an open connection (there is no alembic.ini)."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest revision, read from the scripts' own text: the one no other revision
    follows. None when the scripts do not name exactly one (Alembic then decides)."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for script in (_SCRIPTS / "versions").glob("*.py"):
        for kind, name in _REVISION.findall(script.read_text()):
            if name:
                (revisions if kind == "revision" else followed).add(name)
    heads = revisions - followed
    return heads.pop() if len(heads) == 1 else None


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return rows[0][0] if len(rows) == 1 else None


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database schema up to the newest revision."""

    def upgrade(connection: Connection) -> None:
        from alembic import command

        command.upgrade(alembic_config(connection), "head")

    async with engine.connect() as conn:
        head = head_revision()
        if head is not None and await conn.run_sync(_current_revision) == head:
            return

    async with _sqlite_file_lock(engine):
        async with engine.connect() as conn:
            # SQLite: take the write lock before reading the schema's revision as well;
            # PostgreSQL takes an advisory lock in env.py
            await conn.execution_options(sqlite_immediate=True)
            await conn.run_sync(upgrade)
            await conn.commit()


@asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Processes migrating one SQLite file take turns (``serve &`` then ``keys create`` on
    a new folder): Alembic runs SQLite's DDL outside a transaction, so the database's own
    lock does not cover a whole migration. An exclusive lock on ``<file>.migrate-lock``
    does; it is waited for at most ``LOCK_WAIT_SECONDS``."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate-lock", "a+b") as lock:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"another process has been migrating {path} for over "
                        f"{LOCK_WAIT_SECONDS:.0f} s"
                    ) from None
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
