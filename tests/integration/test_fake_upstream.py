"""The fake upstream, served on a loopback port and driven by the official OpenAI SDK."""

from __future__ import annotations

import array
import base64
import email.utils
import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

import batchway.testing
from batchway.server import Message, Receive, Scope, Send, ServerHandle, serve_in_thread
from batchway.testing import FakeUpstream
from batchway.testing.fake_upstream import FAKE_MODELS


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeUpstream, ServerHandle]]:
    upstream = FakeUpstream()
    with serve_in_thread(upstream) as handle:
        yield upstream, handle


@pytest.fixture
def fake(served: tuple[FakeUpstream, ServerHandle]) -> Iterator[FakeUpstream]:
    upstream, _ = served
    upstream.clear()
    yield upstream
    defaults = FakeUpstream()
    upstream.slow_seconds = defaults.slow_seconds
    upstream.timeout_seconds = defaults.timeout_seconds
    upstream.retry_after = defaults.retry_after
    upstream.record_bodies = defaults.record_bodies
    upstream.rate_limit = defaults.rate_limit


@pytest.fixture
def handle(served: tuple[FakeUpstream, ServerHandle]) -> ServerHandle:
    return served[1]


@pytest.fixture
def client(handle: ServerHandle, fake: FakeUpstream) -> Iterator[OpenAI]:
    with OpenAI(base_url=handle.url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(handle: ServerHandle, fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=handle.base_url, timeout=10) as session:
        yield session


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def assert_error_envelope(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == error_type
    assert error["message"]


# -- chat completions ----------------------------------------------------------------------------


def test_chat_echoes_the_last_user_message(client: OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "what is two plus two"},
    ]
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    completion = raw.parse()

    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o"
    assert completion.created > 0
    assert completion.system_fingerprint
    assert completion.service_tier is None
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: what is two plus two"
    assert choice.message.refusal is None
    assert choice.logprobs is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + 2 + 2 + 5
    assert completion.usage.completion_tokens == 6
    assert completion.usage.total_tokens == 11 + 6


def test_each_answer_belongs_to_its_request(client: OpenAI) -> None:
    contents = {
        prompt: client.chat.completions.create(model="fake-ok-2", messages=user(prompt))
        .choices[0]
        .message.content
        for prompt in ("alpha", "beta", "gamma")
    }

    assert contents == {"alpha": "echo: alpha", "beta": "echo: beta", "gamma": "echo: gamma"}


def test_chat_concatenates_text_parts(client: OpenAI) -> None:
    content: list[ChatCompletionContentPartParam] = [
        {"type": "text", "text": "Hello "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "world"},
    ]
    completion = client.chat.completions.create(
        model="fake-ok", messages=[{"role": "user", "content": content}]
    )

    assert completion.choices[0].message.content == "echo: Hello world"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
def test_chat_truncates_to_the_token_limit(client: OpenAI, limit_field: str) -> None:
    completion = client.chat.completions.create(
        model="fake-ok",
        messages=user("one two three four"),
        max_tokens=3 if limit_field == "max_tokens" else openai.omit,
        max_completion_tokens=3 if limit_field == "max_completion_tokens" else openai.omit,
    )

    assert completion.choices[0].message.content == "echo: one two"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_chat_limit_above_the_answer_changes_nothing(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="fake-ok", messages=user("one two"), max_tokens=50
    )

    assert completion.choices[0].message.content == "echo: one two"
    assert completion.choices[0].finish_reason == "stop"


def test_chat_stream_with_usage(client: OpenAI) -> None:
    prompt = "stream  these words"
    expected = client.chat.completions.create(model="fake-ok", messages=user(prompt))
    stream = client.chat.completions.create(
        model="fake-ok",
        messages=user(prompt),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    words = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert len(words) == 4
    assert "".join(w or "" for w in words) == "echo: stream  these words"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-2])
    assert chunks[-1].choices == []
    assert chunks[-1].usage == expected.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_wire_format(http: httpx.Client) -> None:
    body = {"model": "fake-ok", "messages": user("hi"), "stream": True, "max_tokens": 1}
    response = http.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert [p["choices"][0]["delta"] for p in payloads] == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "echo:"},
        {},
    ]
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in p for p in payloads)


# -- other endpoints -----------------------------------------------------------------------------


