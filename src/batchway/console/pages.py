"""The console's pages: sign-in, batches, a batch with its lines, request logs, usage and
keys. Each handler reads the visit (who is signed in), asks one core service and renders.

Every page needs a session; every form that changes something carries the session's token.
Errors are pages too, with the status an API would answer (never a 500 for bad input).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from batchway.api.body import read_body
from batchway.api.disposition import attachment
from batchway.api.log_queries import int_param, log_filter, param, usage_query
from batchway.console.render import page
from batchway.console.session import ADMIN_SUBJECT, LOGIN_COOKIE, SESSION_COOKIE, Session, Sessions
from batchway.core.analytics import INTERVAL_MS, UsageGroup, UsageQuery, UsageReport
from batchway.core.keys import ADMIN
from batchway.core.listings import BatchFilter, LineFilter
from batchway.core.models import BudgetPeriod, Principal
from batchway.core.states import BatchStatus, ItemState
from batchway.errors import AuthError, GatewayError, InvalidRequest, NotFound
from batchway.gateway import Gateway

__all__ = ["Visit", "handlers"]

Handler = Callable[[Request, "Visit"], Awaitable[Response]]

_PERIODS = {"24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
_LIMIT_FIELDS = ("rpm", "rph", "tpm", "tph")
MAX_BUCKETS = 2_000  # time buckets one usage page may draw
MAX_FORM_BYTES = 64 * 1024  # a console form is a few fields; anything larger is refused
MAX_FORM_FIELDS = 100


@dataclass(frozen=True, slots=True)
class Visit:
    """Who is looking: their principal, and what every page shows of them."""

    gateway: Gateway
    sessions: Sessions
    session: Session
    principal: Principal
    name: str

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin

    def context(self, request: Request, **values: Any) -> dict[str, Any]:
        return {
            "request": request,
            "visit": self,
            "token": self.sessions.form_token(self.session),
            "refresh_seconds": self.gateway.config.console.refresh_seconds,
            **values,
        }


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console_sessions
    return sessions


async def _visit(request: Request) -> Visit | None:
    gateway, sessions = _gateway(request), _sessions(request)
    session = sessions.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    if session.is_admin:
        if gateway.config.admin_key is None:
            return None
        return Visit(gateway, sessions, session, ADMIN, "admin")
    key = await gateway.keys.active(session.subject)
    if key is None:  # revoked (or deleted) since sign-in
        return None
    return Visit(gateway, sessions, session, key.principal(), key.name)


def _error_page(request: Request, visit: Visit | None, exc: GatewayError) -> Response:
    context = visit.context(request) if visit is not None else {"request": request}
    return page(
        "error.html", exc.status_code, message=exc.message, status=exc.status_code, **context
    )


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page for a signed-in visit: others go to the sign-in page; a form that changes
    something must carry the session's token."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        visit = await _visit(request)
        if visit is None:
            if request.method != "GET":
                return page(
                    "error.html", 401, request=request, message="Sign in first.", status=401
                )
            return RedirectResponse(f"/console/login?next={quote(request.url.path)}", 303)
        try:
            if request.method == "POST":
                form = await read_form(request)
                token = form.get("csrf")
                if not visit.sessions.form_token_ok(
                    visit.session, token if isinstance(token, str) else None
                ):
                    raise AuthError("This form has expired; reload the page and try again.")
            return await handler(request, visit)
        except GatewayError as exc:
            return _error_page(request, visit, exc)

    return endpoint


def admin_only(handler: Handler) -> Handler:
    async def endpoint(request: Request, visit: Visit) -> Response:
        if not visit.is_admin:
            raise NotFound("This page is for the admin only.")
        return await handler(request, visit)

    return endpoint


async def read_form(request: Request) -> FormData:
    """The page's form (URL-encoded, as the console's forms send it), at most
    ``MAX_FORM_BYTES``: read once, then kept for the handler."""
    kept = getattr(request.state, "form", None)
    if isinstance(kept, FormData):
        return kept
    raw = await read_body(request, MAX_FORM_BYTES)
    try:
        fields = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("The form could not be read.") from exc
    form = FormData(list[tuple[str, str | UploadFile]](fields))
    request.state.form = form
    return form


# -- signing in ---------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console/batches"


def _login_page(request: Request, status: int = 200, message: str | None = None) -> Response:
    token = Sessions.login_token()
    response = page(
        "login.html",
        status,
        request=request,
        token=token,
        message=message,
        next=_safe_next(request.query_params.get("next")),
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, path="/console", httponly=True, samesite="strict"
    )
    return response


async def login_form(request: Request) -> Response:
    if await _visit(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
    return _login_page(request)


async def login(request: Request) -> Response:
    gateway, sessions = _gateway(request), _sessions(request)
    try:
        form = await read_form(request)
    except GatewayError as exc:
        return page("error.html", exc.status_code, request=request, message=exc.message)
    sent, expected = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
    if not isinstance(sent, str) or not expected or sent != expected:
        return _login_page(request, 400, "The sign-in form expired; try again.")
    key = str(form.get("key") or "").strip()
    if key.isascii() and gateway.keys.is_admin(key):
        subject = ADMIN_SUBJECT
    else:
        try:
            subject = (await gateway.keys.authenticate(key or None)).key_id
        except AuthError:
            return _login_page(request, 401, "That key is not valid.")
    target = form.get("next")
    response = RedirectResponse(_safe_next(target if isinstance(target, str) else None), 303)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(subject),
        max_age=sessions.max_age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


async def logout(request: Request, visit: Visit) -> Response:
    response = RedirectResponse("/console/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/console/batches", 303)


# -- batches ------------------------------------------------------------------------------


def _status(value: str | None) -> BatchStatus | None:
    if value is None:
        return None
    try:
        return BatchStatus(value)
    except ValueError as exc:
        raise InvalidRequest(f"No batch status {value!r}.", param="status") from exc


def _state(value: str | None) -> ItemState | None:
    if value is None:
        return None
    try:
        return ItemState(value)
    except ValueError as exc:
        raise InvalidRequest(f"No line state {value!r}.", param="state") from exc


async def _key_names(visit: Visit) -> dict[str, str]:
    if not visit.is_admin:
        return {visit.principal.key_id: visit.name}
    return {key.id: key.name for key in await visit.gateway.keys.list()}


def _query(request: Request, **changes: Any) -> str:
    """This page's query string with ``changes`` (a None value drops a parameter)."""
    values = {k: v for k, v in request.query_params.items() if v}
    for name, value in changes.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = str(value)
    return urlencode(values)


