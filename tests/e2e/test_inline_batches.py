"""Inline batches on ``POST /v1/batches`` (requests in the body, results read from the batch),
driven with plain httpx and with ``requests``, on an OpenAI-compatible provider and on an
Anthropic one (executed and native)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
import requests

from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeAnthropicAPI
from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, read_results, unique, upload

CLAUDE_PRICE = {"input": 3.0, "output": 15.0}  # USD per million tokens
POLL = {"batch_poll_seconds": 0.01, "batch_poll_max_seconds": 0.05}


@pytest.fixture(scope="session")
def claude_api() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key="sk-ant-inline")
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def start(make_gateway, claude_api):
    """``start(batch="execute")`` → a gateway with an Anthropic provider (in that batch mode)
    beside the OpenAI-compatible fake."""
    fake, handle = claude_api
    fake.reset()
    fake.polls_per_step = 1
    fake.refuse_batches = 0

    def begin(batch: str = "execute", **overrides: Any) -> RunningGateway:
        gateway: RunningGateway = make_gateway(
            providers={
                "claude": {
                    "kind": "anthropic",
                    "base_url": handle.base_url,
                    "api_key": "sk-ant-inline",
                    "max_concurrency": 4,
                    "batch": batch,
                    **POLL,
                }
            },
            models={
                "gpt-4o-mini": {"provider": "fake", "model": "fake-ok"},
                "claude-fake": {"provider": "claude", "model": "fake-ok"},
                "claude-refuses": {"provider": "claude", "model": "fake-400"},
                # a configured name with the suffix is a model of its own
                "team-model-batch": {"provider": "fake", "model": "fake-400"},
            },
            prices={"claude-fake": CLAUDE_PRICE},
            **overrides,
        )
        return gateway

    return begin


@pytest.fixture
def igw(start) -> RunningGateway:
    gateway: RunningGateway = start()
    return gateway


def request(custom_id: str, model: str, prompt: str, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt}],
            **params,
        },
    }


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def create(gw: RunningGateway, key: str, requests_: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{gw.url}/batches", json={"requests": requests_}, headers=headers(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def results_of(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """The result lines of an ended batch, by custom_id, each checked for its shape."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-jsonl"
    assert response.text.endswith("\n") and "\n\n" not in response.text
    lines = [json.loads(line) for line in response.text.split("\n")[:-1]]
    for line in lines:
        assert set(line) == {"custom_id", "result"}
        assert line["result"]["type"] in {"succeeded", "errored", "canceled", "expired"}
    return {line["custom_id"]: line["result"] for line in lines}


