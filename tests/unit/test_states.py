"""Unit tests of ``batchway.core.states``: transition tables and a model of the lifecycle."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from batchway.core.states import (
    BATCH_TRANSITIONS,
    ITEM_TRANSITIONS,
    BatchStatus,
    ItemState,
    transition,
)
from batchway.errors import InvalidTransition, RequestError

B = BatchStatus
S = ItemState

ALLOWED_BATCH = {
    (B.VALIDATING, B.IN_PROGRESS),
    (B.VALIDATING, B.FAILED),
    (B.VALIDATING, B.CANCELLING),
    (B.IN_PROGRESS, B.FINALIZING),
    (B.IN_PROGRESS, B.CANCELLING),
    (B.FINALIZING, B.COMPLETED),
    (B.FINALIZING, B.EXPIRED),
    (B.CANCELLING, B.CANCELLED),
    # a worker that gives up on a batch ends it at once
    (B.VALIDATING, B.EXPIRED),
    (B.IN_PROGRESS, B.FAILED),
    (B.IN_PROGRESS, B.EXPIRED),
    (B.FINALIZING, B.FAILED),
}
ALLOWED_ITEM = {
    (S.PENDING, S.LEASED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELLED),
    (S.PENDING, S.EXPIRED),
    (S.LEASED, S.PENDING),
    (S.LEASED, S.SUCCEEDED),
    (S.LEASED, S.FAILED),
    # a claimed line of a batch that stopped before the line was sent
    (S.LEASED, S.CANCELLED),
    (S.LEASED, S.EXPIRED),
}
TERMINAL_BATCH = {B.FAILED, B.COMPLETED, B.EXPIRED, B.CANCELLED}
TERMINAL_ITEM = {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.EXPIRED}

BATCH_PAIRS = [
    pytest.param(a, b, (a, b) in ALLOWED_BATCH, id=f"{a.value}->{b.value}")
    for a, b in itertools.product(BatchStatus, repeat=2)
]


@pytest.mark.parametrize(("current", "target", "allowed"), BATCH_PAIRS)
def test_batch_transition(current: BatchStatus, target: BatchStatus, allowed: bool) -> None:
    if allowed:
        assert transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition) as caught:
            transition(current, target)
        assert current.value in caught.value.message
        assert target.value in caught.value.message


def test_batch_table_is_exactly_the_expected_one() -> None:
    table = {(a, b) for a, targets in BATCH_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED_BATCH
    assert set(BATCH_TRANSITIONS) == set(BatchStatus)


def test_item_table_is_exactly_the_expected_one() -> None:
    table = {(a, b) for a, targets in ITEM_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED_ITEM
    assert set(ITEM_TRANSITIONS) == set(ItemState)


def test_invalid_transition_is_a_request_error() -> None:
    assert issubclass(InvalidTransition, RequestError)


@pytest.mark.parametrize("status", list(BatchStatus), ids=lambda s: s.value)
def test_batch_terminal(status: BatchStatus) -> None:
    assert status.terminal is (status in TERMINAL_BATCH)
    # terminal exactly when nothing can follow
    assert status.terminal is (not BATCH_TRANSITIONS[status])


@pytest.mark.parametrize("state", list(ItemState), ids=lambda s: s.value)
def test_item_terminal(state: ItemState) -> None:
    assert state.terminal is (state in TERMINAL_ITEM)
    assert state.terminal is (not ITEM_TRANSITIONS[state])


@pytest.mark.parametrize(
    ("table", "start"),
    [
        pytest.param(BATCH_TRANSITIONS, B.VALIDATING, id="batch"),
        pytest.param(ITEM_TRANSITIONS, S.PENDING, id="item"),
    ],
)
def test_every_state_is_reachable_and_none_loops_on_itself(
    table: dict[Any, frozenset[Any]], start: Any
) -> None:
    seen = {start}
    frontier = [start]
    while frontier:
        for target in table[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(table)
    assert all(state not in targets for state, targets in table.items())


def test_every_batch_path_ends_in_a_terminal_status() -> None:
    """The batch graph has no cycle, so every batch finishes."""

    def longest(status: BatchStatus, depth: int = 0) -> int:
        assert depth <= len(BatchStatus), "cycle in BATCH_TRANSITIONS"
        return max((longest(t, depth + 1) for t in BATCH_TRANSITIONS[status]), default=depth)

    assert longest(B.VALIDATING) == 3  # validating -> in_progress -> finalizing -> completed


# --- a model of one batch's life ---------------------------------------------------------

WORKERS = ("worker-a", "worker-b")
ACTIVE = (S.PENDING, S.LEASED)


class BatchLifecycle(RuleBasedStateMachine):
    """One batch of N lines driven through claims, outcomes, sweeps, cancel and expiry.

    It follows what the worker and the store do (``store/sql.py``: ``claim_items``,
    ``record_outcomes``, ``release_expired_leases``, ``cancel_batch``, ``expire_batch``;
    ``core/engine/``), moving each line only along ``ITEM_TRANSITIONS`` and the batch
    only through ``transition()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.status = B.VALIDATING
        self.finish_as: BatchStatus | None = None
        self.items: list[ItemState] = []
        self.leases: dict[int, str] = {}  # line index -> worker holding its lease
        self.finished: dict[int, ItemState] = {}  # lines that reached a terminal state
        self.worker = WORKERS[0]  # the worker acting in the current step

    # helpers

    def _with(self, *states: ItemState) -> list[int]:
        return [i for i, s in enumerate(self.items) if s in states]

    def _move(self, index: int, target: ItemState) -> None:
        current = self.items[index]
        assert target in ITEM_TRANSITIONS[current], f"line {index}: {current} -> {target}"
        self.items[index] = target
        if target is S.LEASED:
            self.leases[index] = self.worker
        else:
            self.leases.pop(index, None)
        if target.terminal:
            self.finished[index] = target

    def _settle(self, state: ItemState) -> None:
        for index in self._with(S.PENDING):
            self._move(index, state)

    # rules

    @initialize(
        n=st.integers(min_value=1, max_value=10),
        cancelled_while_validating=st.booleans(),
    )
    def create(self, n: int, cancelled_while_validating: bool) -> None:
        self.items = [S.PENDING] * n
        if cancelled_while_validating:
            # intake.py: a batch cancelled while its lines were being stored never runs them
            self.status = transition(self.status, B.CANCELLING)
            self.finish_as = B.CANCELLED
            self._settle(S.CANCELLED)
        else:
            self.status = transition(self.status, B.IN_PROGRESS)

    @precondition(lambda self: self.status is B.IN_PROGRESS and self._with(S.PENDING))
    @rule(data=st.data(), worker=st.sampled_from(WORKERS))
    def claim(self, data: st.DataObject, worker: str) -> None:
        chosen = data.draw(
            st.lists(st.sampled_from(self._with(S.PENDING)), min_size=1, unique=True)
        )
        self.worker = worker
        for index in chosen:
            self._move(index, S.LEASED)

    @precondition(lambda self: self._with(S.LEASED))
    @rule(data=st.data(), outcome=st.sampled_from([S.SUCCEEDED, S.FAILED, S.PENDING]))
    def record_outcome(self, data: st.DataObject, outcome: ItemState) -> None:
        """The lease holder records success, a final failure, or a retry (back to pending)."""
        index = data.draw(st.sampled_from(self._with(S.LEASED)))
        self.worker = self.leases[index]
        self._move(index, outcome)

    @precondition(lambda self: self._with(S.LEASED))
    @rule(worker=st.sampled_from(WORKERS))
    def sweep_lost_leases(self, worker: str) -> None:
        """A worker died: the sweeper hands its lines back."""
        for index in [i for i, owner in self.leases.items() if owner == worker]:
            self._move(index, S.PENDING)

    @precondition(lambda self: self.status in (B.VALIDATING, B.IN_PROGRESS))
    @rule()
    def cancel(self) -> None:
        self.status = transition(self.status, B.CANCELLING)
        self.finish_as = B.CANCELLED
        self._settle(S.CANCELLED)

    @precondition(lambda self: self.status is B.IN_PROGRESS)
    @rule()
    def expire(self) -> None:
        self.status = transition(self.status, B.FINALIZING)
        self.finish_as = B.EXPIRED
        self._settle(S.EXPIRED)

    @precondition(
        lambda self: (
            (self.status is B.IN_PROGRESS and not self._with(*ACTIVE))
            or (self.status in (B.CANCELLING, B.FINALIZING) and not self._with(S.LEASED))
        )
    )
    @rule()
    def finalize(self) -> None:
        if self.status is B.IN_PROGRESS:
            self.status = transition(self.status, B.FINALIZING)
            self.finish_as = B.COMPLETED
        assert self.finish_as is not None
        if self.finish_as is B.CANCELLED:
            self._settle(S.CANCELLED)  # lines handed back after the cancel never run
        elif self.finish_as is B.EXPIRED:
            self._settle(S.EXPIRED)
        self.status = transition(self.status, self.finish_as)

    @precondition(lambda self: self.status.terminal)
    @rule(data=st.data())
    def nothing_moves_after_the_end(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(list(BatchStatus)))
        with pytest.raises(InvalidTransition):
            transition(self.status, target)

    # invariants

    @invariant()
    def leases_match_leased_lines(self) -> None:
        assert set(self.leases) == set(self._with(S.LEASED))
        assert not any(self.items[i].terminal for i in self.leases)

    @invariant()
    def counts_add_up(self) -> None:
        counts = Counter(self.items)
        assert sum(counts.values()) == len(self.items)
        processing = counts[S.PENDING] + counts[S.LEASED]
        finished = sum(counts[s] for s in TERMINAL_ITEM)
        assert processing + finished == len(self.items)

    @invariant()
    def a_finished_line_never_changes(self) -> None:
        for index, state in self.finished.items():
            assert self.items[index] is state

    @invariant()
    def a_terminal_batch_has_no_active_lines(self) -> None:
        if self.status.terminal:
            assert not self._with(*ACTIVE)

    @invariant()
    def states_agree_with_the_batch(self) -> None:
        if self.status is B.COMPLETED:
            assert set(self.items) <= {S.SUCCEEDED, S.FAILED}
        if self._with(S.CANCELLED):
            assert self.finish_as is B.CANCELLED
        if self._with(S.EXPIRED):
            assert self.finish_as is B.EXPIRED
        if self.status is B.VALIDATING:
            assert not self._with(S.LEASED)  # lines run only once the batch is in progress


BatchLifecycle.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    database=None,  # no .hypothesis directory in the working tree
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBatchLifecycle = BatchLifecycle.TestCase
