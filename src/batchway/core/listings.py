"""What the console lists: batches of every key with their figures so far, and a batch's
lines one page at a time. Pure data: the queries live in the stores."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from batchway.core.models import RequestCounts, Usage
from batchway.core.states import BatchStatus, ItemState

__all__ = [
    "BatchFigures",
    "BatchFilter",
    "FiguresChange",
    "LineFilter",
    "LineGroup",
    "LineView",
    "counts_from_states",
    "figures_from_groups",
    "figures_of_row",
    "line_view",
    "ended_lines",
    "figures_changes",
]


def counts_from_states(total: int, by_state: dict[str, int]) -> RequestCounts:
    """Counts of a batch of ``total`` lines from how many are in each state;
    ``processing`` is pending plus leased."""
    return RequestCounts(
        total=total,
        processing=by_state.get(ItemState.PENDING, 0) + by_state.get(ItemState.LEASED, 0),
        succeeded=by_state.get(ItemState.SUCCEEDED, 0),
        failed=by_state.get(ItemState.FAILED, 0),
        cancelled=by_state.get(ItemState.CANCELLED, 0),
        expired=by_state.get(ItemState.EXPIRED, 0),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFilter:
    """Which batches to list, of any key; every field left None matches everything."""

    owner: str | None = None
    status: BatchStatus | None = None
    model: str | None = None  # a batch any of whose lines asks for this public model


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFigures:
    """What a batch's lines add up to so far (live while it runs)."""

    counts: RequestCounts = field(default_factory=RequestCounts)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    models: tuple[str, ...] = ()  # the public models its lines ask for, sorted
    providers: tuple[str, ...] = ()  # the providers its lines go to, sorted


@dataclass(frozen=True, slots=True, kw_only=True)
class FiguresChange:
    """What lines changing state add to the figures their batch keeps as it runs: how many
    ended in each state, the tokens of those that succeeded, and the change in cost."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0


# where each ended state is counted in a change's sums
_COUNTED = {
    ItemState.SUCCEEDED: 0,
    ItemState.FAILED: 1,
    ItemState.CANCELLED: 2,
    ItemState.EXPIRED: 3,
}


def figures_changes(
    lines: Iterable[tuple[str, ItemState, Usage | None, float]],
) -> dict[str, FiguresChange]:
    """What leased or pending lines moving to a state add to their batches' figures, from
    ``(batch id, new state, usage, change in cost)`` for each line. A line going back to
    pending is not counted; tokens count only for lines that succeeded, as a batch's usage
    does. Batches whose figures do not change are left out."""
    sums: dict[str, list[float]] = {}
    for batch_id, state, usage, cost in lines:
        s = sums.get(batch_id)
        if s is None:
            s = sums[batch_id] = [0, 0, 0, 0, 0, 0, 0, 0, 0.0]
        index = _COUNTED.get(state)
        if index is not None:
            s[index] += 1
        if state is ItemState.SUCCEEDED and usage is not None:
            s[4] += usage.input_tokens
            s[5] += usage.cached_tokens
            s[6] += usage.output_tokens
            s[7] += usage.reasoning_tokens
        s[8] += cost
    return {
        batch_id: FiguresChange(
            succeeded=int(s[0]),
            failed=int(s[1]),
            cancelled=int(s[2]),
            expired=int(s[3]),
            input_tokens=int(s[4]),
            cached_tokens=int(s[5]),
            output_tokens=int(s[6]),
            reasoning_tokens=int(s[7]),
            cost_usd=s[8],
        )
        for batch_id, s in sums.items()
        if any(s)
    }


def ended_lines(batch_id: str, state: ItemState, lines: int) -> dict[str, FiguresChange]:
    """What ``lines`` lines of a batch ending as ``state`` (unrecorded: no tokens, no cost)
    add to its figures."""
    return figures_changes([(batch_id, state, None, 0.0)] * lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class LineFilter:
    """Which of a batch's lines to list."""

    state: ItemState | None = None
    custom_id: str | None = None  # exactly this custom_id


