"""Rendering the console's pages: one Jinja environment over the package's templates, with
the filters that turn figures into what a person reads (times in UTC, dollars, counts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["page"]


def _time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _time_ms(ms: int | None) -> str:
    return "" if ms is None else _time(ms / 1000)


def _usd(value: float | None) -> str:
    if value is None:
        return ""
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:,.6f}".rstrip("0")


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _body(data: bytes | None) -> str:
    if data is None:
        return ""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"({len(data):,} bytes, not UTF-8)"


_env = Environment(
    loader=PackageLoader("batchway.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(time=_time, time_ms=_time_ms, usd=_usd, count=_count, body=_body)


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A rendered page; pages are never cached (they show live figures and a form token)."""
    return HTMLResponse(
        _env.get_template(template).render(**context),
        status_code=status_code,
        headers={
            "cache-control": "no-store",
            "x-frame-options": "DENY",
            "content-security-policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "frame-ancestors 'none'; form-action 'self'"
            ),
            "referrer-policy": "same-origin",
        },
    )
