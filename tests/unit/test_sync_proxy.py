"""The synchronous call path of core (`SyncProxy`) with providers made in the test: routes,
fallback, limits, budget and accounting, with no HTTP server and no database."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from batchway.config import Config, LogConfig
from batchway.core.accounting import Accounting
from batchway.core.budgets import Budgets
from batchway.core.call_pricing import CallPricing
from batchway.core.concurrency import InteractiveSlots, MemoryConcurrencyPool
from batchway.core.endpoints import Endpoint
from batchway.core.models import Principal, RequestLog
from batchway.core.ports import NativeBatchAPI, UpstreamResponse
from batchway.core.pricing import PriceTable
from batchway.core.proxy import SyncDialect, SyncProxy
from batchway.core.quotas import Quotas
from batchway.core.ratelimit import MemoryRateLimiter
from batchway.core.routing import Router
from batchway.errors import (
    GatewayError,
    NotFound,
    QuotaError,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from batchway.metrics import Metrics

CONFIG = Config.model_validate(
    {
        "providers": {
            "down": {"kind": "openai-compatible", "base_url": "http://down.invalid/v1"},
            "up": {"kind": "openai-compatible", "base_url": "http://up.invalid/v1"},
        },
        "models": {
            "chat": [
                {"provider": "down", "model": "down-chat", "weight": 1_000_000},
                {"provider": "up", "model": "up-chat", "weight": 0.000001},
            ],
            "only-up": {"provider": "up", "model": "up-chat"},
        },
        "prices": {"up-chat": {"input": 1.0, "output": 2.0}},
    }
)
ANSWER = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


class ScriptedProvider:
    """Answers every call with ``answer``, or raises ``error``; records what it was sent."""

    max_concurrency = 4
    native: NativeBatchAPI | None = None

    def __init__(self, name: str, error: UpstreamError | None = None) -> None:
        self.name = name
        self.error = error
        self.sent: list[dict[str, Any]] = []

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        self.sent.append(orjson.loads(body))
        if self.error is not None:
            raise self.error
        return UpstreamResponse(status=200, body=orjson.dumps(ANSWER), request_id="up_1")

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        self.sent.append(orjson.loads(body))
        if self.error is not None:
            raise self.error
        yield b'data: {"choices":[]}\n\n'
        raise UpstreamUnavailable("cut off")  # half-way: the dialect's error event ends it

    async def close(self) -> None:
        pass


class Logs:
    """Request logs kept in a list (the accounting's sink)."""

    def __init__(self) -> None:
        self.rows: list[RequestLog] = []

    async def insert(
        self, logs: Sequence[RequestLog], *, usage_only: Sequence[RequestLog] = ()
    ) -> None:
        self.rows.extend(logs)

    async def delete_older_than(self, cutoff_ms: int, *, chunk: int = 1000) -> int:
        return 0

    async def spent(self, key_id: str, since_ms: int | None) -> float:
        return sum(r.cost_usd for r in self.rows if r.key_id == key_id)


DIALECT = SyncDialect(
    id_header="x-request-id",
    not_found=lambda model: NotFound(f"no model {model}"),
    client_error=lambda error: error,
    error_event=lambda failure: b"event: error\ndata: " + failure.message.encode() + b"\n\n",
)


class Setup:
    def __init__(
        self, down_error: UpstreamError | None = None, slots: InteractiveSlots | None = None
    ) -> None:
        self.providers = {
            "down": ScriptedProvider("down", down_error or UpstreamUnavailable("503")),
            "up": ScriptedProvider("up"),
        }
        self.logs = Logs()
        router = Router(CONFIG)
        self.accounting = Accounting(
            pricing=CallPricing(PriceTable(CONFIG.prices), router),
            budgets=Budgets(self.logs),  # type: ignore[arg-type]
            metrics=Metrics(),
            sink=self.logs,  # type: ignore[arg-type]
            settings=LogConfig(),
        )
        self.proxy = SyncProxy(
            router=router,
            providers=self.providers,
            quotas=Quotas(MemoryRateLimiter(), CONFIG),
            accounting=self.accounting,
            metrics=Metrics(),
            slots=slots,
        )

    async def call(self, principal: Principal, model: str = "chat", **body: Any) -> Any:
        request = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
        return await self.proxy.call(
            DIALECT, principal, Endpoint.CHAT, model, request, orjson.dumps(request)
        )

    async def logged(self) -> list[RequestLog]:
        await self.accounting.flush()
        return self.logs.rows


KEY = Principal(key_id="key_1", name="one")


async def test_a_retryable_failure_moves_on_to_the_next_route_and_logs_one_row() -> None:
    setup = Setup()

    answer = await setup.call(KEY)

    assert orjson.loads(answer.body) == ANSWER
    assert answer.headers["x-request-id"].startswith("req_")
    assert [s["model"] for s in setup.providers["down"].sent] == ["down-chat"]
    assert [s["model"] for s in setup.providers["up"].sent] == ["up-chat"]
    (row,) = await setup.logged()
    assert (row.provider, row.upstream_model, row.status, row.retries) == (
        "up",
        "up-chat",
        "succeeded",
        1,
    )
    assert row.usage.input_tokens == 10 and row.cost_usd > 0


async def test_a_final_refusal_stops_at_its_route() -> None:
    setup = Setup(UpstreamRejected("bad request", status=400, body=b'{"error":{}}'))

    with pytest.raises(UpstreamRejected):
        await setup.call(KEY)

    assert setup.providers["up"].sent == []
    (row,) = await setup.logged()
    assert (row.status, row.status_code, row.provider) == ("failed", 400, "down")


async def test_an_unknown_or_forbidden_model_is_the_dialects_not_found() -> None:
    setup = Setup()
    limited = Principal(key_id="key_2", name="two", models=frozenset({"only-up"}))

    with pytest.raises(NotFound, match="no model nope"):
        await setup.call(KEY, model="nope")
    with pytest.raises(NotFound, match="no model chat"):
        await setup.call(limited, model="chat")
    assert await setup.logged() == []


async def test_a_key_over_its_request_limit_gets_a_429_before_any_call() -> None:
    setup = Setup()
    key = Principal(key_id="key_rpm", name="rpm", rpm=1)

    first = await setup.call(key, model="only-up")
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(RateLimited) as limited:
        await setup.call(key, model="only-up")

    assert limited.value.retry_after > 0 and "retry-after" in (limited.value.headers or {})
    assert len(setup.providers["up"].sent) == 1


async def test_a_key_over_its_budget_is_refused() -> None:
    setup = Setup()
    key = Principal(key_id="key_budget", name="budget", budget_usd=0.0)

    with pytest.raises(QuotaError, match="budget is used up"):
        await setup.call(key, model="only-up")
    assert setup.providers["up"].sent == []


async def test_a_stream_cut_half_way_ends_with_the_dialects_error_event() -> None:
    setup = Setup()

    answer = await setup.call(KEY, model="only-up", stream=True)

    assert answer.stream is not None and answer.headers["cache-control"] == "no-cache"
    chunks = [chunk async for chunk in answer.stream]
    assert chunks == [b'data: {"choices":[]}\n\n', b"event: error\ndata: cut off\n\n"]
    (row,) = await setup.logged()
    assert row.status == "succeeded" and row.status_code == 200


async def test_every_route_failing_raises_the_last_failure() -> None:
    setup = Setup()
    setup.providers["up"].error = UpstreamUnavailable("also down")

    with pytest.raises(GatewayError, match="also down"):
        await setup.call(KEY)
    (row,) = await setup.logged()
    assert (row.provider, row.retries) == ("up", 1)


class Busy(ScriptedProvider):
    """Notes how many calls its pool counts in flight when a call reaches it."""

    def __init__(self, name: str, slots: InteractiveSlots) -> None:
        super().__init__(name)
        self.slots = slots
        self.busy_seen: list[int] = []

    def _note(self) -> None:
        shared = self.slots.of(self.name)
        assert shared is not None
        self.busy_seen.append(shared.busy)

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        self._note()
        return await super().send(endpoint, body)

    async def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        self._note()
        yield b'data: {"choices":[]}\n\n'
        yield b"data: [DONE]\n\n"


async def test_calls_hold_room_in_their_providers_shared_pool_while_they_run() -> None:
    pool = MemoryConcurrencyPool()
    slots = InteractiveSlots(pool, {"down": (4, 3), "up": (4, 3)}, "api", headroom=1, ttl_seconds=5)
    setup = Setup(slots=slots)
    setup.providers["up"] = up = Busy("up", slots)
    try:
        await setup.call(KEY)  # down fails, up answers: each held room only for its call
        assert up.busy_seen == [1]
        down, shared_up = slots.of("down"), slots.of("up")
        assert down is not None and shared_up is not None
        assert (down.busy, shared_up.busy) == (0, 0)

        answer = await setup.call(KEY, model="only-up", stream=True)
        assert answer.stream is not None
        assert shared_up.busy == 1  # held from the request to the stream's end
        assert [chunk async for chunk in answer.stream][-1] == b"data: [DONE]\n\n"
        assert shared_up.busy == 0

        dropped = await setup.call(KEY, model="only-up", stream=True)
        assert isinstance(dropped.stream, AsyncGenerator) and shared_up.busy == 1
        await anext(dropped.stream)
        await dropped.stream.aclose()  # a client gone half-way
        assert shared_up.busy == 0
        assert len(await setup.logged()) == 3  # the dropped stream logged too
    finally:
        await slots.close()
    assert await pool.holders("calls:up") == {}  # handed back at close
