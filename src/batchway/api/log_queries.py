"""Query parameters of the routes over request logs and usage (the admin API and the
console share them): filters, periods, choices and bounded integers, each refused with a
400 naming the parameter."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import cast, get_args

from starlette.requests import Request

from batchway.core.analytics import LogFilter, UsageGroup, UsageInterval, UsageQuery
from batchway.core.models import RequestKind
from batchway.errors import InvalidRequest

__all__ = [
    "choice",
    "int_param",
    "log_filter",
    "param",
    "period",
    "time_ms",
    "usage_query",
]


def param(request: Request, name: str) -> str | None:
    """A query parameter; left empty (as a form's blank field sends it) it is absent."""
    return request.query_params.get(name) or None


def choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = param(request, name)
    if value is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of: {', '.join(choices)}.", param=name)
    return value


def time_ms(request: Request, name: str) -> int | None:
    """A time given as epoch seconds or ISO 8601 (UTC unless it says otherwise)."""
    value = param(request, name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidRequest(
                f"{name} must be epoch seconds or an ISO 8601 time.", param=name
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    try:
        if not math.isfinite(seconds):
            raise ValueError(value)
        datetime.fromtimestamp(seconds, UTC)  # a time a calendar can hold
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidRequest(f"{name} is out of range.", param=name) from exc
    return int(seconds * 1000)


def period(request: Request) -> tuple[int | None, int | None]:
    since, until = time_ms(request, "since"), time_ms(request, "until")
    if since is not None and until is not None and since > until:
        raise InvalidRequest("since must not be later than until.", param="since")
    return since, until


def int_param(request: Request, name: str, low: int, high: int) -> int | None:
    value = param(request, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an integer.", param=name) from exc
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}.", param=name)
    return number


def log_filter(request: Request) -> LogFilter:
    kind = cast(RequestKind | None, choice(request, "kind", get_args(RequestKind)))
    since, until = period(request)
    return LogFilter(
        key_id=param(request, "key"),
        model=param(request, "model"),
        provider=param(request, "provider"),
        batch_id=param(request, "batch"),
        status=param(request, "status"),
        kind=kind,
        since_ms=since,
        until_ms=until,
    )


def usage_query(request: Request) -> UsageQuery:
    """``group_by``, ``interval`` (day by default), ``since``, ``until`` and ``key``."""
    group_by = cast(UsageGroup | None, choice(request, "group_by", get_args(UsageGroup)))
    interval = cast(UsageInterval, choice(request, "interval", get_args(UsageInterval)) or "day")
    since, until = period(request)
    return UsageQuery(
        group_by=group_by,
        interval=interval,
        since_ms=since,
        until_ms=until,
        key_id=param(request, "key"),
    )
