"""The garbage collector's settings for a long-running process, and their undoing."""

from __future__ import annotations

import gc

from batchway.collector import YOUNG_THRESHOLD, set_for_serving


def test_serving_freezes_what_exists_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()

    with set_for_serving():
        assert gc.get_threshold() == (max(before[0], YOUNG_THRESHOLD), *before[1:])
        assert gc.get_freeze_count() > 0

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
