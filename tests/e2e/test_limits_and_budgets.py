"""Rate limits, budgets and cost accounting, end to end through the official SDKs.

Keys over their limits get a 429 with ``Retry-After`` (in-process and Redis limiters); a
batch held to its provider's rate limit never makes the upstream see more than the limit;
budgets refuse a batch that cannot fit and stop a running one when they are used up.
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import chat_line, read_results, start_batch, unique

ADMIN = {"authorization": "Bearer admin-secret"}


def _chat(client: openai.OpenAI, model: str = "fake-ok", prompt: str | None = None):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt or f"hi {unique()}"}]
    )


def _limiter(backend: str, request: pytest.FixtureRequest) -> dict:
    if backend == "memory":
        return {"backend": "memory"}
    redis_url = request.getfixturevalue("redis_url")
    return {"backend": "redis", "redis_url": redis_url, "prefix": f"bwtest-{unique()}"}


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_key_over_its_rpm_gets_429_with_retry_after(
    make_gateway, backend: str, request: pytest.FixtureRequest
):
    gw: RunningGateway = make_gateway(rate_limits=_limiter(backend, request))
    client = gw.client(gw.create_key(rpm=2))
    for remaining in ("1", "0"):
        raw = _chat(client)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == remaining
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client)
    response = caught.value.response
    assert 1 <= int(response.headers["retry-after"]) <= 61  # a minute, to the bucket
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(gw.fake.requests) == 2  # the refused request never went upstream
    # another key has its own window
    _chat(gw.client(gw.create_key(rpm=2)))


def test_two_gateways_share_one_redis_window(make_gateway, redis_url: str):
    limiter = {"backend": "redis", "redis_url": redis_url, "prefix": f"bwtest-{unique()}"}
    first: RunningGateway = make_gateway(rate_limits=limiter)
    second: RunningGateway = make_gateway(rate_limits=limiter)
    key = first.create_key(rpm=3)
    _chat(first.client(key))
    _chat(second.client(key))
    _chat(first.client(key))
    with pytest.raises(openai.RateLimitError):
        _chat(second.client(key))


def test_key_token_limits_count_estimates_then_real_usage(make_gateway):
    gw: RunningGateway = make_gateway()
    client = gw.client(gw.create_key(tpm=10_000, tph=400))
    raw = _chat(client, prompt="one two three")
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert raw.headers["x-ratelimit-limit-tokens-hour"] == "400"
    assert int(raw.headers["x-ratelimit-remaining-tokens-hour"]) < 400
    with pytest.raises(openai.RateLimitError) as caught:
        # far more than the hour allows: refused before it is sent
        _chat(client, prompt="word " * 2_000)
    assert caught.value.response.headers["x-ratelimit-remaining-tokens-hour"] != "400"
    assert len(gw.fake.requests) == 1


def test_anthropic_route_over_the_limit_answers_in_the_anthropic_envelope(make_gateway):
    gw: RunningGateway = make_gateway()
    key = gw.create_key(rpm=1)
    client = anthropic.Anthropic(base_url=gw.url.removesuffix("/v1"), api_key=key, max_retries=0)
    message = {"role": "user", "content": "hello"}
    client.messages.create(model="fake-ok", max_tokens=16, messages=[message])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="fake-ok", max_tokens=16, messages=[message])
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_batch_held_to_the_provider_rate_never_exceeds_it(make_gateway):
    # the gateway counts when it sends, the fake when a request arrives: the interactive
    # share left free (half) absorbs how far apart the two clocks' views may drift
    limit, window, share = 40, 2.0, 0.5
    gw: RunningGateway = make_gateway(
        providers={
            "fake": {
                "rpm": limit,
                "rate_window_seconds": window,
                "interactive_share": share,
                "max_concurrency": 16,
            }
        }
    )
    gw.fake.limit_rate(limit, window)  # the upstream refuses what goes past its limit
    client = gw.client()
    lines = [chat_line(f"r-{i}", prompt=f"{unique()} {i}") for i in range(60)]
    batch = start_batch(client, lines)
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 60
    assert gw.fake.rejected_429 == 0
    # the batch kept to its share; interactive traffic had the rest
    assert gw.fake.max_in_window(window) <= limit
    assert gw.fake.arrivals == 60


def test_interactive_request_over_the_provider_limit_is_told_to_retry(make_gateway):
    gw: RunningGateway = make_gateway(providers={"fake": {"rpm": 2}})
    client = gw.client()
    _chat(client)
    _chat(client)
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert len(gw.fake.requests) == 2


PRICED = {"fake-ok": {"input": 0.0, "output": 10_000.0}, "fake-slow": {"input": 1e6, "output": 0}}


def test_batch_over_the_remaining_budget_is_refused_at_creation(make_gateway):
    gw: RunningGateway = make_gateway(prices=PRICED)
    client = gw.client(gw.create_key(budget_usd=5.0))
    # one dollar per input token: ten lines of several tokens each cannot fit in $5
    lines = [chat_line(f"b-{i}", model="fake-slow") for i in range(10)]
    with pytest.raises(openai.BadRequestError) as caught:
        start_batch(client, lines)
    error = caught.value.response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "budget" in error["message"]
    assert client.batches.list().data == []
    gw.drain()
    assert gw.fake.requests == []


def test_the_batch_suffix_does_not_escape_the_budget(make_gateway):
    gw: RunningGateway = make_gateway(prices=PRICED)
    client = gw.client(gw.create_key(budget_usd=5.0))
    lines = [chat_line(f"s-{i}", model="fake-slow-batch") for i in range(10)]
    with pytest.raises(openai.BadRequestError) as caught:
        start_batch(client, lines)
    assert caught.value.response.json()["error"]["code"] == "budget_exceeded"


def test_budget_used_up_mid_batch_ends_the_rest_budget_exceeded(make_gateway):
    budget = 0.2
    gw: RunningGateway = make_gateway(prices=PRICED, providers={"fake": {"max_concurrency": 2}})
    key = gw.create_key(budget_usd=budget)
    client = gw.client(key)
    # $0.01 per output token; the fake answers "echo: <prompt>", a few tokens a line
    lines = [chat_line(f"m-{i}", model="fake-ok", prompt=f"{unique()} {i}") for i in range(40)]
    batch = start_batch(client, lines)
    gw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    output = read_results(client, batch.output_file_id)
    errors = read_results(client, batch.error_file_id)
    assert len(output) + len(errors) == 40
    assert output and errors
    assert all(e.error is not None and e.error.code == "budget_exceeded" for e in errors)
    assert len(gw.fake.requests) == len(output)  # no budget_exceeded line was sent
    costs = [r.response.body["usage"]["completion_tokens"] * 0.01 for r in output if r.response]
    spent = sum(costs)
    # lines stop being started once the spend is known: at most a line or two past it
    assert budget <= spent <= budget + 2 * max(costs) + 1e-9
    logs = httpx.get(
        f"{gw.base_url}/admin/logs", params={"batch": batch.id, "limit": 1000}, headers=ADMIN
    ).json()["data"]
    assert sorted(row["status"] for row in logs) == sorted(
        ["succeeded"] * len(output) + ["budget_exceeded"] * len(errors)
    )
    assert sum(row["cost_usd"] for row in logs) == pytest.approx(spent)


def test_key_over_its_budget_gets_insufficient_quota(make_gateway):
    gw: RunningGateway = make_gateway(prices=PRICED)
    client = gw.client(gw.create_key(budget_usd=0.01))
    _chat(client, prompt="spend a little money now")  # several output tokens at $0.01
    gw.run(gw.gateway.accounting.flush())
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client)
    assert caught.value.response.json()["error"]["code"] == "insufficient_quota"


def test_sync_and_batch_usage_is_logged_and_totalled(make_gateway):
    gw: RunningGateway = make_gateway(prices=PRICED)
    key = gw.create_key()
    client = gw.client(key)
    plain = _chat(client, prompt="alpha beta").parse()
    stream = client.chat.completions.create(
        model="fake-ok",
        messages=[{"role": "user", "content": "gamma delta epsilon"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed_usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    lines = [chat_line(f"u-{i}", prompt=f"{unique()} {i}") for i in range(5)]
    batch = start_batch(client, lines)
    gw.drain()
    gw.run(gw.gateway.accounting.flush())
    output = read_results(client, client.batches.retrieve(batch.id).output_file_id)

    usage = httpx.get(
        f"{gw.base_url}/admin/usage", params={"group_by": "model"}, headers=ADMIN
    ).json()
    interactive, batched = usage["totals"]["interactive"], usage["totals"]["batch"]
    assert interactive["requests"] == 2 and batched["requests"] == 5
    assert plain.usage is not None
    assert interactive["output_tokens"] == (
        plain.usage.completion_tokens + streamed_usage.completion_tokens
    )
    assert batched["output_tokens"] == sum(
        r.response.body["usage"]["completion_tokens"] for r in output if r.response
    )
    assert interactive["cost_usd"] == pytest.approx(interactive["output_tokens"] * 0.01)
    logs = httpx.get(f"{gw.base_url}/admin/logs", headers=ADMIN).json()["data"]
    assert len(logs) == 7
    assert {row["kind"] for row in logs} == {"interactive", "batch"}
    serialized = str(logs)
    assert key not in serialized and "upstream-secret" not in serialized
    assert "alpha beta" not in serialized  # no prompts unless the config asks
    metrics = httpx.get(f"{gw.base_url}/metrics").text
    assert 'batchway_requests_total{kind="batch"' in metrics
    assert "batchway_batch_lines" in metrics


def test_bodies_are_logged_only_when_the_config_asks(make_gateway):
    gw: RunningGateway = make_gateway(logs={"record_bodies": True})
    client = gw.client()
    _chat(client, prompt="keep this prompt")
    start_batch(client, [chat_line("b", prompt="and this batch line")])
    gw.drain()
    gw.run(gw.gateway.accounting.flush())
    rows = httpx.get(f"{gw.base_url}/admin/logs", headers=ADMIN).json()["data"]
    by_kind = {row["kind"]: row for row in rows}
    assert "keep this prompt" in by_kind["interactive"]["request_body"]
    assert "echo: keep this prompt" in by_kind["interactive"]["response_body"]
    assert "and this batch line" in by_kind["batch"]["request_body"]
    assert "echo: and this batch line" in by_kind["batch"]["response_body"]


def test_retention_deletes_old_rows(make_gateway):
    from batchway.core.models import RequestLog

    gw: RunningGateway = make_gateway(logs={"retention_days": 1})
    old = RequestLog(
        created_at_ms=1_000,
        kind="interactive",
        key_id="key_old",
        model="fake-ok",
        provider="fake",
        endpoint="/v1/chat/completions",
        status="succeeded",
    )
    gw.run(gw.gateway.logs.insert([old]))
    _chat(gw.client())
    gw.run(gw.gateway.accounting.flush())
    gw.run(gw.gateway.accounting.apply_retention())
    rows = httpx.get(f"{gw.base_url}/admin/logs", headers=ADMIN).json()["data"]
    assert [row["key_id"] for row in rows if row["key_id"] == "key_old"] == []
    assert len(rows) == 1


def test_an_unreachable_redis_lets_traffic_through(make_gateway):
    gw: RunningGateway = make_gateway(
        rate_limits={"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"},
        providers={"fake": {"rpm": 1}},
    )
    client = gw.client(gw.create_key(rpm=1))
    _chat(client)
    _chat(client)  # the limiter cannot count: serving beats refusing everything
    assert len(gw.fake.requests) == 2


def test_key_over_its_requests_per_hour_gets_429(make_gateway):
    gw: RunningGateway = make_gateway()
    client = gw.client(gw.create_key(rph=2))
    for remaining in ("1", "0"):
        raw = _chat(client)
        assert raw.headers["x-ratelimit-limit-requests-hour"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests-hour"] == remaining
    with pytest.raises(openai.RateLimitError) as caught:
        _chat(client)
    assert 60 <= int(caught.value.response.headers["retry-after"]) <= 3660  # an hour, to the bucket
    assert len(gw.fake.requests) == 2


def test_a_configured_batch_discount_applies_to_executed_lines(make_gateway):
    prices = {
        "fake-ok": {"input": 2.0, "output": 4.0, "batch_discount": 0.25},  # configured
        "team-model": {"input": 2.0, "output": 4.0},  # not: executed lines pay in full
    }
    gw: RunningGateway = make_gateway(prices=prices)
    client = gw.client()
    lines = [chat_line("discounted", model="fake-ok"), chat_line("full", model="team-model")]
    batch = start_batch(client, lines)
    gw.drain()
    assert client.batches.retrieve(batch.id).status == "completed"
    rows = httpx.get(f"{gw.base_url}/admin/logs", params={"batch": batch.id}, headers=ADMIN).json()[
        "data"
    ]
    by_line = {row["custom_id"]: row for row in rows}

    def list_price(row: dict) -> float:
        return (row["input_tokens"] * 2.0 + row["output_tokens"] * 4.0) / 1_000_000

    discounted, full = by_line["discounted"], by_line["full"]
    assert discounted["cost_usd"] == pytest.approx(list_price(discounted) * 0.75)
    assert full["cost_usd"] == pytest.approx(list_price(full))
    assert full["cost_usd"] > 0
    # an interactive call of the discounted model pays the normal price
    raw = _chat(client, model="fake-ok")
    gw.run(gw.gateway.accounting.flush())
    (call,) = httpx.get(
        f"{gw.base_url}/admin/logs", params={"kind": "interactive"}, headers=ADMIN
    ).json()["data"]
    assert raw.http_response.status_code == 200
    assert call["cost_usd"] == pytest.approx(list_price(call))
