"""Running one leased line on its provider and deciding what became of it."""

from __future__ import annotations

import logging
import time

import orjson

from batchway.core import clock
from batchway.core.models import BatchItem, ItemOutcome
from batchway.core.retry import RetryPolicy
from batchway.core.states import ItemState
from batchway.core.usage import usage_of
from batchway.dialects.chat_messages.errors import dialect_error_body
from batchway.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from batchway.providers.registry import ProviderRegistry

__all__ = ["Executor"]

log = logging.getLogger("batchway.worker")


def _no_response_code(error: UpstreamError) -> str:
    if isinstance(error, UpstreamAuthError):
        return error.error_type
    if isinstance(error, UpstreamTimeout):
        return "request_timeout"
    if isinstance(error, UpstreamUnavailable):
        return "upstream_unavailable"
    return "upstream_error"


class Executor:
    """Calls the provider of a line and turns the answer into an ``ItemOutcome``."""

    def __init__(self, providers: ProviderRegistry, policy: RetryPolicy) -> None:
        self._providers = providers
        self._policy = policy

    async def run(self, item: BatchItem) -> ItemOutcome:
        started = time.perf_counter()
        try:
            answer = await self._providers[item.provider].send(item.endpoint, item.body)
            try:
                usage = usage_of(orjson.loads(answer.body))
            except orjson.JSONDecodeError as exc:
                raise UpstreamUnavailable(
                    "the upstream answered with a body that is not JSON"
                ) from exc
        except UpstreamError as error:
            return self._failure(item, error)
        except Exception as exc:  # a bug must not lose the line: retried, then failed
            log.exception("line failed unexpectedly", extra={"action": "line_crashed"})
            return self._failure(item, UpstreamUnavailable(f"internal error: {exc!r}"))
        return ItemOutcome(
            item_id=item.id,
            state=ItemState.SUCCEEDED,
            status_code=answer.status,
            response=answer.body,
            request_id=answer.request_id,
            usage=usage,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _failure(self, item: BatchItem, error: UpstreamError) -> ItemOutcome:
        decision = self._policy.decide(error, item.attempts)
        if decision.retry:
            return ItemOutcome(
                item_id=item.id,
                state=ItemState.PENDING,
                not_before=clock.now_float() + decision.delay,
            )
        # a refusal of the gateway's credentials is the gateway's failure, not the request's:
        # reported with its own code, not as the provider's answer
        if error.status is not None and not isinstance(error, UpstreamAuthError):
            return ItemOutcome(
                item_id=item.id,
                state=ItemState.FAILED,
                status_code=error.status,
                response=dialect_error_body(error, item.endpoint),
                request_id=error.request_id,
            )
        return ItemOutcome(
            item_id=item.id,
            state=ItemState.FAILED,
            error_code=_no_response_code(error),
            error_message=f"{error.message} (after {item.attempts} attempts)",
        )
