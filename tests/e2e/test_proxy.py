"""The synchronous OpenAI routes through the official ``openai`` SDK."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.helpers import unique


@pytest.fixture
def pgw(make_gateway) -> RunningGateway:
    gateway: RunningGateway = make_gateway(
        models={
            # the first route always fails (5xx): the second must answer
            "fallback": [
                {"provider": "fake", "model": "fake-500", "weight": 1_000_000},
                {"provider": "fake", "model": "fake-ok", "weight": 0.000001},
            ],
        }
    )
    return gateway


def test_chat_completion(pgw: RunningGateway):
    client = pgw.client()
    prompt = f"hello {unique()}"
    raw = client.chat.completions.with_raw_response.create(
        model="team-model", messages=[{"role": "user", "content": prompt}]
    )
    assert raw.headers["x-request-id"].startswith("req_")
    completion = raw.parse()
    assert completion.choices[0].message.content == f"echo: {prompt}"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    [seen] = pgw.fake.requests
    assert seen.json["model"] == "fake-ok"
    assert seen.headers["authorization"] == "Bearer upstream-secret"


def test_streamed_chat_completion_with_usage(pgw: RunningGateway):
    client = pgw.client()
    prompt = f"stream {unique()} please"
    stream = client.chat.completions.create(
        model="fake-ok",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"echo: {prompt}"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embeddings_completions_responses(pgw: RunningGateway):
    client = pgw.client()
    embedding = client.embeddings.create(model="fake-ok", input=["a", "b"])  # base64 by default
    assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 8
    floats = client.embeddings.create(model="fake-ok", input=["a"], encoding_format="float")
    assert floats.data[0].embedding == embedding.data[0].embedding
    completion = client.completions.create(model="fake-ok", prompt="once upon")
    assert completion.choices[0].text == "echo: once upon"
    response = client.responses.create(model="fake-ok", input="hi there")
    assert response.output_text == "echo: hi there"


def test_models_are_the_configured_public_names(pgw: RunningGateway):
    names = {m.id for m in pgw.client().models.list()}
    assert {"fake-ok", "team-model", "gpt-4o", "fallback"} <= names
    limited = pgw.client(pgw.create_key(models=["fake-ok"]))
    assert [m.id for m in limited.models.list()] == ["fake-ok"]
    with pytest.raises(openai.NotFoundError):
        limited.chat.completions.create(
            model="team-model", messages=[{"role": "user", "content": "x"}]
        )


def test_a_retryable_failure_moves_to_the_next_route(pgw: RunningGateway):
    client = pgw.client()
    completion = client.chat.completions.create(
        model="fallback", messages=[{"role": "user", "content": "fall back"}]
    )
    assert completion.choices[0].message.content == "echo: fall back"
    assert pgw.fake.count(model="fake-500") == 1
    assert pgw.fake.count(model="fake-ok") == 1


def test_errors(pgw: RunningGateway):
    client = pgw.client()
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="fake-400", messages=[{"role": "user", "content": "x"}]
        )
    assert "fake-400" in refused.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=pgw.url, api_key="wrong", max_retries=0).models.list()
    response = httpx.post(
        f"{pgw.url}/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {client.api_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_failed_call_answers_with_the_request_id_of_its_log_row(pgw: RunningGateway):
    admin = {"authorization": f"Bearer {pgw.admin_key}"}
    made = httpx.post(f"{pgw.base_url}/admin/keys", json={"name": "ids"}, headers=admin).json()
    client = pgw.client(made["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="fake-400", messages=[{"role": "user", "content": "x"}]
        )
    request_id = refused.value.response.headers["x-request-id"]
    pgw.run(pgw.gateway.accounting.flush())

    logs = httpx.get(f"{pgw.base_url}/admin/logs", params={"key": made["id"]}, headers=admin)
    [row] = logs.json()["data"]
    assert (row["status"], row["request_id"]) == ("failed", request_id)


def test_with_sync_logs_off_no_row_is_written_but_usage_and_spend_count_exactly(make_gateway):
    gw: RunningGateway = make_gateway(
        logs={"sync_sample_rate": 0}, prices={"fake-ok": {"input": 2.0, "output": 8.0}}
    )
    admin = {"authorization": f"Bearer {gw.admin_key}"}
    made = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "quiet"}, headers=admin).json()
    client = gw.client(made["key"])
    usages = []
    for n in range(7):
        completion = client.chat.completions.create(
            model="fake-ok", messages=[{"role": "user", "content": f"call {n} {unique()}"}]
        )
        assert completion.usage is not None
        usages.append(completion.usage)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="fake-400", messages=[{"role": "user", "content": "x"}]
        )
    gw.run(gw.gateway.accounting.flush())

    logs = httpx.get(f"{gw.base_url}/admin/logs", params={"key": made["id"]}, headers=admin)
    assert [row["status"] for row in logs.json()["data"]] == ["failed"]  # failures stay logged
    usage = httpx.get(f"{gw.base_url}/admin/usage", params={"key": made["id"]}, headers=admin)
    totals = usage.json()["totals"]["interactive"]
    prompt = sum(u.prompt_tokens for u in usages)
    completion_tokens = sum(u.completion_tokens for u in usages)
    assert (totals["requests"], totals["errors"]) == (8, 1)
    assert (totals["input_tokens"], totals["output_tokens"]) == (prompt, completion_tokens)
    cost = (prompt * 2.0 + completion_tokens * 8.0) / 1_000_000
    assert totals["cost_usd"] == pytest.approx(cost)
    assert gw.run(gw.gateway.logs.spent(made["id"], None)) == pytest.approx(cost)
