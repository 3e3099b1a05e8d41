"""Wakeups within one process: the default, and what a SQLite gateway (one process) uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LocalWakeups"]


class LocalWakeups:
    """Announcements reach the listeners of this process (and of this object) only."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def announce(self) -> None:
        for on_wake in list(self._listeners):
            on_wake()

    def add(self, on_wake: Callable[[], None]) -> None:
        self._listeners.append(on_wake)

    def remove(self, on_wake: Callable[[], None]) -> None:
        self._listeners.remove(on_wake)

    async def listen(self, on_wake: Callable[[], None]) -> None:
        self.add(on_wake)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.remove(on_wake)

    async def close(self) -> None:
        self._listeners.clear()
