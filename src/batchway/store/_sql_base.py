"""The SQL plumbing shared by every statement: the engine, transactions, driver errors.

SQLite serialises writers (an in-process lock plus ``BEGIN IMMEDIATE``); PostgreSQL needs
nothing special. A value the database refuses (such as a NUL character) is bad input.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from batchway.config import DatabasePoolConfig
from batchway.errors import InvalidRequest
from batchway.store.plans import Plan, read_in_sqlite, run_in_sqlite, run_on

__all__ = ["SqlBase", "create_engine", "driver_marks"]

_T = TypeVar("_T")


def create_engine(url: str, pool: DatabasePoolConfig | None = None) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL and explicit write transactions."""
    if not url.startswith("sqlite"):
        pool = pool or DatabasePoolConfig()
        return create_async_engine(
            url,
            pool_size=pool.size,
            max_overflow=pool.max_overflow,
            pool_timeout=pool.timeout_seconds,
            pool_pre_ping=True,
        )
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let us issue BEGIN ourselves (the driver's own deferred BEGIN can deadlock writers)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A task cancelled while its statement runs: SQLAlchemy would throw the connection
        # away unclosed (its statement still open), and SQLite keeps that connection's
        # write lock until it is garbage-collected: every other writer waits, then fails.
        # The driver runs one statement at a time in order, so the statement finishes and
        # the cursor closes and the rollback runs after it, on a connection still good.
        if isinstance(context.original_exception, asyncio.CancelledError):
            context.is_disconnect = False

    return engine


def driver_marks(paramstyle: str, count: int) -> list[str]:
    """The driver's own placeholders for ``count`` parameters, for statements sent straight
    to it (``exec_driver_sql``) on the hot write paths."""
    return [
        "?" if paramstyle == "qmark" else f"${i}" if paramstyle == "numeric_dollar" else "%s"
        for i in range(1, count + 1)
    ]


_WAL_ATTEMPTS = 100


def _use_wal(cursor: Any) -> None:
    """Put the file in WAL mode (it stays so). Switching needs the file to itself and
    SQLite answers "locked" at once rather than waiting, so a process opening a new file
    while another one does tries again for a few seconds."""
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, through the async adapter
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


@contextmanager
def _refused_values() -> Iterator[None]:
    """A value the database cannot hold (PostgreSQL refuses NUL characters in text) is
    bad input, not a server error."""
    try:
        yield
    except DBAPIError as exc:
        if not _is_data_error(exc):
            raise
        raise InvalidRequest(
            "The request contains a value that cannot be stored (such as a NUL character)."
        ) from exc


def _is_data_error(exc: DBAPIError) -> bool:
    """A problem with a value (SQLSTATE class 22), not with the database."""
    if isinstance(exc, DataError):
        return True
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(error, "sqlstate", None)
        if isinstance(code, str) and code.startswith("22"):
            return True
    return False


@asynccontextmanager
async def _transaction(conn: AsyncConnection) -> AsyncIterator[None]:
    """A transaction that has ended (committed or rolled back) whenever this exits, even
    when the task is cancelled partway: a cancelled SQLite writer must not leave its
    transaction open, holding the database's write lock, after the write lock is let go."""
    transaction = await _to_the_end(conn.begin())
    try:
        yield
    except BaseException:
        await _to_the_end(transaction.rollback())
        raise
    await _to_the_end(transaction.commit())


async def _to_the_end(step: Awaitable[_T]) -> _T:
    """Await ``step`` to its end; a cancellation meanwhile is raised after it."""
    task = asyncio.ensure_future(step)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result


class SqlBase:
    """An engine and the transactions every statement runs in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.paramstyle: str = engine.dialect.paramstyle
        self._write_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.engine.dispose()

    async def healthy(self) -> bool:
        """Can the database be reached at all? (Tells a bad row from a database outage.)"""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialised on SQLite, where writers would otherwise collide)."""
        with _refused_values():
            if not self.is_sqlite:
                async with self.engine.connect() as conn, _transaction(conn):
                    yield conn
                return
            async with self._write_lock, self.engine.connect() as conn:
                conn = await conn.execution_options(sqlite_immediate=True)
                async with _transaction(conn):
                    yield conn

    async def _write_plan(self, plan: Plan[_T]) -> _T:
        """Run a write transaction given as a plan (see `batchway.store.plans`). On SQLite
        the whole transaction runs in the driver's thread, in one hand-off."""
        if not self.is_sqlite:
            async with self._write() as conn:
                return await run_on(conn, plan)
        async with self._write_lock:
            return await self._in_sqlite_thread(run_in_sqlite, plan)

    async def _read_plan(self, plan: Plan[_T]) -> _T:
        """Run reads given as a plan: on SQLite in the driver's thread, in one hand-off,
        outside any write transaction."""
        if not self.is_sqlite:
            async with self._read() as conn:
                return await run_on(conn, plan, writes=False)
        return await self._in_sqlite_thread(read_in_sqlite, plan)

    async def _in_sqlite_thread(
        self, runner: Callable[[sqlite3.Connection, Plan[_T]], _T], plan: Plan[_T]
    ) -> _T:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection  # an aiosqlite connection: one thread, in order
            # to its end even when the caller is cancelled: a write transaction holds the
            # lock until it has committed or rolled back in that thread
            try:
                return await _to_the_end(driver._execute(runner, driver._conn, plan))  # type: ignore[union-attr]
            except sqlite3.Error as exc:  # as SQLAlchemy raises it everywhere else
                raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _refused_values():
            async with self.engine.connect() as conn:
                yield conn
