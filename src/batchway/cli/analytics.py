"""``batchway usage`` and ``batchway logs``: the request logs, read straight from the
database the config names."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from batchway.cli.common import ConfigOption, console, load_settings, with_gateway
from batchway.core import clock
from batchway.core.analytics import LogFilter, UsageQuery, UsageReport, UsageTotals
from batchway.core.models import Page, RequestLog
from batchway.gateway import Gateway

__all__ = ["logs_command", "parse_since", "usage_command"]

_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")


class GroupOption(StrEnum):
    key = "key"
    model = "model"
    provider = "provider"


class IntervalOption(StrEnum):
    hour = "hour"
    day = "day"


SinceOption = Annotated[
    str | None,
    typer.Option(help='From when: "30m", "24h", "7d", "2w" ago, or an ISO date or time (UTC).'),
]


def parse_since(value: str, now: float) -> int:
    """``value`` as epoch ms: a duration before ``now`` ("24h", "7d") or an ISO 8601 time."""
    relative = _RELATIVE.fullmatch(value.strip())
    if relative:
        return int((now - float(relative[1]) * _UNITS[relative[2]]) * 1000)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            'use a duration such as "24h" or "7d", or an ISO date such as 2025-01-31',
            param_hint="--since",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _since_ms(since: str | None) -> int | None:
    return parse_since(since, clock.now_float()) if since is not None else None


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cost(usd: float) -> str:
    return f"{usd:.6f}"


def _totals_cells(totals: UsageTotals) -> list[str]:
    return [
        str(totals.requests),
        str(totals.input_tokens),
        str(totals.cached_tokens),
        str(totals.output_tokens),
        _cost(totals.cost_usd),
        str(totals.errors),
    ]


_TOTAL_COLUMNS = ("requests", "input", "cached", "output", "cost usd", "errors")


async def _key_names(gateway: Gateway) -> dict[str, str]:
    return {key.id: key.name for key in await gateway.keys.list()}


def _key_label(key_id: str, names: dict[str, str]) -> str:
    """A key as a person knows it: its name, with the id that commands take."""
    name = names.get(key_id)
    return f"{name} ({key_id})" if name is not None else key_id


def _print_usage(report: UsageReport, names: dict[str, str]) -> None:
    query = report.query
    grouped = query.group_by is not None
    series = Table(
        "start (UTC)",
        *([query.group_by or ""] if grouped else []),
        "kind",
        *_TOTAL_COLUMNS,
        title=f"usage per {query.interval}",
    )
    for row in report.series:
        series.add_row(
            _time(row.bucket_start_ms),
            *([escape(_group_label(row.group, query, names))] if grouped else []),
            row.kind,
            *_totals_cells(row.totals),
        )
    console.print(series)
    totals = Table("", *_TOTAL_COLUMNS, title="totals")
    totals.add_row("batch", *_totals_cells(report.batch))
    totals.add_row("interactive", *_totals_cells(report.interactive))
    totals.add_row("all", *_totals_cells(report.overall))
    console.print(totals)


def _group_label(group: str | None, query: UsageQuery, names: dict[str, str]) -> str:
    if group is None:
        return ""
    return _key_label(group, names) if query.group_by == "key" else group


def usage_command(
    config: ConfigOption = None,
    by: Annotated[
        GroupOption | None, typer.Option("--by", help="One row per key, model or provider.")
    ] = None,
    interval: Annotated[
        IntervalOption, typer.Option(help="The width of a row's time bucket.")
    ] = IntervalOption.day,
    since: SinceOption = None,
    key: Annotated[str | None, typer.Option(help="Only this key's calls (its id).")] = None,
) -> None:
    """Calls, tokens and cost over time, from the request logs."""
    query = UsageQuery(
        group_by=by.value if by is not None else None,
        interval=interval.value,
        since_ms=_since_ms(since),
        key_id=key,
    )

    async def read(gateway: Gateway) -> tuple[UsageReport, dict[str, str]]:
        return await gateway.logs.usage(query), await _key_names(gateway)

    report, names = with_gateway(load_settings(config), read)
    _print_usage(report, names)


def _print_logs(page: Page[RequestLog], names: dict[str, str]) -> None:
    table = Table(
        "time (UTC)",
        "key",
        "model",
        "provider",
        "batch/custom_id",
        "status",
        "tokens in/out",
        "latency ms",
        "cost usd",
    )
    for log in page.items:
        line = f"{log.batch_id}/{log.custom_id or ''}" if log.batch_id else ""
        table.add_row(
            _time(log.created_at_ms),
            escape(_key_label(log.key_id, names)),
            escape(log.model),
            escape(log.provider),
            escape(line),
            escape(log.status),
            f"{log.usage.input_tokens}/{log.usage.output_tokens}",
            f"{log.latency_ms:.0f}" if log.latency_ms is not None else "",
            _cost(log.cost_usd),
        )
    console.print(table)
    if page.has_more:
        console.print(f"(more: older than id {page.items[-1].id})")


def logs_command(
    config: ConfigOption = None,
    key: Annotated[str | None, typer.Option(help="Only this key's calls (its id).")] = None,
    model: Annotated[str | None, typer.Option(help="Only calls to this model.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only calls to this provider.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only lines of this batch.")] = None,
    status: Annotated[
        str | None, typer.Option(help='Only calls with this status ("succeeded", "failed"…).')
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    since: SinceOption = None,
) -> None:
    """The latest upstream calls, newest first, from the request logs."""
    filters = LogFilter(
        key_id=key,
        model=model,
        provider=provider,
        batch_id=batch,
        status=status,
        since_ms=_since_ms(since),
    )

    async def read(gateway: Gateway) -> tuple[Page[RequestLog], dict[str, str]]:
        page = await gateway.logs.query(filters, limit=limit, before_id=None, bodies=False)
        return page, await _key_names(gateway)

    page, names = with_gateway(load_settings(config), read)
    _print_logs(page, names)
