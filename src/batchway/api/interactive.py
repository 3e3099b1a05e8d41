"""What every synchronous request goes through around its upstream call: the key's rate
limits and budget before, each provider's rate limits per route, and after it the settled
token charges, the price and a request-log row (queued, written off the request path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchway.api.errors import client_error, error_label
from batchway.core.ids import new_request_id
from batchway.core.models import Principal, RequestLog, Usage
from batchway.core.ratelimit import Decision, Ticket
from batchway.core.retry import retry_after_header
from batchway.core.routing import Route
from batchway.core.tokens import estimate_tokens
from batchway.core.usage import usage_of
from batchway.errors import GatewayError, QuotaError, RateLimited, UpstreamError
from batchway.gateway import Gateway
from batchway.providers.base import UpstreamResponse

__all__ = ["Call", "StreamTap", "admit", "ratelimit_headers", "usage_of_answer", "usage_of_stream"]

_STREAM_TAIL = 16_384  # the end of a stream, where its usage is
_STREAM_HEAD = 4_096

log = logging.getLogger("batchway.api")

# settling charges happens after the answer went out; keep the tasks referenced
_background: set[asyncio.Task[None]] = set()


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


@dataclass(slots=True)
class Call:
    """One synchronous request on its way through the gateway."""

    gateway: Gateway
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
        decision = await self.gateway.quotas.check_provider(route.provider, self.tokens)
        if decision is None:
            return None
        if not decision.allowed:
            self.gateway.metrics.rate_limited("provider")
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
        gateway = self.gateway
        total = usage.total_tokens
        for ticket in (self.key_ticket, provider_ticket):
            if ticket is not None:
                task = asyncio.create_task(gateway.quotas.settle(ticket, total))
                _background.add(task)
                task.add_done_callback(_background.discard)
        succeeded = status_code is not None and status_code < 300
        cost = (
            gateway.accounting.price(self.model, route.provider, usage, False)[0]
            if succeeded
            else 0.0
        )
        bodies = gateway.accounting.record_bodies
        gateway.accounting.interactive(
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
        self.gateway.metrics.upstream_error(route.provider, error_label(error))
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
        error_event: Callable[[GatewayError], bytes],
    ) -> AsyncIterator[bytes]:
        """A stream as it comes, its usage read from its first and last events. A failure
        half-way ends it with ``error_event``, as the status line has already gone."""
        tap = StreamTap()
        tap.feed(first)
        yield first
        try:
            async for chunk in rest:
                tap.feed(chunk)
                yield chunk
        except UpstreamError as error:
            self.gateway.metrics.upstream_error(route.provider, error_label(error))
            yield error_event(client_error(error))
        except Exception:  # a provider's own fault must not cut the stream off unannounced
            log.exception(
                "stream failed", extra={"action": "stream_failed", "provider": route.provider}
            )
            yield error_event(GatewayError())
        finally:
            self.finish(route, ticket, usage=tap.usage(), status_code=200)


async def admit(
    gateway: Gateway,
    principal: Principal,
    endpoint: str,
    model: str,
    body: dict[str, Any],
    raw: bytes,
    id_header: str = "x-request-id",
) -> Call:
    """Check the key's rate limits and budget; raises a 429 error when either says no.

    The request gets its id here, answered in ``id_header`` (Anthropic's is ``request-id``).
    """
    request_id = new_request_id()
    headers = {id_header: request_id}
    tokens = 0
    if principal.tpm is not None or principal.tph is not None or gateway.quotas.counts_tokens:
        tokens = estimate_tokens(endpoint, body)
    decision = await gateway.quotas.check_key(principal, tokens)
    if decision is not None:
        if not decision.allowed:
            gateway.metrics.rate_limited("key")
            raise RateLimited(
                "Rate limit reached for this key; retry later.",
                retry_after=decision.retry_after,
                headers={
                    "retry-after": retry_after_header(decision.retry_after),
                    **ratelimit_headers(decision),
                },
            )
        headers.update(ratelimit_headers(decision))
    if principal.budget_usd is not None and await gateway.accounting.budgets.exhausted(principal):
        raise BudgetUsedUp()
    return Call(
        gateway=gateway,
        principal=principal,
        endpoint=endpoint,
        model=model,
        tokens=tokens,
        key_ticket=decision.ticket if decision is not None else None,
        request_id=request_id,
        headers=headers,
        body=raw if gateway.accounting.record_bodies else None,
    )


def usage_of_answer(body: bytes) -> Usage:
    """The usage of a whole JSON answer (zeros if it has none)."""
    try:
        return usage_of(orjson.loads(body))
    except orjson.JSONDecodeError:
        return Usage()


class StreamTap:
    """Keeps the end of a stream, to read its usage once it is over."""

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
