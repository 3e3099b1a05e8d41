"""The Anthropic Message Batches API through the official ``anthropic`` SDK, and batches of
either dialect on providers of the other (translated line by line)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeAnthropicAPI
from tests.conftest import RunningGateway
from tests.helpers import chat_line, jsonl, read_results, unique, upload


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key="sk-ant-upstream")
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def agw(make_gateway, fake_anthropic) -> RunningGateway:
    """A gateway with an Anthropic provider beside the OpenAI-compatible fake."""
    fake, handle = fake_anthropic
    fake.clear()
    gateway: RunningGateway = make_gateway(
        providers={
            "claude": {
                "kind": "anthropic",
                "base_url": handle.base_url,
                "api_key": "sk-ant-upstream",
                "max_concurrency": 4,
                "batch": "execute",  # calls; native Message Batches: test_native_batches.py
            }
        },
        models={
            "claude-fake": {"provider": "claude", "model": "fake-ok"},
            "claude-refuses": {"provider": "claude", "model": "fake-400"},
        },
    )
    return gateway


def anthropic_client(gw: RunningGateway, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key or gw.create_key(), max_retries=0)


def message_request(custom_id: str, model: str, prompt: str, **params) -> dict:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt}],
            **params,
        },
    }


@pytest.mark.parametrize("model", ["fake-ok", "claude-fake"], ids=["on-openai", "on-anthropic"])
def test_message_batch_end_to_end(agw: RunningGateway, model: str):
    client = anthropic_client(agw)
    tag = unique()
    requests = [message_request(f"m-{i}", model, f"{tag} {i}") for i in range(6)]
    requests.append(message_request("refused", "fake-400", tag))
    batch = client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 7
    assert batch.results_url is None

    agw.drain()
    batch = client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended"
    assert batch.ended_at is not None
    assert batch.request_counts.succeeded == 6 and batch.request_counts.errored == 1
    assert batch.results_url == f"{agw.base_url}/v1/messages/batches/{batch.id}/results"

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {f"m-{i}" for i in range(6)} | {"refused"}
    for i in range(6):
        result = results[f"m-{i}"]
        assert result.type == "succeeded"
        assert result.message.content[0].type == "text"
        assert result.message.content[0].text == f"echo: {tag} {i}"
        assert result.message.usage.output_tokens > 0
    refused = results["refused"]
    assert refused.type == "errored"
    assert refused.error.error.type == "invalid_request_error"


def test_the_same_batch_through_the_openai_view(agw: RunningGateway):
    key = agw.create_key()
    batch = anthropic_client(agw, key).messages.batches.create(
        requests=[message_request("only", "fake-ok", "hello both")]
    )
    agw.drain()
    openai_client = agw.client(key)
    seen = openai_client.batches.retrieve(batch.id)
    assert seen.status == "completed" and seen.endpoint == "/v1/messages"
    [line] = read_results(openai_client, seen.output_file_id)
    assert line.response is not None
    assert line.response.body["type"] == "message"
    assert line.response.body["content"][0]["text"] == "echo: hello both"
    # the inline requests are the batch's input file
    content = openai_client.files.content(seen.input_file_id).text
    assert json.loads(content)["body"]["messages"][0]["content"] == "hello both"


def test_openai_chat_batch_on_an_anthropic_provider(agw: RunningGateway, fake_anthropic):
    fake, _ = fake_anthropic
    client = agw.client()
    tag = unique()
    lines = [chat_line(f"c{i}", model="claude-fake", prompt=f"{tag}-{i}") for i in range(4)]
    lines.append(chat_line("no", model="claude-refuses", prompt=tag))
    lines.append(chat_line("two", model="claude-fake", prompt=tag, n=2))
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    agw.drain()
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    output = read_results(client, batch.output_file_id)
    assert [r.custom_id for r in output] == [f"c{i}" for i in range(4)]
    for i, result in enumerate(output):
        assert result.response is not None
        body = result.response.body
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"echo: {tag}-{i}"
        assert body["choices"][0]["finish_reason"] == "stop"
    errors = {r.custom_id: r for r in read_results(client, batch.error_file_id)}
    refused = errors["no"].response
    assert refused is not None and refused.status_code == 400
    assert refused.body["error"]["type"] == "invalid_request_error"
    untranslatable = errors["two"].response
    assert untranslatable is not None and untranslatable.status_code == 400
    assert "n=2" in untranslatable.body["error"]["message"]
    # the Anthropic upstream saw Messages requests with its own key, and never the "two" line
    sent = [r for r in fake.requests if r.path == "/v1/messages"]
    assert len(sent) == 5
    assert all(r.headers["x-api-key"] == "sk-ant-upstream" for r in sent)
    assert all(r.json["max_tokens"] == 4096 for r in sent)


def test_list_cancel_and_delete(agw: RunningGateway):
    client = anthropic_client(agw)
    created = [
        client.messages.batches.create(requests=[message_request("a", "fake-ok", unique())]).id
        for _ in range(3)
    ]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [created[2], created[1]] and page.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == list(reversed(created))
    newer = client.messages.batches.list(before_id=created[0], limit=5)
    assert [b.id for b in newer.data] == [created[2], created[1]]

    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(created[0])  # still in progress
    cancelled = client.messages.batches.cancel(created[0])
    assert cancelled.processing_status == "canceling"
    assert cancelled.cancel_initiated_at is not None
    agw.drain()
    ended = client.messages.batches.retrieve(created[0])
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 1
    [result] = list(client.messages.batches.results(created[0]))
    assert result.result.type == "canceled"

    deleted = client.messages.batches.delete(created[0])
    assert (deleted.id, deleted.type) == (created[0], "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(created[0])


@pytest.mark.parametrize(
    ("requests", "where"),
    [
        ([message_request("bad id!", "fake-ok", "x")], "custom_id"),
        (
            [message_request("a", "fake-ok", "x"), message_request("a", "fake-ok", "y")],
            "requests[1]",
        ),
        ([message_request("a", "no-such-model", "x")], "requests[0].params.model"),
        ([{"custom_id": "a", "params": {"model": "fake-ok", "messages": []}}], "max_tokens"),
        ([], "requests"),
    ],
    ids=["bad-custom-id", "duplicate", "unknown-model", "no-max-tokens", "empty"],
)
def test_bad_message_batches_are_refused_at_once(agw: RunningGateway, requests, where):
    key = agw.create_key()
    response = httpx.post(
        f"{agw.base_url}/v1/messages/batches",
        json={"requests": requests},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert where in body["error"]["message"]
    assert agw.client(key).batches.list().data == []
    assert agw.fake.count() == 0


def test_anthropic_errors_use_the_anthropic_envelope(agw: RunningGateway):
    client = anthropic_client(agw)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.retrieve("msgbatch_nope")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=agw.base_url, api_key="wrong", max_retries=0
        ).messages.batches.list()
    batch = client.messages.batches.create(requests=[message_request("a", "fake-ok", "x")])
    response = httpx.get(
        f"{agw.base_url}/v1/messages/batches/{batch.id}/results",
        headers={"x-api-key": client.api_key},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
