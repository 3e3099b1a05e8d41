"""Transactions given as plans: the statements of a transaction, written once, run by
whichever runner suits the database.

A plan is a generator that yields statements (`Rows` to read, `Many` to run once per row
of parameters) and is sent each statement's rows back; what it returns is the
transaction's result. It does no I/O itself, so:

- on SQLite the whole plan runs in the driver's own thread, statement after statement on
  the `sqlite3` connection, in one hand-off from the event loop (`run_in_sqlite`): a
  transaction that records a few dozen batch lines costs one thread switch instead of a
  dozen or more, each of which costs more than the statement;
- on PostgreSQL each statement goes straight to the driver (`run_on`), inside the
  transaction the caller holds.

The hot paths (recording lines, writing request logs, the worker's look for stopped
batches) are plans; the SQL is the driver's own, with its own placeholders
(`driver_marks`). A read-only plan runs on SQLite outside any write transaction
(`read_in_sqlite`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Many", "Plan", "Rows", "read_in_sqlite", "run_in_sqlite", "run_many", "run_on"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement whose rows the plan reads."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Many:
    """A statement run once for each row of parameters (nothing, for no rows)."""

    sql: str
    rows: Sequence[tuple[Any, ...]]


Plan = Generator[Rows | Many, Sequence[Sequence[Any]], _T]


def _steps_in_sqlite(db: sqlite3.Connection, plan: Plan[_T], *, writes: bool) -> _T:
    rows: Sequence[Sequence[Any]] = ()
    try:
        step = next(plan)
        while True:
            if isinstance(step, Rows):
                rows = db.execute(step.sql, step.params).fetchall()
            elif not writes:
                raise TypeError("a read-only plan wrote")
            else:
                if step.rows:
                    db.executemany(step.sql, step.rows)
                rows = ()
            step = plan.send(rows)
    except StopIteration as end:
        return end.value  # type: ignore[no-any-return]


def read_in_sqlite(db: sqlite3.Connection, plan: Plan[_T]) -> _T:
    """Run a plan of reads on ``db``, in the thread that owns it, each statement seeing
    what was committed when it began (no transaction is opened)."""
    return _steps_in_sqlite(db, plan, writes=False)


def run_in_sqlite(db: sqlite3.Connection, plan: Plan[_T]) -> _T:
    """Run ``plan`` as one ``BEGIN IMMEDIATE`` … ``COMMIT`` on ``db``, in the thread that
    owns it; anything raised rolls the transaction back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = _steps_in_sqlite(db, plan, writes=True)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


async def run_on(conn: AsyncConnection, plan: Plan[_T], *, writes: bool = True) -> _T:
    """Run ``plan``'s statements on ``conn``, inside the transaction the caller holds
    (``writes=False``: a read-only plan, refused at its first `Many`, as on SQLite)."""
    try:
        rows: Sequence[Sequence[Any]] = ()
        step = next(plan)
        while True:
            if isinstance(step, Rows):
                rows = (await conn.exec_driver_sql(step.sql, step.params)).all()
            elif not writes:
                raise TypeError("a read-only plan wrote")
            else:
                await run_many(conn, step)
                rows = ()
            step = plan.send(rows)
    except StopIteration as end:
        return end.value  # type: ignore[no-any-return]


async def run_many(conn: AsyncConnection, step: Many) -> None:
    """One `Many` on ``conn`` (a statement written outside a plan)."""
    if step.rows:
        await conn.exec_driver_sql(step.sql, list(step.rows))
