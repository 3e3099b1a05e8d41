"""The figures a batch keeps on its row: how many of its lines ended in each state, the
tokens of those that succeeded, what they cost, and the models and providers they go to.

They are kept up to date in the transaction that changes the lines (storing them adds
their models and providers, recording or settling them adds their counts, tokens and
cost), so that a listing reads a running batch's figures from its row instead of adding up
its lines. When a batch ends they are added up once more from its lines (``kept_figures``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from batchway.core.listings import (
    BatchFigures,
    FiguresChange,
    LineGroup,
    figures_from_groups,
)
from batchway.core.models import Usage
from batchway.core.states import ItemState
from batchway.store._sql_base import driver_marks
from batchway.store.plans import Many, run_many
from batchway.store.tables import batch_items, batches

__all__ = [
    "FIGURE_COLUMNS",
    "add_figures",
    "figures_step",
    "add_models",
    "clear_figures",
    "kept_figures",
    "line_figures",
]

_ADDED = (
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
)
# the columns ``core.listings.figures_of_row`` reads
FIGURE_COLUMNS = (
    batches.c.id,
    batches.c.status,
    batches.c.total,
    batches.c.models,
    batches.c.providers,
    *(batches.c[name] for name in _ADDED),
)


@functools.cache
def _add_sql(paramstyle: str) -> str:
    marks = driver_marks(paramstyle, len(_ADDED) + 1)
    sets = ", ".join(f"{name} = {name} + {mark}" for name, mark in zip(_ADDED, marks, strict=False))
    return f"UPDATE batches SET {sets} WHERE id = {marks[-1]}"


def figures_step(paramstyle: str, changes: Mapping[str, FiguresChange]) -> Many:
    """Add ``changes`` to their batches' figures, in id order (so that two writers lock the
    same rows in the same order). Straight to the driver: this runs in every transaction
    that records lines."""
    return Many(
        _add_sql(paramstyle),
        [
            (*(getattr(change, name) for name in _ADDED), batch_id)
            for batch_id, change in sorted(changes.items())
        ],
    )


async def add_figures(conn: AsyncConnection, changes: Mapping[str, FiguresChange]) -> None:
    """`figures_step`, run on ``conn``."""
    await run_many(conn, figures_step(conn.dialect.paramstyle, changes))


async def add_models(
    conn: AsyncConnection,
    batch_id: str,
    models: Iterable[str],
    providers: Iterable[str],
    *,
    lock: bool,
) -> None:
    """Add the models and providers of newly stored lines to their batch's lists (``lock``:
    hold the row until the transaction ends, where a concurrent writer could interleave)."""
    query = select(batches.c.models, batches.c.providers).where(batches.c.id == batch_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return
    merged_models = sorted({*(row.models or ()), *models})
    merged_providers = sorted({*(row.providers or ()), *providers})
    if merged_models != row.models or merged_providers != row.providers:
        await conn.execute(
            update(batches)
            .where(batches.c.id == batch_id)
            .values(models=merged_models, providers=merged_providers)
        )


async def clear_figures(conn: AsyncConnection, batch_id: str) -> None:
    """A batch whose lines are all gone adds up to nothing."""
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values({**dict.fromkeys(_ADDED, 0), "models": null(), "providers": null()})
    )


async def line_figures(conn: AsyncConnection, batch_ids: Sequence[str]) -> dict[str, BatchFigures]:
    """What the lines of these batches add up to, in one grouping query."""
    t = batch_items.c
    succeeded = t.state == ItemState.SUCCEEDED.value
    rows = (
        await conn.execute(
            select(
                t.batch_id,
                t.state,
                t.model,
                t.provider,
                func.count(),
                *(
                    func.coalesce(func.sum(case((succeeded, column), else_=0)), 0)
                    for column in (
                        t.input_tokens,
                        t.cached_tokens,
                        t.output_tokens,
                        t.reasoning_tokens,
                    )
                ),
                func.coalesce(func.sum(t.cost_usd), 0.0),
            )
            .where(t.batch_id.in_(list(batch_ids)))
            .group_by(t.batch_id, t.state, t.model, t.provider)
        )
    ).all()
    return figures_from_groups(
        LineGroup(
            batch_id=r[0],
            state=r[1],
            model=r[2],
            provider=r[3],
            lines=int(r[4]),
            usage=Usage(
                input_tokens=int(r[5]),
                cached_tokens=int(r[6]),
                output_tokens=int(r[7]),
                reasoning_tokens=int(r[8]),
            ),
            cost_usd=float(r[9]),
        )
        for r in rows
    )


async def kept_figures(conn: AsyncConnection, batch_id: str) -> dict[str, Any]:
    """The columns an ending batch keeps what its lines add up to in, added up from its
    lines: cost, models, providers and tokens."""
    figures = (await line_figures(conn, [batch_id])).get(batch_id, BatchFigures())
    return {
        "cost_usd": figures.cost_usd,
        "models": list(figures.models),
        "providers": list(figures.providers),
        "input_tokens": figures.usage.input_tokens,
        "cached_tokens": figures.usage.cached_tokens,
        "output_tokens": figures.usage.output_tokens,
        "reasoning_tokens": figures.usage.reasoning_tokens,
    }