def test_completions(client: OpenAI) -> None:
    completion = client.completions.create(model="fake-ok", prompt="say this is a test")

    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "fake-ok"
    assert completion.choices[0].text == "echo: say this is a test"
    assert completion.choices[0].index == 0
    assert completion.choices[0].logprobs is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 6)


def test_completions_answers_each_prompt(client: OpenAI) -> None:
    completion = client.completions.create(model="fake-ok", prompt=["a b c", "d"], max_tokens=2)

    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [
        (0, "echo: a", "length"),
        (1, "echo: d", "stop"),
    ]


def test_embeddings_base64_decodes_to_the_float_answer(client: OpenAI) -> None:
    inputs = ["the quick brown fox", "jumps"]
    as_floats = client.embeddings.create(model="fake-ok", input=inputs, encoding_format="float")
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = client.embeddings.create(model="fake-ok", input=inputs)
    as_base64 = client.embeddings.create(model="fake-ok", input=inputs, encoding_format="base64")

    assert as_floats.object == "list"
    assert as_floats.model == "fake-ok"
    assert [d.index for d in as_floats.data] == [0, 1]
    assert all(d.object == "embedding" for d in as_floats.data)
    vectors = [d.embedding for d in as_floats.data]
    assert all(len(v) == 8 for v in vectors)
    assert vectors[0] != vectors[1]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert [d.embedding for d in decoded.data] == vectors
    raw = [array.array("f", base64.b64decode(str(d.embedding))).tolist() for d in as_base64.data]
    assert raw == vectors
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == 5


def test_embeddings_are_deterministic_and_sized(client: OpenAI) -> None:
    first = client.embeddings.create(model="fake-ok", input="same text", dimensions=16)
    again = client.embeddings.create(model="fake-ok", input="same text", dimensions=16)
    tokens = client.embeddings.create(model="fake-ok", input=[[1, 2, 3]], encoding_format="float")

    assert len(first.data[0].embedding) == 16
    assert first.data[0].embedding == again.data[0].embedding
    assert len(tokens.data[0].embedding) == 8
    assert tokens.usage.prompt_tokens == 3


def test_embeddings_reject_empty_input(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"model": "fake-ok", "input": ""})

    assert_error_envelope(response, 400, "invalid_request_error")
    assert response.json()["error"]["param"] == "input"


@pytest.mark.parametrize("dimensions", [8193, 10**18])
def test_embeddings_refuse_more_dimensions_than_any_model_has(
    http: httpx.Client, dimensions: int
) -> None:
    body = {"model": "fake-ok", "input": "x", "dimensions": dimensions}
    response = http.post("/v1/embeddings", json=body)

    assert_error_envelope(response, 400, "invalid_request_error")
    assert response.json()["error"]["param"] == "dimensions"


def test_responses_with_a_string_input(client: OpenAI) -> None:
    response = client.responses.create(model="fake-ok", input="tell me a joke")

    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "fake-ok"
    assert response.output_text == "echo: tell me a joke"
    message = response.output[0]
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 5)
    assert response.usage.total_tokens == 9


def test_responses_with_messages(client: OpenAI) -> None:
    response = client.responses.create(
        model="fake-ok",
        instructions="be nice",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second one"}]},
        ],
    )

    assert response.output_text == "echo: second one"
    assert response.usage is not None
    assert response.usage.input_tokens == 2 + 1 + 1 + 2


def test_models(client: OpenAI) -> None:
    models = list(client.models.list())

    assert [m.id for m in models] == list(FAKE_MODELS)
    assert all(m.object == "model" and m.owned_by == "fake" and m.created for m in models)
    assert client.models.retrieve("fake-slow").id == "fake-slow"


def test_paths_work_without_the_v1_prefix(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json={"model": "fake-ok", "messages": user("x")})

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: x"


# -- behaviours ----------------------------------------------------------------------------------


def test_429_then_ok(client: OpenAI, fake: FakeUpstream) -> None:
    fake.retry_after = "2"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fake-429-then-ok", messages=user("p1"))
    answer = client.chat.completions.create(model="fake-429-then-ok", messages=user("p1"))

    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert answer.choices[0].message.content == "echo: p1"
    # Another prompt fails once too.
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="fake-429-then-ok", messages=user("p2"))
    assert fake.count(model="fake-429-then-ok") == 3


