"""Batch and line states, and the transitions allowed between them, as data.

There is one internal lifecycle. The OpenAI ``status`` and the Anthropic
``processing_status`` and result types are mappings over it, made in ``api/``.
"""

from __future__ import annotations

from enum import StrEnum

from batchway.errors import InvalidTransition

__all__ = [
    "BATCH_TRANSITIONS",
    "ITEM_TRANSITIONS",
    "BatchStatus",
    "ItemState",
    "transition",
]


class BatchStatus(StrEnum):
    """Where a batch is in its life."""

    VALIDATING = "validating"  # input being checked, lines being stored
    FAILED = "failed"  # input failed validation; nothing ran
    IN_PROGRESS = "in_progress"  # lines running
    FINALIZING = "finalizing"  # all lines ended; result files being written
    COMPLETED = "completed"  # result files ready
    EXPIRED = "expired"  # the completion window ended first; partial results
    CANCELLING = "cancelling"  # cancel asked; in-flight lines draining
    CANCELLED = "cancelled"  # cancel done; partial results

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_BATCH


class ItemState(StrEnum):
    """Where one line of a batch is."""

    PENDING = "pending"  # waiting to run (maybe not before a retry time)
    LEASED = "leased"  # a worker holds it and is calling the provider
    SUCCEEDED = "succeeded"  # the provider answered 2xx
    FAILED = "failed"  # a final error: the line goes to the error file
    CANCELLED = "cancelled"  # never ran: the batch was cancelled
    EXPIRED = "expired"  # never ran: the completion window ended

    @property
    def terminal(self) -> bool:
        return self not in (ItemState.PENDING, ItemState.LEASED)


_TERMINAL_BATCH = frozenset(
    {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)

# A worker that gives up on a batch (its steps kept failing) ends it at once: validating →
# failed or expired, in_progress → failed or expired, finalizing → failed or expired.
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.VALIDATING: frozenset(
        {BatchStatus.IN_PROGRESS, BatchStatus.FAILED, BatchStatus.CANCELLING, BatchStatus.EXPIRED}
    ),
    BatchStatus.IN_PROGRESS: frozenset(
        {
            BatchStatus.FINALIZING,
            BatchStatus.CANCELLING,
            BatchStatus.FAILED,
            BatchStatus.EXPIRED,
        }
    ),
    # expiry passes through finalizing too: the result files are written there
    BatchStatus.FINALIZING: frozenset(
        {BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.FAILED}
    ),
    BatchStatus.CANCELLING: frozenset({BatchStatus.CANCELLED}),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.EXPIRED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}

ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    ItemState.PENDING: frozenset(
        {ItemState.LEASED, ItemState.FAILED, ItemState.CANCELLED, ItemState.EXPIRED}
    ),
    # back to pending on a retryable error or a lost lease; cancelled or expired when the
    # batch stopped before a claimed line was sent
    ItemState.LEASED: frozenset(
        {
            ItemState.PENDING,
            ItemState.SUCCEEDED,
            ItemState.FAILED,
            ItemState.CANCELLED,
            ItemState.EXPIRED,
        }
    ),
    ItemState.SUCCEEDED: frozenset(),
    ItemState.FAILED: frozenset(),
    ItemState.CANCELLED: frozenset(),
    ItemState.EXPIRED: frozenset(),
}


def transition(current: BatchStatus, target: BatchStatus) -> BatchStatus:
    """Check that a batch may go from ``current`` to ``target``; return ``target``."""
    if target not in BATCH_TRANSITIONS[current]:
        raise InvalidTransition(f"a batch that is {current.value} cannot become {target.value}")
    return target
