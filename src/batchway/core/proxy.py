"""One path for every synchronous call, whatever the client's dialect.

A call goes: the model's routes (weighted order) → the key's rate limits and budget → for
each route in turn, the provider's rate limits and the upstream call (holding room in the
provider's cluster-wide concurrency, when shared) → the answer, or the stream, passed on as
the provider sent it → settled token charges, the price and a
request-log row (queued, written off the request path). A retryable failure (429, 5xx,
timeout, connection error) before any byte went to the client moves on to the next route,
in every dialect alike. The dialect only says how a missing model, an upstream failure and
a failure half-way through a stream read to its clients (`SyncDialect`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from batchway.core.accounting import Accounting
from batchway.core.endpoints import Endpoint
from batchway.core.ids import new_request_id
from batchway.core.models import Principal, RequestLog, Usage
from batchway.core.ports import Providers, UpstreamResponse
from batchway.core.quotas import Quotas
from batchway.core.ratelimit import Decision, Ticket
from batchway.core.retry import retry_after_header
from batchway.core.routing import Route, Router
from batchway.core.tokens import estimate_tokens
from batchway.core.usage import usage_of
from batchway.errors import (
    GatewayError,
    QuotaError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from batchway.core.concurrency import InteractiveSlots, SharedSlots
    from batchway.metrics import Metrics

__all__ = [
    "Answer",
    "StreamTap",
    "SyncDialect",
    "SyncProxy",
    "error_label",
    "ratelimit_headers",
    "reset_duration",
    "usage_of_answer",
    "usage_of_stream",
]

_STREAM_TAIL = 16_384  # the end of a stream, where its usage is
_STREAM_HEAD = 4_096

log = logging.getLogger("batchway.proxy")

# settling charges happens after the answer went out; keep the tasks referenced
_background: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncDialect:
    """How a client dialect reads the proxy's failures."""

    id_header: str  # the response header carrying the request id
    not_found: Callable[[str], GatewayError]  # an unknown (or forbidden) model
    client_error: Callable[[UpstreamError], GatewayError]  # a failed upstream call
    error_event: Callable[[GatewayError], bytes]  # a stream that failed half-way


@dataclass(slots=True)
class Answer:
    """What goes back to the client: a whole JSON body, or an event stream."""

    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class BudgetUsedUp(QuotaError):
    """A key over its budget, as OpenAI reports an exhausted quota."""

    def __init__(self) -> None:
        super().__init__(
            "You exceeded your current quota: this key's budget is used up.",
            code="insufficient_quota",
        )
        self.error_type = "insufficient_quota"


