"""The admin API over the request logs: ``GET /admin/logs`` (JSON or CSV) and
``GET /admin/usage``. Every route needs the config's ``admin_key``."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchway.api.auth import authenticate_admin
from batchway.api.disposition import attachment
from batchway.api.log_queries import choice, int_param, log_filter, usage_query
from batchway.api.openai.routes import json_response
from batchway.core.analytics import (
    LogFilter,
    UsageTotals,
)
from batchway.core.models import RequestLog
from batchway.gateway import Gateway
from batchway.store.logs import SqlRequestLogs

__all__ = ["log_routes"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CSV_PAGE = 1000  # rows read per query while streaming a CSV export
CSV_COLUMNS = [
    "id",
    "created_at",
    "created_at_iso",
    "kind",
    "key_id",
    "model",
    "provider",
    "upstream_model",
    "endpoint",
    "batch_id",
    "custom_id",
    "item_id",
    "status",
    "status_code",
    "error_code",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "latency_ms",
    "cost_usd",
    "retries",
    "request_id",
]


def _logs(request: Request) -> SqlRequestLogs:
    gateway: Gateway = request.app.state.gateway
    authenticate_admin(request, gateway.keys)
    return gateway.logs


# -- rendering --------------------------------------------------------------------------


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _body(data: bytes) -> tuple[str, str]:
    """A stored body as text, and how it is encoded (UTF-8 text, or base64 otherwise)."""
    try:
        return data.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _row(log: RequestLog) -> list[Any]:
    return [
        log.id,
        log.created_at_ms / 1000,
        _iso(log.created_at_ms),
        log.kind,
        log.key_id,
        log.model,
        log.provider,
        log.upstream_model,
        log.endpoint,
        log.batch_id,
        log.custom_id,
        log.item_id,
        log.status,
        log.status_code,
        log.error_code,
        log.usage.input_tokens,
        log.usage.cached_tokens,
        log.usage.output_tokens,
        log.latency_ms,
        log.cost_usd,
        log.retries,
        log.request_id,
    ]


def _log_json(log: RequestLog) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "gateway.request_log",
        **dict(zip(CSV_COLUMNS, _row(log), strict=True)),
    }
    for name, body in (("request_body", log.request_body), ("response_body", log.response_body)):
        if body is not None:
            data[name], data[f"{name}_encoding"] = _body(body)
    return data


def _totals_json(totals: UsageTotals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "cached_tokens": totals.cached_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": totals.cost_usd,
        "errors": totals.errors,
    }


async def _csv(logs: SqlRequestLogs, filters: LogFilter, after: int | None) -> AsyncIterator[str]:
    """Every matching row from ``after`` on, one query per page so memory stays flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    before = after
    while True:
        page = await logs.query(filters, limit=CSV_PAGE, before_id=before, bodies=False)
        for log in page.items:
            writer.writerow(_row(log))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not page.has_more:
            return
        before = page.items[-1].id


# -- routes -----------------------------------------------------------------------------


async def list_logs(request: Request) -> Response:
    logs = _logs(request)
    filters = log_filter(request)
    limit = int_param(request, "limit", 1, MAX_LIMIT)
    after = int_param(request, "after", 1, 2**63 - 1)
    if choice(request, "format", ("json", "csv")) == "csv":
        return StreamingResponse(
            _csv(logs, filters, after),
            media_type="text/csv",
            headers={"content-disposition": attachment("batchway-logs.csv")},
        )
    page = await logs.query(filters, limit=limit or DEFAULT_LIMIT, before_id=after)
    data = [_log_json(log) for log in page.items]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }
    )


async def usage(request: Request) -> Response:
    logs = _logs(request)
    query = usage_query(request)
    group_by, interval = query.group_by, query.interval
    report = await logs.usage(query)
    return json_response(
        {
            "object": "usage",
            "interval": interval,
            "group_by": group_by,
            "totals": {
                "all": _totals_json(report.overall),
                "batch": _totals_json(report.batch),
                "interactive": _totals_json(report.interactive),
            },
            "series": [
                {
                    "start": row.bucket_start_ms // 1000,
                    "start_iso": _iso(row.bucket_start_ms),
                    "group": row.group,
                    "kind": row.kind,
                    **_totals_json(row.totals),
                }
                for row in report.series
            ],
        }
    )


def log_routes() -> list[Route]:
    return [
        Route("/admin/logs", list_logs, methods=["GET"]),
        Route("/admin/usage", usage, methods=["GET"]),
    ]