def test_500_then_ok(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fake-500-then-ok", messages=user("q"))
    answer = client.chat.completions.create(model="fake-500-then-ok", messages=user("q"))

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert answer.choices[0].message.content == "echo: q"


def test_then_ok_also_applies_to_embeddings(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="fake-429-then-ok", input="e")

    assert len(client.embeddings.create(model="fake-429-then-ok", input="e").data) == 1


def test_clear_forgets_which_prompts_failed(client: OpenAI, fake: FakeUpstream) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-500-then-ok", messages=user("r"))
    fake.clear()

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-500-then-ok", messages=user("r"))


def test_500_always(client: OpenAI) -> None:
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="fake-500", messages=user("same"))
        assert caught.value.type == "server_error"


@pytest.mark.parametrize("model", ["fake-400", "fake-always-400"])
def test_400_always(client: OpenAI, model: str) -> None:
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=model, messages=user("same"))
        assert caught.value.type == "invalid_request_error"
        assert model in caught.value.message


def test_401_echo_quotes_the_credential_it_received(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": "fake-401-echo", "messages": user("x")},
        headers={"authorization": "Bearer sk-echo-me"},
    )

    assert_error_envelope(response, 401, "invalid_request_error")
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "Bearer sk-echo-me" in response.json()["error"]["message"]
    other = http.post(
        "/v1/chat/completions",
        json={"model": "fake-401-echo", "messages": user("x")},
        headers={"x-api-key": "sk-ant-echo-me"},
    )
    assert "sk-ant-echo-me" in other.json()["error"]["message"]


def test_403_always(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "fake-403", "messages": user("x")})

    assert_error_envelope(response, 403, "permission_error")


def test_400_echo_quotes_every_credential(http: httpx.Client) -> None:
    response = http.post(
        "/v1/embeddings",
        json={"model": "fake-400-echo", "input": "x"},
        headers={"api-key": "azure-echo-me", "x-team": "blue"},
    )

    assert_error_envelope(response, 400, "invalid_request_error")
    message = response.json()["error"]["message"]
    assert "api-key: azure-echo-me" in message and "x-team: blue" in message


def test_echo_credentials_answers_with_them(http: httpx.Client) -> None:
    body = {"model": "fake-echo-credentials", "messages": user("ignored")}
    headers = {"authorization": "Bearer sk-echo-me", "x-extra": "one"}

    answer = http.post("/v1/chat/completions", json=body, headers=headers).json()
    streamed = http.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=headers
    ).text

    content = answer["choices"][0]["message"]["content"]
    assert content == "echo: authorization: Bearer sk-echo-me; x-extra: one"
    assert "sk-echo-me" in streamed and "ignored" not in streamed


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("soon", "soon"),
        ("huge", "1e400"),
        ("inf", "inf"),
        ("nan", "nan"),
        ("negative", "-5"),
        ("day", "86400"),
        ("none", None),
    ],
)
def test_429_always_sends_the_retry_after_of_its_case(
    http: httpx.Client, case: str, expected: str | None
) -> None:
    model = f"fake-429-always-{case}"
    for _ in range(2):
        response = http.post("/v1/chat/completions", json={"model": model, "messages": user("x")})
        assert_error_envelope(response, 429, "requests")
        assert response.headers.get("retry-after") == expected


@pytest.mark.parametrize(("case", "ahead"), [("date", 3600), ("past", -3600)])
def test_429_always_with_an_http_date(http: httpx.Client, case: str, ahead: int) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": f"fake-429-always-{case}", "messages": user("x")}
    )

    moment = email.utils.parsedate_to_datetime(response.headers["retry-after"])
    assert response.status_code == 429
    assert abs(moment.timestamp() - (time.time() + ahead)) < 120


def test_bad_json(client: OpenAI, http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "fake-bad-json", "messages": []})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="fake-bad-json", messages=user("x"))


def test_slow_answers_after_the_delay(client: OpenAI, fake: FakeUpstream) -> None:
    fake.slow_seconds = 0.3
    started = time.monotonic()
    completion = client.chat.completions.create(model="fake-slow", messages=user("zzz"))

    assert time.monotonic() - started >= 0.3
    assert completion.choices[0].message.content == "echo: zzz"


