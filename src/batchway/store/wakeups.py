"""Wakeups across processes through PostgreSQL's LISTEN/NOTIFY.

Every process announcing sends ``NOTIFY`` on one channel; every worker holds one connection
that ``LISTEN``s on it. Announcements are coalesced (one ``NOTIFY`` in flight, one more
queued behind it) and reach this process's own listeners at once, without the round trip.
A listener whose connection drops connects again, and gives up after ``MAX_RECONNECTS``
failures in a row (logged): the workers' polling then carries on alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from batchway.config import Config
from batchway.core.ports import Wakeups
from batchway.core.wakeups import LocalWakeups

__all__ = ["CHANNEL", "PostgresWakeups", "asyncpg_dsn", "open_wakeups"]

CHANNEL = "batchway_work"
MAX_RECONNECTS = 10
CONNECT_TIMEOUT = 10.0
STEADY_SECONDS = 60.0  # a listening connection that lasted this long was not a failure

log = logging.getLogger("batchway.wakeups")


async def _connect(dsn: str) -> Any:
    """An asyncpg connection; asyncpg is imported on first use, as only PostgreSQL
    deployments need it."""
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)


def asyncpg_dsn(database_url: str) -> str:
    """``postgresql+asyncpg://…`` (SQLAlchemy's form) as asyncpg takes it."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else database_url


class PostgresWakeups:
    def __init__(self, database_url: str) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._local = LocalWakeups()
        self._sender: Any = None  # asyncpg.Connection, opened on the first announcement
        self._sending: asyncio.Task[None] | None = None
        self._again = False
        self._failures = 0

    def announce(self) -> None:
        self._local.announce()
        if self._sending is not None and not self._sending.done():
            self._again = True  # the NOTIFY in flight may have been read already
            return
        self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while True:
            self._again = False
            try:
                if self._sender is None or self._sender.is_closed():
                    self._sender = await _connect(self._dsn)
                await self._sender.execute("SELECT pg_notify($1, '')", CHANNEL)
                self._failures = 0
            except Exception as exc:  # the word is lost; pollers will find the work
                self._failures += 1
                if self._failures in (1, MAX_RECONNECTS) or self._failures % 100 == 0:
                    log.warning(
                        "cannot announce work to other processes: %s",
                        exc,
                        extra={"action": "wakeup_error", "failures": self._failures},
                    )
                await self._drop_sender()
                return
            if not self._again:
                return

    async def listen(self, on_wake: Callable[[], None]) -> None:
        self._local.add(on_wake)
        try:
            await self._listen_remote(on_wake)
            await asyncio.Event().wait()  # gave up on the database: this process's own still count
        finally:
            self._local.remove(on_wake)

    async def _listen_remote(self, on_wake: Callable[[], None]) -> None:
        failures = 0  # connections in a row that failed or did not last
        while failures < MAX_RECONNECTS:
            if failures:
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            lost = asyncio.Event()
            try:
                connection = await _connect(self._dsn)
            except Exception as exc:
                failures += 1
                log.warning(
                    "cannot listen for work from other processes: %s",
                    exc,
                    extra={"action": "wakeup_error", "failures": failures},
                )
                continue
            opened = asyncio.get_running_loop().time()
            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, lambda *_args: on_wake())
                on_wake()  # work announced while no one listened is looked for now
                await lost.wait()
            except Exception:
                log.exception("listening for work failed", extra={"action": "wakeup_error"})
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=5)
            lasted = asyncio.get_running_loop().time() - opened
            failures = 1 if lasted > STEADY_SECONDS else failures + 1
            log.warning("lost the connection that listens for work; connecting again")
        log.error(
            "stopped listening for work from other processes after %d failed connections; "
            "workers poll instead",
            failures,
            extra={"action": "wakeup_gave_up"},
        )

    async def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):
                await sender.close(timeout=5)

    async def close(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sending
        await self._drop_sender()
        await self._local.close()


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    return lambda _connection: event.set()


def open_wakeups(config: Config) -> Wakeups:
    """LISTEN/NOTIFY on PostgreSQL (processes share the database); else this process only."""
    if config.database.startswith(("postgresql", "postgres:")):
        return PostgresWakeups(config.database)
    return LocalWakeups()
