"""Wall-clock time in one place, so that tests can move it."""

from __future__ import annotations

import time

__all__ = ["now", "now_float"]


def now_float() -> float:
    """Seconds since the epoch."""
    return time.time()


def now() -> int:
    """Whole seconds since the epoch (the unit of every OpenAI timestamp)."""
    return int(time.time())