def test_timeout_ends_when_the_client_gives_up(client: OpenAI, fake: FakeUpstream) -> None:
    fake.timeout_seconds = 10
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).chat.completions.create(
            model="fake-timeout", messages=user("hello?")
        )

    # The client closed its connection: the fake stops waiting long before 10 s.
    assert fake.wait_idle(timeout=5)
    assert fake.count(model="fake-timeout") == 1


def test_timeout_answers_once_the_delay_is_over(client: OpenAI, fake: FakeUpstream) -> None:
    fake.timeout_seconds = 0.1
    completion = client.chat.completions.create(model="fake-timeout", messages=user("late"))

    assert completion.choices[0].message.content == "echo: late"


def test_shutdown_ends_a_pending_timeout() -> None:
    upstream = FakeUpstream(timeout_seconds=60)
    body = {"model": "fake-timeout", "messages": user("never")}
    with ThreadPoolExecutor(1) as pool:
        with serve_in_thread(upstream) as handle:
            pending = pool.submit(
                httpx.post, f"{handle.url}/chat/completions", json=body, timeout=30
            )
            assert upstream.wait_for_requests(1)
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
        response = pending.result()

    assert stopped_in < 5
    assert_error_envelope(response, 503, "server_error")


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/nope"), ("GET", "/v1/chat/completions"), ("DELETE", "/v1/models")],
)
def test_unknown_routes_answer_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)

    assert_error_envelope(response, 404, "invalid_request_error")
    assert path in response.json()["error"]["message"]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_answers_400(http: httpx.Client, content: bytes) -> None:
    response = http.post("/v1/chat/completions", content=content)

    assert_error_envelope(response, 400, "invalid_request_error")


def test_a_missing_model_answers_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"messages": user("x")})

    assert_error_envelope(response, 400, "invalid_request_error")
    assert response.json()["error"]["param"] == "model"


def test_missing_messages_answer_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fake-ok", messages=[])

    assert caught.value.param == "messages"


# -- recording -----------------------------------------------------------------------------------


def test_records_every_request(client: OpenAI, http: httpx.Client, fake: FakeUpstream) -> None:
    before = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="fake-ok", messages=user("one"), extra_headers={"X-Trace-Token": "Abc"}
    )
    http.post("/chat/completions", json={"model": "fake-ok-2", "messages": user("two")})
    http.post("/v1/embeddings", json={"model": "fake-ok", "input": "three"})
    http.get("/v1/nowhere")

    records = fake.requests
    assert [(r.method, r.path, r.model) for r in records] == [
        ("POST", "/v1/chat/completions", "fake-ok"),
        ("POST", "/chat/completions", "fake-ok-2"),
        ("POST", "/v1/embeddings", "fake-ok"),
        ("GET", "/v1/nowhere", None),
    ]
    first = records[0]
    assert first.headers["x-trace-token"] == "Abc"
    assert first.headers["authorization"] == "Bearer x"
    assert all(name == name.lower() for r in records for name in r.headers)
    assert first.json == {"model": "fake-ok", "messages": user("one")}
    assert json.loads(first.body) == first.json
    assert first.request_id == raw.headers["x-request-id"]
    assert records[3].json is None and records[3].body == b""
    assert before <= first.time <= records[1].time <= records[3].time
    assert fake.count() == 4
    assert fake.count(model="fake-ok") == 2
    assert fake.count(path="/v1/chat/completions") == 2
    assert fake.count(path="/chat/completions") == 2
    assert fake.count(model="fake-ok", path="/embeddings") == 1

    fake.clear()
    assert fake.requests == [] and fake.count() == 0


def test_records_without_bodies(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.record_bodies = False
    http.post("/v1/chat/completions", json={"model": "fake-ok", "messages": user("x")})

    (record,) = fake.requests
    assert (record.json, record.body, record.model) == (None, b"", "fake-ok")


def test_record_limit_keeps_the_latest() -> None:
    upstream = FakeUpstream(record_limit=2)
    with serve_in_thread(upstream) as handle, httpx.Client(base_url=handle.url) as session:
        for prompt in ("a", "b", "c"):
            session.post("/chat/completions", json={"model": "fake-ok", "messages": user(prompt)})

    assert [r.json["messages"][0]["content"] for r in upstream.requests] == ["b", "c"]


def test_max_in_flight_counts_concurrent_requests(client: OpenAI, fake: FakeUpstream) -> None:
    fake.slow_seconds = 0.5

    def ask(prompt: str) -> str | None:
        completion = client.chat.completions.create(model="fake-slow", messages=user(prompt))
        return completion.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, ["w", "x", "y", "z"]))

    assert answers == ["echo: w", "echo: x", "echo: y", "echo: z"]
    assert 2 <= fake.max_in_flight <= 4
    assert fake.in_flight == 0