async def batches(request: Request, visit: Visit) -> Response:
    filters = BatchFilter(
        owner=param(request, "key"),
        status=_status(param(request, "status")),
        model=param(request, "model"),
    )
    rows = await visit.gateway.overview.batches(
        visit.principal,
        filters,
        limit=visit.gateway.config.console.page_size,
        after=param(request, "after"),
    )
    return page(
        "batches.html",
        **visit.context(
            request,
            rows=rows,
            filters=filters,
            statuses=[s.value for s in BatchStatus],
            keys=await _key_names(visit),
            models=sorted(visit.gateway.config.models),
            next_page=_query(request, after=rows.items[-1].batch.id) if rows.has_more else None,
        ),
    )


async def batch(request: Request, visit: Visit) -> Response:
    batch_id = request.path_params["batch_id"]
    overview = visit.gateway.overview
    row = await overview.batch(visit.principal, batch_id)
    state = _state(param(request, "state"))
    lines = await overview.lines(
        visit.principal,
        batch_id,
        LineFilter(state=state, custom_id=param(request, "custom_id")),
        limit=visit.gateway.config.console.page_size,
        after_line=int_param(request, "after_line", 0, 2**31),
    )
    return page(
        "batch.html",
        **visit.context(
            request,
            row=row,
            lines=lines,
            state=state,
            custom_id=param(request, "custom_id") or "",
            states=[s.value for s in ItemState],
            keys=await _key_names(visit),
            next_page=_query(request, after_line=lines.items[-1].line.line)
            if lines.has_more
            else None,
        ),
    )


async def batch_progress(request: Request, visit: Visit) -> Response:
    row = await visit.gateway.overview.batch(visit.principal, request.path_params["batch_id"])
    return page("_progress.html", **visit.context(request, row=row))


