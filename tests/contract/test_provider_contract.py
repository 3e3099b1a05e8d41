"""The ``Provider`` contract: what a provider answers for each upstream behaviour, as an
``UpstreamResponse`` or as the same ``UpstreamError`` subclass, from an OpenAI-compatible
provider talking to ``FakeUpstream`` on a loopback port (``http``) and from the scripted
``MemoryProvider`` (``memory``, no sockets).

The fake upstream is shared by the session: every prompt here is made unique, so that its
"first time per prompt" behaviours start afresh in each test.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from batchway.config import ProviderConfig
from batchway.core.ports import Provider, UpstreamResponse
from batchway.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from batchway.providers.openai_compatible import OpenAICompatibleProvider
from batchway.server import ServerHandle
from batchway.testing import FakeUpstream
from batchway.testing.memory import MemoryProvider

CHAT = "/v1/chat/completions"


@dataclass
class Upstream:
    """A provider, and what its upstream received: (endpoint without ``/v1``, JSON body)."""

    provider: Provider
    received: Callable[[], list[tuple[str, Any]]]


@pytest.fixture(params=["http", "memory"])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    if request.param == "memory":
        memory = MemoryProvider("fake", retry_after="0")
        yield Upstream(memory, lambda: [(r.endpoint[3:], r.json) for r in memory.requests])
        return
    fake: FakeUpstream
    handle: ServerHandle
    fake, handle = request.getfixturevalue("fake_upstream")
    fake.clear()
    config = ProviderConfig(kind="openai-compatible", base_url=handle.url, timeout_seconds=0.5)
    provider = OpenAICompatibleProvider("fake", config)
    try:
        yield Upstream(provider, lambda: [(r.path[3:], r.json) for r in fake.requests])
    finally:
        await provider.close()


def chat(model: str, prompt: str | None = None, **fields: Any) -> bytes:
    text = prompt or f"hello there {secrets.token_hex(4)}"
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": text}], **fields})


def answer(response: UpstreamResponse) -> Any:
    body = orjson.loads(response.body)
    assert response.status == 200
    assert response.request_id is not None and response.request_id.startswith("req_")
    return body


async def failure(provider: Provider, body: bytes, endpoint: str = CHAT) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await provider.send(endpoint, body)
    return caught.value


def error_body(error: UpstreamError) -> Any:
    assert error.body is not None
    return orjson.loads(error.body)["error"]


# -- answers --------------------------------------------------------------------------------


async def test_a_chat_completion_echoes_the_prompt(upstream: Upstream) -> None:
    response = await upstream.provider.send(CHAT, chat("fake-ok", "say hi to me"))

    body = answer(response)
    assert body["object"] == "chat.completion" and body["model"] == "fake-ok"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: say hi to me", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


async def test_max_tokens_cuts_the_answer(upstream: Upstream) -> None:
    response = await upstream.provider.send(CHAT, chat("fake-ok-2", "one two three", max_tokens=2))

    (choice,) = answer(response)["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("echo: one", "length")


async def test_a_slow_model_answers(upstream: Upstream) -> None:
    body = answer(await upstream.provider.send(CHAT, chat("fake-slow", "in time")))
    assert body["choices"][0]["message"]["content"] == "echo: in time"


async def test_the_other_endpoints(upstream: Upstream) -> None:
    embedded = answer(
        await upstream.provider.send("/v1/embeddings", b'{"model": "fake-ok", "input": "a b"}')
    )
    completed = answer(
        await upstream.provider.send("/v1/completions", b'{"model": "fake-ok", "prompt": "x"}')
    )
    responded = answer(
        await upstream.provider.send("/v1/responses", b'{"model": "fake-ok", "input": "y z"}')
    )

    (vector,) = embedded["data"]
    assert len(vector["embedding"]) == 8 and embedded["usage"]["prompt_tokens"] == 2
    assert completed["choices"][0]["text"] == "echo: x"
    assert responded["output"][0]["content"][0]["text"] == "echo: y z"
    assert responded["status"] == "completed"


async def test_embeddings_are_the_same_for_the_same_text(upstream: Upstream) -> None:
    body = b'{"model": "fake-ok", "input": ["same", "same", "other"], "dimensions": 4}'
    data = answer(await upstream.provider.send("/v1/embeddings", body))["data"]
    vectors = [item["embedding"] for item in data]
    assert vectors[0] == vectors[1] != vectors[2]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, rel=1e-5)


async def test_a_body_that_is_not_json_is_passed_on_untouched(upstream: Upstream) -> None:
    response = await upstream.provider.send(CHAT, chat("fake-bad-json"))

    assert response.status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.body)
    assert response.body.startswith(b'{"id": "chatcmpl-broken"')


async def test_every_request_reaches_the_upstream_as_sent(upstream: Upstream) -> None:
    body = chat("fake-ok", "recorded", temperature=0.5, extra_field={"kept": True})
    await upstream.provider.send(CHAT, body)
    await failure(upstream.provider, chat("fake-500"))

    received = upstream.received()
    assert [(endpoint, json["model"]) for endpoint, json in received] == [
        ("/chat/completions", "fake-ok"),
        ("/chat/completions", "fake-500"),
    ]
    assert received[0][1] == orjson.loads(body)


# -- retryable failures ---------------------------------------------------------------------


async def test_429_then_ok(upstream: Upstream) -> None:
    body = chat("fake-429-then-ok")

    error = await failure(upstream.provider, body)

    assert type(error) is UpstreamRateLimited and error.retryable
    assert (error.status, error.retry_after) == (429, 0.0)
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error_body(error)["code"] == "rate_limit_exceeded"
    assert answer(await upstream.provider.send(CHAT, body))["object"] == "chat.completion"
    # another prompt is refused once too
    assert type(await failure(upstream.provider, chat("fake-429-then-ok"))) is UpstreamRateLimited


async def test_500_then_ok(upstream: Upstream) -> None:
    body = chat("fake-500-then-ok")

    error = await failure(upstream.provider, body)

    assert type(error) is UpstreamUnavailable and error.retryable
    assert (error.status, error.retry_after) == (500, None)
    assert error.message == "provider 'fake' failed (HTTP 500)"
    assert error_body(error)["type"] == "server_error"
    assert answer(await upstream.provider.send(CHAT, body))["object"] == "chat.completion"


async def test_500_always(upstream: Upstream) -> None:
    body = chat("fake-500")
    for _ in range(2):
        error = await failure(upstream.provider, body)
        assert type(error) is UpstreamUnavailable and error.status == 500


async def test_a_timeout(upstream: Upstream) -> None:
    error = await failure(upstream.provider, chat("fake-timeout"))

    assert type(error) is UpstreamTimeout and error.retryable
    assert (error.status, error.body) == (None, None)
    assert error.message == "provider 'fake' did not answer in time"


@pytest.mark.parametrize(
    ("case", "retry_after"),
    [
        ("soon", None),
        ("huge", None),
        ("inf", None),
        ("nan", None),
        ("negative", None),
        ("day", 60.0),  # capped at the provider's retry_after_max_seconds
        ("date", 60.0),
        ("past", 0.0),
        ("nothing", None),
    ],
)
async def test_429_always_with_any_retry_after(
    upstream: Upstream, case: str, retry_after: float | None
) -> None:
    error = await failure(upstream.provider, chat(f"fake-429-always-{case}"))

    assert type(error) is UpstreamRateLimited and error.status == 429
    assert error.retry_after == retry_after
    assert error.message == "provider 'fake' is rate limiting the gateway (HTTP 429)"


# -- final failures -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["fake-400", "fake-always-400", "fake-400-echo"])
async def test_a_rejected_request(upstream: Upstream, model: str) -> None:
    error = await failure(upstream.provider, chat(model))

    assert type(error) is UpstreamRejected and not error.retryable
    assert error.status == 400
    assert error.message == "provider 'fake' rejected the request (HTTP 400)"
    assert error_body(error)["param"] == "model"


@pytest.mark.parametrize(("model", "status"), [("fake-401-echo", 401), ("fake-403", 403)])
async def test_refused_credentials(upstream: Upstream, model: str, status: int) -> None:
    error = await failure(upstream.provider, chat(model))

    assert type(error) is UpstreamAuthError and not error.retryable
    assert error.status == status
    assert error.message == f"provider 'fake' refused the gateway's credentials (HTTP {status})"


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "param"),
    [
        ("/v1/unknown", b'{"model": "fake-ok"}', 404, None),
        (CHAT, b"[1, 2]", 400, None),
        (CHAT, b'{"messages": []}', 400, "model"),
        (CHAT, b'{"model": "fake-ok", "messages": []}', 400, "messages"),
        ("/v1/embeddings", b'{"model": "fake-ok", "input": ""}', 400, "input"),
    ],
)
async def test_requests_the_upstream_cannot_take(
    upstream: Upstream, endpoint: str, body: bytes, status: int, param: str | None
) -> None:
    error = await failure(upstream.provider, body, endpoint)

    assert type(error) is UpstreamRejected and error.status == status
    assert error_body(error)["param"] == param


async def test_no_credentials_to_echo(upstream: Upstream) -> None:
    # the provider sends no API key, so an upstream quoting credentials quotes nothing
    body = answer(await upstream.provider.send(CHAT, chat("fake-echo-credentials")))
    assert body["choices"][0]["message"]["content"] == "echo: "


# -- streams --------------------------------------------------------------------------------


async def events(upstream: Upstream, endpoint: str, body: bytes) -> list[Any]:
    raw = b"".join([chunk async for chunk in upstream.provider.stream(endpoint, body)])
    blocks = [block for block in raw.split(b"\n\n") if block]
    data = [
        line[6:] for block in blocks for line in block.split(b"\n") if line.startswith(b"data: ")
    ]
    assert data[-1] == b"[DONE]" or endpoint == "/v1/messages"
    return [orjson.loads(d) for d in data if d != b"[DONE]"]


async def test_a_chat_stream(upstream: Upstream) -> None:
    body = chat(
        "fake-ok", "stream these words", stream=True, stream_options={"include_usage": True}
    )

    chunks = await events(upstream, CHAT, body)

    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: stream these words"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


async def test_a_stream_that_fails_raises_before_the_first_chunk(upstream: Upstream) -> None:
    stream = upstream.provider.stream(CHAT, chat("fake-500", stream=True))
    with pytest.raises(UpstreamUnavailable):
        await anext(stream)


# -- Messages, translated to chat completions and back ------------------------------------


def message(model: str, text: str, **fields: Any) -> bytes:
    request = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}]}
    return orjson.dumps({**request, **fields})


async def test_a_messages_request(upstream: Upstream) -> None:
    body = answer(await upstream.provider.send("/v1/messages", message("fake-ok", "hi you")))

    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "fake-ok")
    assert body["content"] == [{"type": "text", "text": "echo: hi you"}]
    assert body["stop_reason"] == "end_turn"
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (2, 3)
    ((endpoint, sent),) = upstream.received()
    assert endpoint == "/chat/completions" and sent["messages"][-1]["content"] == "hi you"


async def test_a_messages_request_with_a_body_that_is_not_json(upstream: Upstream) -> None:
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        await upstream.provider.send("/v1/messages", message("fake-bad-json", "x"))


async def test_a_messages_request_that_fails(upstream: Upstream) -> None:
    error = await failure(upstream.provider, message("fake-400", "x"), "/v1/messages")
    assert type(error) is UpstreamRejected and error.status == 400


async def test_a_messages_stream(upstream: Upstream) -> None:
    stream = await events(upstream, "/v1/messages", message("fake-ok", "hey there", stream=True))

    kinds = [event["type"] for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(e["delta"]["text"] for e in stream if e["type"] == "content_block_delta")
    assert text == "echo: hey there"


async def test_what_a_provider_declares(upstream: Upstream) -> None:
    assert upstream.provider.name == "fake"
    assert upstream.provider.max_concurrency >= 1
    assert upstream.provider.native is None