def test_max_in_flight_is_one_for_sequential_requests(client: OpenAI, fake: FakeUpstream) -> None:
    for prompt in ("a", "b", "c"):
        client.chat.completions.create(model="fake-ok", messages=user(prompt))

    assert fake.max_in_flight == 1


def test_wait_for_requests_times_out(fake: FakeUpstream) -> None:
    assert fake.wait_for_requests(1, timeout=0.01) is False
    assert fake.wait_idle(timeout=0.01) is True


# -- arrivals and the rate limit -----------------------------------------------------------------


def chat(http: httpx.Client, prompt: str = "hi", model: str = "fake-ok") -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": user(prompt)})


def busiest(times: list[float], seconds: float) -> int:
    """The brute-force answer to max_in_window: windows (t - seconds, t] ending on an arrival."""
    return max((sum(1 for u in times if 0 <= t - u < seconds) for t in times), default=0)


def test_arrivals_count_inference_requests_only(http: httpx.Client, fake: FakeUpstream) -> None:
    chat(http, "a")
    http.post("/completions", json={"model": "fake-ok", "prompt": "b"})
    http.post("/v1/embeddings", json={"model": "fake-ok", "input": "c"})
    http.post("/v1/responses", json={"model": "fake-ok", "input": "d"})
    http.post("/v1/chat/completions", content=b"{not json")  # an inference route all the same
    http.get("/v1/models")
    http.get("/v1/chat/completions")
    http.post("/v1/nope", json={})

    assert fake.arrivals == 5
    assert fake.count() == 8
    assert fake.max_in_window(60) == 5
    assert fake.rejected_429 == 0


def test_max_in_window_matches_brute_force(http: httpx.Client, fake: FakeUpstream) -> None:
    for prompt in "abcdef":
        chat(http, prompt)
    # The fake's own arrival times, so the windows below are exact whatever the timing was.
    times = [r.time for r in fake.requests]
    gaps = [b - a for a in times for b in times if b > a]

    assert fake.max_in_window(60) == 6
    assert fake.max_in_window(min(gaps)) == 1
    assert fake.max_in_window(max(gaps)) == 5  # half-open: first and last never share one
    for seconds in gaps:
        assert fake.max_in_window(seconds) == busiest(times, seconds)
        assert fake.max_in_window(seconds * 1.0001) == busiest(times, seconds * 1.0001)


def test_max_in_window_needs_a_positive_window(fake: FakeUpstream) -> None:
    assert fake.max_in_window(1) == 0
    with pytest.raises(ValueError, match="positive"):
        fake.max_in_window(0)