async def cancel_batch(request: Request, visit: Visit) -> Response:
    batch_id = request.path_params["batch_id"]
    await visit.gateway.batches.cancel(visit.principal, batch_id)
    return RedirectResponse(f"/console/batches/{quote(batch_id)}", 303)


async def file_content(request: Request, visit: Visit) -> Response:
    file, chunks = await visit.gateway.files.content(
        visit.principal, request.path_params["file_id"]
    )
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "content-length": str(file.bytes),
            "content-disposition": attachment(file.filename),
        },
    )


# -- request logs -------------------------------------------------------------------------


async def logs(request: Request, visit: Visit) -> Response:
    filters = log_filter(request)
    found = await visit.gateway.overview.logs(
        visit.principal,
        filters,
        limit=visit.gateway.config.console.page_size,
        before_id=int_param(request, "before", 1, 2**63 - 1),
    )
    return page(
        "logs.html",
        **visit.context(
            request,
            logs=found,
            filters=filters,
            keys=await _key_names(visit),
            models=sorted(visit.gateway.config.models),
            providers=sorted(visit.gateway.config.providers),
            since=param(request, "since") or "",
            until=param(request, "until") or "",
            next_page=_query(request, before=found.items[-1].id) if found.has_more else None,
        ),
    )


async def log(request: Request, visit: Visit) -> Response:
    try:
        log_id = int(request.path_params["log_id"])
    except ValueError as exc:
        raise NotFound("No such request log.") from exc
    entry = await visit.gateway.overview.log(visit.principal, log_id)
    return page(
        "log.html",
        **visit.context(
            request,
            log=entry,
            keys=await _key_names(visit),
            bodies_kept=visit.gateway.config.logs.record_bodies,
        ),
    )


# -- usage --------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _usage_period(request: Request, query: UsageQuery) -> tuple[UsageQuery, str]:
    """The period asked for: ``period`` (24h, 7d, 30d; 7d by default) unless since/until."""
    if query.since_ms is not None or query.until_ms is not None:
        if query.since_ms is None:
            raise InvalidRequest("A custom period needs since.", param="since")
        until = query.until_ms if query.until_ms is not None else _now_ms()
        if (until - query.since_ms) // INTERVAL_MS[query.interval] > MAX_BUCKETS:
            raise InvalidRequest(
                f"That period has more than {MAX_BUCKETS:,} {query.interval}s; "
                "choose a shorter one or a longer interval.",
                param="since",
            )
        return query, "custom"
    name = param(request, "period") or "7d"
    if name not in _PERIODS:
        raise InvalidRequest(f"period must be one of: {', '.join(_PERIODS)}.", param="period")
    now_ms = _now_ms()
    width = INTERVAL_MS[query.interval]
    since = (now_ms - _PERIODS[name]) // width * width  # from the start of a whole bucket
    return UsageQuery(
        group_by=query.group_by, interval=query.interval, since_ms=since, key_id=query.key_id
    ), name