@dataclass(frozen=True, slots=True, kw_only=True)
class LineView:
    """One line of a batch as a person reads it (its bodies are left unread)."""

    id: str
    line: int  # 1-based line number in the input file
    custom_id: str
    model: str
    provider: str
    state: ItemState
    attempts: int
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    finished_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LineGroup:
    """The lines of one batch that share a state, model and provider, added up (what the
    stores' one grouping query gives back)."""

    batch_id: str
    state: str
    model: str
    provider: str
    lines: int
    usage: Usage  # of the succeeded lines only, as a batch's own usage counts
    cost_usd: float


def figures_from_groups(groups: Iterable[LineGroup]) -> dict[str, BatchFigures]:
    """Each batch's figures from its line groups."""
    states: dict[str, dict[str, int]] = {}
    usage: dict[str, list[int]] = {}
    cost: dict[str, float] = {}
    models: dict[str, set[str]] = {}
    providers: dict[str, set[str]] = {}
    for g in groups:
        by_state = states.setdefault(g.batch_id, {})
        by_state[g.state] = by_state.get(g.state, 0) + g.lines
        sums = usage.setdefault(g.batch_id, [0, 0, 0, 0])
        for i, n in enumerate(
            (
                g.usage.input_tokens,
                g.usage.cached_tokens,
                g.usage.output_tokens,
                g.usage.reasoning_tokens,
            )
        ):
            sums[i] += n
        cost[g.batch_id] = cost.get(g.batch_id, 0.0) + g.cost_usd
        models.setdefault(g.batch_id, set()).add(g.model)
        providers.setdefault(g.batch_id, set()).add(g.provider)
    return {
        batch_id: BatchFigures(
            counts=counts_from_states(sum(by_state.values()), by_state),
            usage=Usage(
                input_tokens=usage[batch_id][0],
                cached_tokens=usage[batch_id][1],
                output_tokens=usage[batch_id][2],
                reasoning_tokens=usage[batch_id][3],
            ),
            cost_usd=cost[batch_id],
            models=tuple(sorted(models[batch_id])),
            providers=tuple(sorted(providers[batch_id])),
        )
        for batch_id, by_state in states.items()
    }


def figures_of_row(row: Any) -> BatchFigures | None:
    """A batch's figures from its row's figure columns (``status``, ``total``, a count per
    ended state, tokens, ``cost_usd``, ``models``, ``providers``); None when the row cannot
    say (the batch is still storing its lines, or has none): its lines are added up instead.
    The SQL store and the memory fake read their rows with this one rule."""
    status = BatchStatus(row.status)
    if status is BatchStatus.VALIDATING:
        return None
    has_lines = row.models is not None and row.total > 0 if status.terminal else bool(row.models)
    if not has_lines or row.models is None:
        return None
    ended = row.succeeded + row.failed + row.cancelled + row.expired
    return BatchFigures(
        counts=RequestCounts(
            total=row.total,
            processing=0 if status.terminal else row.total - ended,
            succeeded=row.succeeded,
            failed=row.failed,
            cancelled=row.cancelled,
            expired=row.expired,
        ),
        usage=Usage(
            input_tokens=row.input_tokens,
            cached_tokens=row.cached_tokens,
            output_tokens=row.output_tokens,
            reasoning_tokens=row.reasoning_tokens,
        ),
        cost_usd=row.cost_usd,
        models=tuple(row.models),
        providers=tuple(row.providers or ()),
    )


def line_view(row: Any) -> LineView:
    """A line as the console shows it, from a row with the line's columns."""
    return LineView(
        id=str(row.id),
        line=row.line,
        custom_id=row.custom_id,
        model=row.model,
        provider=row.provider,
        state=ItemState(row.state),
        attempts=row.attempts,
        status_code=row.status_code,
        error_code=row.error_code,
        error_message=row.error_message,
        usage=Usage(
            input_tokens=row.input_tokens,
            cached_tokens=row.cached_tokens,
            output_tokens=row.output_tokens,
            reasoning_tokens=row.reasoning_tokens,
        ),
        cost_usd=row.cost_usd,
        finished_at=row.finished_at,
    )