def test_rate_limit_answers_429_with_retry_after(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(3, 60)
    responses = [chat(http, str(i)) for i in range(5)]

    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    rejected = responses[3]
    assert_error_envelope(rejected, 429, "requests")
    assert rejected.json()["error"]["code"] == "rate_limit_exceeded"
    # A slot frees when the first arrival leaves the 60 s window, rounded up to the ms.
    records = fake.requests
    expected = records[0].time + 60 - records[3].time
    retry_after = rejected.headers["retry-after"]
    assert len(retry_after.partition(".")[2]) <= 3
    assert expected <= float(retry_after) <= expected + 0.001
    assert retry_after in rejected.json()["error"]["message"]
    assert fake.rejected_429 == 2
    assert fake.arrivals == 3
    assert fake.max_in_window(60) == 3
    assert fake.count() == 5  # rejected requests are still recorded


def test_rate_limit_through_the_sdk(client: OpenAI, fake: FakeUpstream) -> None:
    fake.rate_limit = (1, 60.0)
    client.embeddings.create(model="fake-ok", input="first")
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fake-ok", messages=user("second"))

    assert caught.value.code == "rate_limit_exceeded"
    assert 59 < float(caught.value.response.headers["retry-after"]) <= 60
    assert fake.rejected_429 == 1


def test_rate_limit_leaves_other_routes_alone(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(1)
    chat(http)

    assert chat(http).status_code == 429
    assert http.get("/v1/models").status_code == 200
    assert http.post("/v1/nope", json={}).status_code == 404
    assert fake.rejected_429 == 1


def test_rate_limit_comes_before_the_behaviours(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(2)
    first = chat(http, "p", model="fake-429-then-ok")  # the behaviour's 429: an arrival
    second = chat(http, "p", model="fake-429-then-ok")
    third = chat(http, "p", model="fake-500")

    assert (first.status_code, second.status_code, third.status_code) == (429, 200, 429)
    assert first.headers["retry-after"] == fake.retry_after
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert (fake.arrivals, fake.rejected_429) == (2, 1)


def test_concurrent_requests_respect_the_limit(client: OpenAI, fake: FakeUpstream) -> None:
    fake.limit_rate(5, 60)

    def ask(prompt: str) -> int:
        try:
            client.chat.completions.create(model="fake-ok", messages=user(prompt))
        except openai.RateLimitError:
            return 429
        return 200

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(ask, [str(i) for i in range(20)]))

    assert statuses.count(200) == 5
    assert statuses.count(429) == 15
    assert (fake.arrivals, fake.rejected_429, fake.max_in_window(60)) == (5, 15, 5)


def test_the_window_rolls(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(1, 60)
    chat(http)
    assert chat(http).status_code == 429

    # A new limit applies to the arrivals so far: the last one left a 1 µs window long ago.
    fake.limit_rate(1, 1e-6)
    assert chat(http).status_code == 200
    assert (fake.arrivals, fake.rejected_429) == (2, 1)


def test_lifting_the_limit(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(1)
    chat(http)
    assert chat(http).status_code == 429
    fake.limit_rate(None)

    assert fake.rate_limit is None
    assert [chat(http).status_code for _ in range(3)] == [200, 200, 200]


def test_clear_resets_arrivals_and_the_window(http: httpx.Client, fake: FakeUpstream) -> None:
    fake.limit_rate(1)
    chat(http)
    chat(http)
    fake.clear()

    assert (fake.arrivals, fake.rejected_429, fake.max_in_window(60)) == (0, 0, 0)
    assert fake.rate_limit == (1, 60.0)
    assert chat(http).status_code == 200  # the window forgot the earlier arrival
    assert chat(http).status_code == 429


@pytest.mark.parametrize("limit", [(0, 60.0), (1, 0.0), (1, -1.0)])
def test_a_rate_limit_must_be_positive(fake: FakeUpstream, limit: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        fake.rate_limit = limit
    with pytest.raises(ValueError, match="rate limit"):
        FakeUpstream(rate_limit=limit)

    assert fake.rate_limit is None


def test_rate_limit_from_the_constructor() -> None:
    upstream = FakeUpstream(rate_limit=(2, 60.0))
    with serve_in_thread(upstream) as handle, httpx.Client(base_url=handle.url) as session:
        statuses = [
            session.post("/embeddings", json={"model": "x", "input": "y"}).status_code
            for _ in range(3)
        ]

    assert statuses == [200, 200, 429]
    assert upstream.rejected_429 == 1


# -- serve_in_thread -----------------------------------------------------------------------------


async def hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    body = f"hello from {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_serve_in_thread_serves_any_asgi_app() -> None:
    with serve_in_thread(hello_app, lifespan="off") as handle:
        response = httpx.get(f"{handle.base_url}/anything")

    assert response.text == "hello from /anything"
    assert handle.port > 0
    assert handle.base_url == f"http://127.0.0.1:{handle.port}"
    assert handle.url == f"{handle.base_url}/v1"
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.base_url)


def test_serve_in_thread_raises_when_startup_fails() -> None:
    async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
        message: Message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match="failed to start"):
        with serve_in_thread(failing_app):
            pass  # pragma: no cover


def test_exports() -> None:
    assert set(batchway.testing.__all__) == {
        "FakeAnthropicAPI",
        "FakeAzureBatchAPI",
        "FakeOpenAIBatchAPI",
        "FakeUpstream",
        "MemoryBlobStore",
        "MemoryProvider",
        "MemoryRequestLogs",
        "MemoryStore",
        "MemoryUpstreamBatches",
        "RecordedAPIRequest",
        "RecordedRequest",
    }
    assert all(hasattr(batchway.testing, name) for name in batchway.testing.__all__)