def _chart(report: UsageReport, now_ms: int) -> dict[str, Any]:
    """The usage series as the chart draws it: every bucket of the period (empty ones as
    zeros), batch and interactive apart, in uPlot's columnar shape."""
    query = report.query
    width = INTERVAL_MS[query.interval]
    starts = [row.bucket_start_ms for row in report.series]
    first = query.since_ms if query.since_ms is not None else min(starts, default=now_ms)
    last = query.until_ms if query.until_ms is not None else now_ms
    buckets = range(first // width * width, max(first, last - 1) // width * width + 1, width)
    index = {start: i for i, start in enumerate(buckets)}
    columns: dict[str, list[float]] = {
        f"{kind}_{figure}": [0.0] * len(buckets)
        for kind in ("batch", "interactive")
        for figure in ("cost", "tokens", "requests")
    }
    for row in report.series:
        i = index.get(row.bucket_start_ms)
        if i is None:
            continue
        t = row.totals
        columns[f"{row.kind}_cost"][i] += t.cost_usd
        columns[f"{row.kind}_tokens"][i] += t.input_tokens + t.output_tokens
        columns[f"{row.kind}_requests"][i] += t.requests
    return {"x": [start / 1000 for start in buckets], **columns}


async def usage(request: Request, visit: Visit) -> Response:
    query, period_name = _usage_period(request, usage_query(request))
    overview = visit.gateway.overview
    report = await overview.usage(visit.principal, query)
    groups: dict[str | None, dict[str, Any]] = {}
    for row in report.series:
        entry = groups.setdefault(row.group, {"batch": None, "interactive": None})
        entry[row.kind] = (entry[row.kind] + row.totals) if entry[row.kind] else row.totals
    return page(
        "usage.html",
        **visit.context(
            request,
            report=report,
            query=query,
            period=period_name,
            periods=list(_PERIODS),
            group_choices=list(get_args(UsageGroup)),
            groups=groups,
            savings=await overview.batch_savings(visit.principal, query),
            chart=_chart(report, _now_ms()),
            keys=await _key_names(visit),
        ),
    )


# -- keys ---------------------------------------------------------------------------------


def _optional_number(form: FormData, name: str, kind: type[int] | type[float]) -> Any:
    raw = str(form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be a number.", param=name) from exc
    if value < (0 if kind is float else 1):
        raise InvalidRequest(f"{name} must be at least {0 if kind is float else 1}.", param=name)
    return value


def _key_settings(form: FormData) -> dict[str, Any]:
    """A key's settings from the key form: a blank limit is no limit."""
    name = str(form.get("name") or "").strip()
    if not name or len(name) > 200:
        raise InvalidRequest("A key needs a name of 1 to 200 characters.", param="name")
    period = str(form.get("budget_period") or "") or None
    if period is not None and period not in get_args(BudgetPeriod):
        raise InvalidRequest("budget_period must be day or month.", param="budget_period")
    models = [m.strip() for m in str(form.get("models") or "").split(",") if m.strip()]
    settings: dict[str, Any] = {
        "name": name,
        "budget_usd": _optional_number(form, "budget_usd", float),
        "budget_period": period,
        "models": models or None,
    }
    for field in _LIMIT_FIELDS:
        settings[field] = _optional_number(form, field, int)
    return settings


@admin_only
async def keys(request: Request, visit: Visit) -> Response:
    standings = await visit.gateway.overview.key_standings()
    return page("keys.html", **visit.context(request, standings=standings, created=None))


@admin_only
async def create_key(request: Request, visit: Visit) -> Response:
    settings = _key_settings(await read_form(request))
    key, secret = await visit.gateway.keys.create(**settings)
    standings = await visit.gateway.overview.key_standings()
    return page("keys.html", **visit.context(request, standings=standings, created=(key, secret)))


async def _key_of(visit: Visit, key_id: str) -> Any:
    for key in await visit.gateway.keys.list():
        if key.id == key_id:
            return key
    raise NotFound(f"No key with id {key_id!r}.")


@admin_only
async def key(request: Request, visit: Visit) -> Response:
    found = await _key_of(visit, request.path_params["key_id"])
    standing = await visit.gateway.overview.key_standing(found)
    return page("key.html", **visit.context(request, standing=standing))


@admin_only
async def update_key(request: Request, visit: Visit) -> Response:
    key_id = request.path_params["key_id"]
    await visit.gateway.keys.update(key_id, _key_settings(await read_form(request)))
    return RedirectResponse(f"/console/keys/{quote(key_id)}", 303)


@admin_only
async def revoke_key(request: Request, visit: Visit) -> Response:
    await visit.gateway.admin.revoke_key(request.path_params["key_id"])
    return RedirectResponse("/console/keys", 303)


def handlers() -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """Every endpoint by name, the signed-in ones wrapped."""
    return {
        "home": home,
        "login_form": login_form,
        "login": login,
        "logout": signed_in(logout),
        "batches": signed_in(batches),
        "batch": signed_in(batch),
        "batch_progress": signed_in(batch_progress),
        "cancel_batch": signed_in(cancel_batch),
        "file_content": signed_in(file_content),
        "logs": signed_in(logs),
        "log": signed_in(log),
        "usage": signed_in(usage),
        "keys": signed_in(keys),
        "create_key": signed_in(create_key),
        "key": signed_in(key),
        "update_key": signed_in(update_key),
        "revoke_key": signed_in(revoke_key),
    }
