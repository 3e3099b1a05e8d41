"""How long an idle worker loop sleeps before it looks for work again."""

from __future__ import annotations

__all__ = ["IdleWait"]


class IdleWait:
    """``shortest`` after a look that found work, then twice as long after each look that
    found none, up to ``longest``.

    Wake-ups (a batch created in this process, a NOTIFY from another) end a sleep at once,
    so the longer sleeps only bound how late work that came without one is seen; an idle
    worker then costs a few queries every ``longest`` seconds instead of several a second.
    """

    def __init__(self, shortest: float, longest: float) -> None:
        self._shortest = shortest
        self._longest = max(longest, shortest)
        self._next = shortest

    def after(self, found_work: bool) -> float:
        """The sleep after a look that did (or did not) find work."""
        if found_work:
            self._next = self._shortest
            return self._shortest
        wait = self._next
        self._next = min(self._next * 2, self._longest)
        return wait