def admin(gw: RunningGateway, path: str, **params: str) -> dict[str, Any]:
    response = httpx.get(f"{gw.base_url}{path}", params=params, headers=headers(gw.admin_key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def batch_logs(gw: RunningGateway, batch_id: str) -> dict[str, dict[str, Any]]:
    rows = admin(gw, "/admin/logs", batch=batch_id)["data"]
    return {row["custom_id"]: row for row in rows}


def cost(row: dict[str, Any], price: dict[str, float], discount: float = 0.0) -> float:
    tokens: dict[str, int] = {"input": row["input_tokens"], "output": row["output_tokens"]}
    normal = sum(tokens[kind] * price[kind] for kind in tokens) / 1e6
    return normal * (1 - discount)


# -- on an OpenAI-compatible provider ------------------------------------------------------


def test_inline_batch_with_httpx_on_an_openai_compatible_provider(igw: RunningGateway):
    key = igw.create_key()
    tag = unique()
    requests_ = [
        request("plain", "fake-ok", f"{tag} plain"),
        request(
            "full",
            "gpt-4o-mini-batch",
            f"{tag} full",
            system="Be brief.",
            temperature=0.2,
            top_p=0.9,
            stop_sequences=["STOP"],
            metadata={"user_id": "u-1"},
            tools=[{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}],
            tool_choice={"type": "auto"},
        ),
        request("refused", "fake-400", tag),
        request("thinks", "fake-ok", tag, thinking={"type": "enabled", "budget_tokens": 1024}),
    ]
    batch = create(igw, key, requests_)
    assert batch["type"] == "message_batch" and batch["id"].startswith("msgbatch_")
    assert batch["processing_status"] == "in_progress"
    assert batch["request_counts"] == {
        "processing": 4,
        "succeeded": 0,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    assert batch["results_url"] is None and batch["ended_at"] is None
    assert batch["created_at"].endswith("Z") and batch["expires_at"].endswith("Z")

    # while it runs, GET answers the batch object
    running = httpx.get(f"{igw.url}/batches/{batch['id']}", headers=headers(key))
    assert running.headers["content-type"] == "application/json"
    assert running.json() == batch
    early = httpx.get(f"{igw.url}/batches/{batch['id']}/results", headers=headers(key))
    assert early.status_code == 400
    assert "has not ended" in early.json()["error"]["message"]

    igw.drain()
    ended = httpx.get(f"{igw.url}/batches/{batch['id']}", headers=headers(key))
    results = results_of(ended)
    assert list(results) == ["plain", "full", "refused", "thinks"]  # input order
    assert results["plain"]["message"]["content"][0]["text"] == f"echo: {tag} plain"
    assert results["plain"]["message"]["type"] == "message"
    assert results["full"]["type"] == "succeeded"
    assert results["refused"]["type"] == "errored"
    assert results["refused"]["error"]["error"]["type"] == "invalid_request_error"
    # thinking cannot be translated to a chat completion: that request fails, by name
    assert results["thinks"]["type"] == "errored"
    assert "thinking" in results["thinks"]["error"]["error"]["message"]
    again = httpx.get(f"{igw.url}/batches/{batch['id']}/results", headers=headers(key))
    assert again.content == ended.content

    # the Messages requests went out as chat completions, the -batch name as its model
    [full] = [r for r in igw.fake.requests if f"{tag} full" in json.dumps(r.json)]
    assert full.path == "/v1/chat/completions" and full.model == "fake-ok"
    assert full.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert full.json["stop"] == ["STOP"] and full.json["tools"][0]["function"]["name"] == "lookup"


def test_inline_batch_with_requests_as_in_the_services_example(igw: RunningGateway):
    api_base = igw.url  # http://host:port/v1
    api_key = igw.create_key()
    session_headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    tag = unique()

    created = requests.post(
        f"{api_base}/batches",
        headers=session_headers,
        json={
            "requests": [
                {
                    "custom_id": f"question-{i}",
                    "params": {
                        "model": "gpt-4o-mini-batch",
                        "max_tokens": 256,
                        "messages": [{"role": "user", "content": f"{tag} question {i}"}],
                    },
                }
                for i in range(3)
            ]
        },
        timeout=10,
    )
    created.raise_for_status()
    batch_id = created.json()["id"]

    polls = 0
    while True:  # poll until the batch answers with its results
        response = requests.get(f"{api_base}/batches/{batch_id}", headers=session_headers)
        response.raise_for_status()
        if response.headers["content-type"].startswith("application/json"):
            assert response.json()["processing_status"] == "in_progress"
            polls += 1
            igw.drain()  # a real client sleeps here
            continue
        results = [json.loads(line) for line in response.text.splitlines()]
        break

    assert polls == 1
    assert [r["custom_id"] for r in results] == [f"question-{i}" for i in range(3)]
    for i, line in enumerate(results):
        assert line["result"]["type"] == "succeeded"
        assert line["result"]["message"]["content"][0]["text"] == f"echo: {tag} question {i}"
    streamed = requests.get(
        f"{api_base}/batches/{batch_id}/results", headers=session_headers, stream=True
    )
    assert [json.loads(line) for line in streamed.iter_lines()] == results


def test_the_openai_views_of_an_inline_batch(igw: RunningGateway):
    key = igw.create_key()
    client = igw.client(key)
    tag = unique()
    file_batch = client.batches.create(
        input_file_id=upload(client, jsonl([chat_line("f", prompt=tag)])),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    inline = create(igw, key, [request("ok", "fake-ok", tag), request("no", "fake-400", tag)])
    igw.drain()

    # the list is OpenAI's, for both
    listed = {b.id: b for b in client.batches.list()}
    assert set(listed) == {file_batch.id, inline["id"]}
    seen = listed[inline["id"]]
    assert seen.object == "batch" and seen.endpoint == "/v1/messages"
    assert seen.status == "completed" and seen.model is None  # two models
    assert seen.request_counts is not None and seen.request_counts.total == 2
    sent = [json.loads(line) for line in client.files.content(seen.input_file_id).text.split()]
    assert [(s["custom_id"], s["url"], s["body"]["model"]) for s in sent] == [
        ("ok", "/v1/messages", "fake-ok"),
        ("no", "/v1/messages", "fake-400"),
    ]
    [output] = read_results(client, seen.output_file_id)
    assert output.response is not None and output.response.body["type"] == "message"
    [error] = read_results(client, seen.error_file_id)
    assert error.custom_id == "no"

    # a batch made from a file answers as it always has
    retrieved = client.batches.retrieve(file_batch.id)
    assert retrieved.object == "batch" and retrieved.status == "completed"

    # the Anthropic routes and SDK read the inline batch as well
    claude = anthropic.Anthropic(base_url=igw.base_url, api_key=key, max_retries=0)
    ended = claude.messages.batches.retrieve(inline["id"])
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == 1
    assert {r.custom_id: r.result.type for r in claude.messages.batches.results(inline["id"])} == {
        "ok": "succeeded",
        "no": "errored",
    }


# -- on an Anthropic provider --------------------------------------------------------------


def test_inline_batch_on_an_anthropic_provider(igw: RunningGateway, claude_api):
    claude, _ = claude_api
    key = igw.create_key()
    tag = unique()
    params = {
        "system": [{"type": "text", "text": "Be brief."}],
        "temperature": 0.5,
        "top_k": 5,
        "stop_sequences": ["###"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-2"},
    }
    requests_ = [request(f"c{i}", "claude-fake", f"{tag} {i}", **params) for i in range(3)]
    requests_.append(request("refused", "claude-refuses", tag))
    batch = create(igw, key, requests_)
    igw.drain()
    results = results_of(httpx.get(f"{igw.url}/batches/{batch['id']}", headers=headers(key)))
    for i in range(3):
        assert results[f"c{i}"]["message"]["content"][0]["text"] == f"echo: {tag} {i}"
    assert results["refused"]["error"]["error"]["type"] == "invalid_request_error"
    # each request went to the Messages API as sent, with the provider's model and key
    sent = [r for r in claude.requests if r.path == "/v1/messages" and tag in json.dumps(r.json)]
    assert len(sent) == 4
    assert all(r.headers["x-api-key"] == "sk-ant-inline" for r in sent)
    first = next(r.json for r in sent if r.json["messages"][0]["content"] == f"{tag} 0")
    assert first == {**requests_[0]["params"], "model": "fake-ok"}

    # executed lines: logged like any batch line, priced at the normal price
    logs = batch_logs(igw, batch["id"])
    assert set(logs) == {"c0", "c1", "c2", "refused"}
    for i in range(3):
        row = logs[f"c{i}"]
        assert (row["kind"], row["status"], row["provider"]) == ("batch", "succeeded", "claude")
        assert row["endpoint"] == "/v1/messages" and row["model"] == "claude-fake"
        assert row["output_tokens"] > 0
        assert row["cost_usd"] == pytest.approx(cost(row, CLAUDE_PRICE))
    assert logs["refused"]["status"] == "failed" and logs["refused"]["cost_usd"] == 0
    totals = admin(igw, "/admin/usage")["totals"]["batch"]
    assert totals["requests"] == 4 and totals["errors"] == 1
    assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in logs.values()))


def test_inline_batch_on_anthropic_native_batches(start, claude_api):
    claude, _ = claude_api
    gw = start(batch="native")
    key = gw.create_key()
    tag = unique()
    requests_ = [request(f"n{i}", "claude-fake-batch", f"{tag} {i}") for i in range(3)]
    batch = create(gw, key, requests_)
    gw.drain()
    results = results_of(httpx.get(f"{gw.url}/batches/{batch['id']}", headers=headers(key)))
    assert [r["message"]["content"][0]["text"] for r in results.values()] == [
        f"echo: {tag} {i}" for i in range(3)
    ]
    # one upstream message batch, no single message
    assert len(claude.batches) == 1
    assert claude.count(path="/v1/messages") == 0

    # native lines are priced at the batch price: the provider really discounts them
    logs = batch_logs(gw, batch["id"])
    assert set(logs) == {"n0", "n1", "n2"}
    for row in logs.values():
        assert row["model"] == "claude-fake" and row["status"] == "succeeded"
        assert row["cost_usd"] == pytest.approx(cost(row, CLAUDE_PRICE, discount=0.5))
    assert admin(gw, "/admin/usage")["totals"]["batch"]["requests"] == 3


# -- cancel --------------------------------------------------------------------------------


def test_cancel_ends_with_partial_results(make_gateway):
    gw = make_gateway(providers={"fake": {"max_concurrency": 1}})
    key = gw.create_key()
    tag = unique()
    batch = create(gw, key, [request(f"s{i}", "fake-slow", f"{tag} {i}") for i in range(20)])

    async def run_then_cancel() -> dict[str, Any]:
        task = asyncio.ensure_future(gw.gateway.worker.drain())
        while gw.fake.count(model="fake-slow") < 3:
            await asyncio.sleep(0.01)
        response = await asyncio.to_thread(
            httpx.post, f"{gw.url}/batches/{batch['id']}/cancel", headers=headers(key)
        )
        await task
        body: dict[str, Any] = response.json()
        return body

    cancelling = gw.run(run_then_cancel())
    assert cancelling["type"] == "message_batch"
    assert cancelling["processing_status"] == "canceling"
    assert cancelling["cancel_initiated_at"] is not None

    results = results_of(httpx.get(f"{gw.url}/batches/{batch['id']}", headers=headers(key)))
    assert set(results) == {f"s{i}" for i in range(20)}
    done = [c for c, r in results.items() if r["type"] == "succeeded"]
    cancelled = [c for c, r in results.items() if r["type"] == "canceled"]
    assert len(done) >= 3 and len(done) + len(cancelled) == 20
    assert gw.fake.count(model="fake-slow") == len(done)
    # only the lines that ran are logged
    assert set(batch_logs(gw, batch["id"])) == set(done)

    again = httpx.post(f"{gw.url}/batches/{batch['id']}/cancel", headers=headers(key))
    assert again.status_code == 400  # it has ended: never a retryable 409


def test_cancel_before_anything_ran(igw: RunningGateway):
    key = igw.create_key()
    batch = create(igw, key, [request(f"x{i}", "fake-ok", unique()) for i in range(3)])
    response = httpx.post(f"{igw.url}/batches/{batch['id']}/cancel", headers=headers(key))
    assert response.status_code == 200
    assert response.json()["processing_status"] == "canceling"
    assert response.json()["request_counts"]["processing"] == 3
    igw.drain()
    results = results_of(httpx.get(f"{igw.url}/batches/{batch['id']}", headers=headers(key)))
    assert [r["type"] for r in results.values()] == ["canceled"] * 3
    assert igw.fake.count() == 0
    assert admin(igw, "/admin/logs", batch=batch["id"])["data"] == []


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "said"),
    [
        (
            {"requests": [request("a", "fake-ok", "x"), request("a", "fake-ok", "y")]},
            "requests[1].custom_id",
            "unique",
        ),
        (
            {"requests": [request("a", "no-such-model", "x")]},
            "requests[0].params.model",
            "does not exist",
        ),
        (
            {"requests": [request("a", "no-such-model-batch", "x")]},
            "requests[0].params.model",
            "no-such-model-batch",
        ),
        (
            {"requests": [{"custom_id": "a", "params": {"model": "fake-ok", "messages": []}}]},
            "requests[0].params.max_tokens",
            "max_tokens",
        ),
        (
            {"requests": [request("a", "fake-ok", "x", stream=True)]},
            "requests[0].params.stream",
            "stream",
        ),
        ({"requests": [{"custom_id": "a", "params": "hi"}]}, "requests[0].params", "params"),
        ({"requests": [{"params": {"model": "fake-ok"}}]}, "requests[0].custom_id", "custom_id"),
        ({"requests": [request("", "fake-ok", "x")]}, "requests[0].custom_id", "custom_id"),
        ({"requests": []}, "requests", "requests"),
        ({"requests": {"a": 1}}, "requests", "requests"),
        (
            {"requests": [request("a", "fake-ok", "x")], "input_file_id": "file-x"},
            "requests",
            "not both",
        ),
        (
            {"requests": [request("a", "fake-ok", "x")], "endpoint": "/v1/messages"},
            "endpoint",
            "endpoint",
        ),
    ],
    ids=[
        "duplicate",
        "unknown-model",
        "unknown-suffixed-model",
        "no-max-tokens",
        "stream",
        "params-not-object",
        "no-custom-id",
        "empty-custom-id",
        "empty",
        "not-a-list",
        "both-shapes",
        "unknown-field",
    ],
)
def test_bad_inline_batches_are_refused_at_once(igw: RunningGateway, body, param, said):
    key = igw.create_key()
    response = httpx.post(f"{igw.url}/batches", json=body, headers=headers(key))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert said in error["message"]
    assert igw.client(key).batches.list().data == []
    assert igw.client(key).files.list().data == []
    assert igw.fake.count() == 0


def test_every_bad_request_is_named(igw: RunningGateway):
    key = igw.create_key()
    body = {
        "requests": [
            request("a", "nope", "x"),
            request("b", "fake-ok", "x"),
            request("c", "fake-ok", "x", stream=True),
        ]
    }
    response = httpx.post(f"{igw.url}/batches", json=body, headers=headers(key))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "requests[0].params.model" in message and "requests[2].params.stream" in message
    assert "requests[1]" not in message


def test_limits_are_the_message_batch_limits(start):
    gw = start(limits={"max_message_batch_requests": 2, "max_message_batch_bytes": 2000})
    key = gw.create_key()
    three = [request(f"r{i}", "fake-ok", "x") for i in range(3)]
    response = httpx.post(f"{gw.url}/batches", json={"requests": three}, headers=headers(key))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "requests[2]"
    assert "more than 2 requests" in response.json()["error"]["message"]
    big = [request("big", "fake-ok", "x" * 3000)]
    response = httpx.post(f"{gw.url}/batches", json={"requests": big}, headers=headers(key))
    assert response.status_code == 413


def test_a_key_limited_to_some_models(igw: RunningGateway):
    key = igw.create_key(models=["gpt-4o-mini"])
    batch = create(igw, key, [request("a", "gpt-4o-mini-batch", unique())])
    assert batch["processing_status"] == "in_progress"
    response = httpx.post(
        f"{igw.url}/batches",
        json={"requests": [request("a", "fake-ok-batch", "x")]},
        headers=headers(key),
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "requests[0].params.model"


# -- the -batch suffix ---------------------------------------------------------------------


def test_the_batch_suffix_names_the_same_model_in_batches(igw: RunningGateway):
    key = igw.create_key()
    tag = unique()
    batch = create(
        igw,
        key,
        [
            request("suffixed", "gpt-4o-mini-batch", f"{tag} a"),
            request("plain", "gpt-4o-mini", f"{tag} b"),
            request("own", "team-model-batch", f"{tag} c"),  # configured: its own model
        ],
    )
    igw.drain()
    results = results_of(httpx.get(f"{igw.url}/batches/{batch['id']}", headers=headers(key)))
    assert results["suffixed"]["message"]["content"][0]["text"] == f"echo: {tag} a"
    assert results["plain"]["type"] == "succeeded"
    assert results["own"]["type"] == "errored"  # team-model-batch runs on fake-400

    # logged, and priced, as the model it names (gpt-4o-mini has a default price)
    logs = batch_logs(igw, batch["id"])
    assert logs["suffixed"]["model"] == "gpt-4o-mini"
    assert logs["suffixed"]["upstream_model"] == "fake-ok"
    assert logs["suffixed"]["cost_usd"] == pytest.approx(
        cost(logs["suffixed"], {"input": 0.15, "output": 0.60})
    )
    assert logs["own"]["model"] == "team-model-batch"
    assert admin(igw, "/admin/usage")["totals"]["batch"]["requests"] == 3

    # in file batches too
    client = igw.client(key)
    file_batch = client.batches.create(
        input_file_id=upload(client, jsonl([chat_line("f", model="fake-ok-batch", prompt=tag)])),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    igw.drain()
    assert client.batches.retrieve(file_batch.id).status == "completed"


def test_the_batch_suffix_is_for_batches_only(igw: RunningGateway):
    key = igw.create_key()
    response = httpx.post(
        f"{igw.url}/chat/completions",
        json={"model": "fake-ok-batch", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers(key),
    )
    assert response.status_code == 404