def reset_duration(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: ``20ms``, ``1.5s``, ``6m0s``, ``1h0m0s``."""
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def ratelimit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for each window of a decision."""
    headers = {}
    for state in decision.states:
        name = state.limit.name
        headers[f"x-ratelimit-limit-{name}"] = str(state.limit.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
        headers[f"x-ratelimit-reset-{name}"] = reset_duration(state.reset_seconds)
    return headers


def error_label(error: UpstreamError) -> str:
    """A short label of an upstream failure for metrics: its status, or what went wrong."""
    if error.status is not None:
        return str(error.status)
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    return "connection"


def _ordered(routes: tuple[Route, ...]) -> list[Route]:
    """The routes to try, in order: weighted at random when there are several."""
    if len(routes) < 2:
        return list(routes)
    remaining = list(routes)
    ordered = []
    while remaining:
        pick = random.choices(remaining, weights=[r.weight for r in remaining])[0]
        remaining.remove(pick)
        ordered.append(pick)
    return ordered


class SyncProxy:
    """Runs synchronous calls; see the module docstring."""

    def __init__(
        self,
        *,
        router: Router,
        providers: Providers,
        quotas: Quotas,
        accounting: Accounting,
        metrics: Metrics,
        slots: InteractiveSlots | None = None,
    ) -> None:
        self.router = router
        self.providers = providers
        self.quotas = quotas
        self.accounting = accounting
        self.metrics = metrics
        self.slots = slots  # providers' concurrency shared with other processes, if so

    async def call(
        self,
        dialect: SyncDialect,
        principal: Principal,
        endpoint: Endpoint,
        model: str,
        body: dict[str, Any],
        raw: bytes,
    ) -> Answer:
        """Run one call (``body`` is the parsed ``raw``); raises the dialect's errors."""
        routes = self.router.routes(model) if principal.may_use(model) else ()
        if not routes:
            raise dialect.not_found(model)
        call = await self._admit(dialect, principal, endpoint, model, body, raw)
        failure: GatewayError | None = None
        last: tuple[Route, Ticket | None, UpstreamError] | None = None
        for route in _ordered(routes):
            try:
                ticket = await call.provider_slot(route)
            except RateLimited as limited:
                failure = limited  # this provider is full: the next route may have room
                continue
            provider = self.providers[route.provider]
            slots = self.slots.of(route.provider) if self.slots is not None else None
            upstream_body = orjson.dumps({**body, "model": route.model})
            try:
                if body.get("stream"):
                    chunks = provider.stream(endpoint, upstream_body)
                    if slots is not None:
                        chunks = _holding(slots, chunks)
                    first = await anext(chunks, b"")
                    return Answer(
                        headers={**call.headers, "cache-control": "no-cache"},
                        stream=call.relay(first, chunks, route, ticket, dialect),
                    )
                if slots is None:
                    answer = await provider.send(endpoint, upstream_body)
                else:
                    async with slots.call():
                        answer = await provider.send(endpoint, upstream_body)
            except UpstreamError as error:
                failure = dialect.client_error(error)
                last = (route, ticket, error)
                if not error.retryable:
                    break
                continue
            call.answered(route, ticket, answer)
            return Answer(headers=call.headers, body=answer.body)
        if last is not None:  # one log row for the request, with the last route's failure
            call.failed(*last)
        assert failure is not None
        # the client's error carries the request's id (its log row's) and the key's limits
        failure.headers = {**call.headers, **(failure.headers or {})}
        raise failure

    async def _admit(
        self,
        dialect: SyncDialect,
        principal: Principal,
        endpoint: Endpoint,
        model: str,
        body: dict[str, Any],
        raw: bytes,
    ) -> _Call:
        """Check the key's rate limits and budget; raises a 429 error when either says no."""
        request_id = new_request_id()
        headers = {dialect.id_header: request_id}
        tokens = 0
        quotas = self.quotas
        if principal.tpm is not None or principal.tph is not None or quotas.counts_tokens:
            tokens = estimate_tokens(endpoint, body)
        decision = await quotas.check_key(principal, tokens)
        if decision is not None:
            if not decision.allowed:
                self.metrics.rate_limited("key")
                raise RateLimited(
                    "Rate limit reached for this key; retry later.",
                    retry_after=decision.retry_after,
                    headers={
                        "retry-after": retry_after_header(decision.retry_after),
                        **ratelimit_headers(decision),
                    },
                )
            headers.update(ratelimit_headers(decision))
        accounting = self.accounting
        if principal.budget_usd is not None and await accounting.budgets.exhausted(principal):
            raise BudgetUsedUp()
        return _Call(
            proxy=self,
            principal=principal,
            endpoint=endpoint,
            model=model,
            tokens=tokens,
            key_ticket=decision.ticket if decision is not None else None,
            request_id=request_id,
            headers=headers,
            body=raw if accounting.record_bodies else None,
        )


@dataclass(slots=True)
class _Call:
    """One synchronous request on its way through the gateway."""

    proxy: SyncProxy
    principal: Principal
    endpoint: str
    model: str
    tokens: int  # the estimate charged before the call
    key_ticket: Ticket | None
    request_id: str  # the gateway's id of this request
    headers: dict[str, str]  # the request id and the key's x-ratelimit-* headers
    started: float = field(default_factory=time.perf_counter)
    tries: int = 0
    body: bytes | None = None  # kept for the log only when the config asks

    async def provider_slot(self, route: Route) -> Ticket | None:
        """Charge the route's provider; raises ``RateLimited`` when it has no room now."""
        self.tries += 1
        decision = await self.proxy.quotas.check_provider(route.provider, self.tokens)
        if decision is None:
            return None
        if not decision.allowed:
            self.proxy.metrics.rate_limited("provider")
            raise RateLimited(
                f"The provider of '{self.model}' is at its rate limit; retry later.",
                retry_after=decision.retry_after,
                headers={"retry-after": retry_after_header(decision.retry_after)},
            )
        return decision.ticket

    def finish(
        self,
        route: Route,
        provider_ticket: Ticket | None,
        *,
        usage: Usage,
        status_code: int | None,
        error_code: str | None = None,
        response: bytes | None = None,
    ) -> None:
        """Settle the charges, price the call and queue its log row."""
        proxy = self.proxy
        total = usage.total_tokens
        for ticket in (self.key_ticket, provider_ticket):
            if ticket is not None:
                task = asyncio.create_task(proxy.quotas.settle(ticket, total))
                _background.add(task)
                task.add_done_callback(_background.discard)
        accounting = proxy.accounting
        succeeded = status_code is not None and status_code < 300
        cost = accounting.price_call(self.model, route.provider, usage) if succeeded else 0.0
        bodies = accounting.record_bodies
        accounting.interactive(
            RequestLog(
                created_at_ms=int(time.time() * 1000),
                kind="interactive",
                key_id=self.principal.key_id,
                model=self.model,
                provider=route.provider,
                upstream_model=route.model,
                endpoint=self.endpoint,
                status="succeeded" if succeeded else "failed",
                status_code=status_code,
                error_code=error_code,
                usage=usage,
                latency_ms=(time.perf_counter() - self.started) * 1000,
                cost_usd=cost,
                retries=max(self.tries - 1, 0),
                request_id=self.request_id,
                request_body=self.body if bodies else None,
                response_body=response if bodies else None,
            )
        )

    def answered(self, route: Route, ticket: Ticket | None, answer: UpstreamResponse) -> None:
        """Account for a whole answer."""
        self.finish(
            route,
            ticket,
            usage=usage_of_answer(answer.body),
            status_code=answer.status,
            response=answer.body,
        )

    def failed(self, route: Route, ticket: Ticket | None, error: UpstreamError) -> None:
        """Account for a call the provider failed."""
        self.proxy.metrics.upstream_error(route.provider, error_label(error))
        self.finish(
            route,
            ticket,
            usage=Usage(),
            status_code=error.status,
            error_code=error.code,
            response=error.body,
        )

    async def relay(
        self,
        first: bytes,
        rest: AsyncIterator[bytes],
        route: Route,
        ticket: Ticket | None,
        dialect: SyncDialect,
    ) -> AsyncIterator[bytes]:
        """A stream as it comes, its usage read from its first and last events. A failure
        half-way ends it with the dialect's error event, as the status line has gone."""
        tap = StreamTap()
        tap.feed(first)
        try:
            yield first
            async for chunk in rest:
                tap.feed(chunk)
                yield chunk
        except UpstreamError as error:
            self.proxy.metrics.upstream_error(route.provider, error_label(error))
            yield dialect.error_event(dialect.client_error(error))
        except Exception:  # a provider's own fault must not cut the stream off unannounced
            log.exception(
                "stream failed", extra={"action": "stream_failed", "provider": route.provider}
            )
            yield dialect.error_event(GatewayError())
        finally:
            self.finish(route, ticket, usage=tap.usage(), status_code=200)
            if isinstance(rest, AsyncGenerator):  # a client gone half-way: end the upstream
                await rest.aclose()  # stream now (its connection, its room in the pool)


async def _holding(slots: SharedSlots, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A stream that holds a call's room in the pool from before its request until it ends
    (or, dropped half-way, until the event loop closes it)."""
    await slots.acquire()
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        slots.release()


def usage_of_answer(body: bytes) -> Usage:
    """The usage of a whole JSON answer (zeros if it has none)."""
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return Usage()


class StreamTap:
    """Keeps the start and the end of a stream, to read its usage once it is over."""

    __slots__ = ("head", "tail")

    def __init__(self) -> None:
        self.head = b""  # Anthropic reports input tokens in the first event
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        if len(self.head) < _STREAM_HEAD:
            self.head += chunk[: _STREAM_HEAD - len(self.head)]
        tail = self.tail + chunk
        self.tail = tail[-_STREAM_TAIL:] if len(tail) > _STREAM_TAIL else tail

    def usage(self) -> Usage:
        return usage_of_stream(self.head + b"\n\n" + self.tail)


def usage_of_stream(tail: bytes) -> Usage:
    """The usage reported near the end of an SSE stream: OpenAI's final chunk (with
    ``stream_options.include_usage``), a Responses ``response.completed`` event, or an
    Anthropic ``message_delta`` (output tokens; input tokens come in ``message_start``)."""
    input_tokens = output_tokens = cached = 0
    for block in reversed(tail.replace(b"\r\n", b"\n").split(b"\n\n")):
        for line in block.split(b"\n"):
            if not line.startswith(b"data:") or b'"usage"' not in line:
                continue
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            for holder in (event, event.get("response"), event.get("message")):
                if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
                    found = usage_of(holder)
                    if event.get("type") == "message_start":
                        input_tokens = input_tokens or found.input_tokens
                        cached = cached or found.cached_tokens
                        continue
                    if event.get("type") == "message_delta":
                        output_tokens = output_tokens or found.output_tokens
                        input_tokens = input_tokens or found.input_tokens
                        continue
                    return found
    return Usage(input_tokens=input_tokens, cached_tokens=cached, output_tokens=output_tokens)
