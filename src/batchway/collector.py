"""Python's garbage collector set for a long-running gateway process (``serve``, ``worker``).

- What exists once the gateway is open (modules, config, the gateway's objects) lives as
  long as the process: it is frozen out of the collector (``gc.freeze()``), so the full
  collections stop walking it — 20–30 % of the CPU of a batch line at C=64.
- Python collects its youngest generation each time 700 more objects are alive than at the
  last collection. Under load that is every few requests (the objects of the requests and
  lines in flight and the queued request logs are alive, and none is garbage), and each
  collection walks all of them: ~11 µs of CPU per proxied request at C=32, for nothing. A
  threshold of 50,000 keeps the few reference cycles for a little longer instead.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "set_for_serving"]

YOUNG_THRESHOLD = 50_000


@contextmanager
def set_for_serving() -> Iterator[None]:
    """Freeze what exists now and raise the youngest generation's threshold; both are
    undone on exit."""
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
