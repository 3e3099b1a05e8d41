"""An idle worker loop sleeps longer after each look that found nothing."""

from __future__ import annotations

from batchway.worker.idle import IdleWait


def test_each_empty_look_doubles_the_sleep_up_to_the_longest() -> None:
    idle = IdleWait(0.25, 5.0)
    assert [idle.after(found_work=False) for _ in range(7)] == [0.25, 0.5, 1, 2, 4, 5, 5]


def test_work_found_brings_the_shortest_sleep_back() -> None:
    idle = IdleWait(0.25, 5.0)
    for _ in range(5):
        idle.after(found_work=False)
    assert idle.after(found_work=True) == 0.25
    assert idle.after(found_work=False) == 0.25
    assert idle.after(found_work=False) == 0.5


def test_a_longest_below_the_shortest_means_no_backoff() -> None:
    idle = IdleWait(2.0, 1.0)
    assert [idle.after(found_work=False) for _ in range(3)] == [2.0, 2.0, 2.0]
