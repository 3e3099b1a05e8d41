"""A provider's secrets never leave the gateway, whatever the upstream echoes, and an upstream
401/403 is the gateway's failure (a 502 naming the provider), never the client's.

The fake upstream's ``fake-echo-credentials``, ``fake-400-echo`` and ``fake-401-echo`` quote
the credentials they were sent; the provider's key and a credential-like header must come out
masked on the synchronous routes (both dialects, streamed or not), in executed batch lines,
in request-log rows and in log lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import RunningGateway
from tests.e2e.test_anthropic_batches import anthropic_client, fake_anthropic  # noqa: F401
from tests.helpers import chat_line, read_results, start_batch, unique

SECRETS = ("upstream-secret", "header-token-4242", "sk-ant-wrong-key-1")
MASKED = "[masked]"
ADMIN = {"authorization": "Bearer admin-secret"}
MODELS = {
    "echo-credentials": {"provider": "fake", "model": "fake-echo-credentials"},
    "reject-echo": {"provider": "fake", "model": "fake-400-echo"},
    "auth-echo": {"provider": "fake", "model": "fake-401-echo"},
    "forbidden": {"provider": "fake", "model": "fake-403"},
    "claude-wrong-key": {"provider": "claude", "model": "fake-ok"},
}
REFUSED = [
    pytest.param("auth-echo", "fake", 401, id="401"),
    pytest.param("forbidden", "fake", 403, id="403"),
]


@pytest.fixture
def sgw(make_gateway, fake_anthropic) -> Iterator[RunningGateway]:  # noqa: F811
    """Secrets in the provider's key and headers, bodies kept in the request logs; an
    Anthropic provider whose key the upstream refuses."""
    _, handle = fake_anthropic
    gateway: RunningGateway = make_gateway(
        providers={
            "fake": {"headers": {"x-upstream-token": "header-token-4242", "x-team": "blue-team"}},
            "claude": {
                "kind": "anthropic",
                "base_url": handle.base_url,
                "api_key": "sk-ant-wrong-key-1",
                "batch": "execute",
            },
        },
        models=MODELS,
        logs={"record_bodies": True},
    )
    yield gateway


@pytest.fixture(autouse=True)
def no_secret_in_the_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="batchway")
    yield
    assert_clean(caplog.text)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def _post(gw: RunningGateway, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}{path}",
        json=body,
        headers={"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
        timeout=10,
    )


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": unique()}], **extra}


def _message(model: str, **extra: Any) -> dict[str, Any]:
    return {"max_tokens": 50, **_chat(model, **extra)}


def _logs(gw: RunningGateway) -> list[dict[str, Any]]:
    gw.run(gw.gateway.accounting.flush())
    rows: list[dict[str, Any]] = httpx.get(f"{gw.base_url}/admin/logs", headers=ADMIN).json()[
        "data"
    ]
    return rows


# -- masking ----------------------------------------------------------------------------------


def _assert_echo_masked(text: str) -> None:
    assert_clean(text)
    assert f"authorization: Bearer {MASKED}" in text
    assert f"x-upstream-token: {MASKED}" in text
    assert "x-team: blue-team" in text  # not a credential: left alone


def test_an_echoed_key_is_masked_in_chat_answers(sgw: RunningGateway):
    client = sgw.client()

    answer = client.chat.completions.create(**_chat("echo-credentials"))
    chunks = client.chat.completions.create(**_chat("echo-credentials", stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    _assert_echo_masked(answer.choices[0].message.content or "")
    _assert_echo_masked(streamed)
    assert streamed == answer.choices[0].message.content
    # the whole answer's row (a stream's answer is not kept)
    [row] = [r for r in _logs(sgw) if r["model"] == "echo-credentials" and "response_body" in r]
    assert MASKED in row["response_body"]
    assert_clean(str(_logs(sgw)))


def test_an_echoed_key_is_masked_in_messages_answers(sgw: RunningGateway):
    client = anthropic_client(sgw)

    message = client.messages.create(**_message("echo-credentials"))
    with client.messages.stream(**_message("echo-credentials")) as stream:
        streamed = "".join(stream.text_stream)

    assert message.content[0].type == "text"
    _assert_echo_masked(message.content[0].text)
    _assert_echo_masked(streamed)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("path", "build"), [("/v1/chat/completions", _chat), ("/v1/messages", _message)]
)
def test_a_refusal_quoting_the_key_is_passed_on_masked(
    sgw: RunningGateway, path: str, build: Any, stream: bool
):
    response = _post(sgw, path, build("reject-echo", stream=stream), sgw.create_key())

    assert response.status_code == 400
    assert_clean(response.text)
    body = response.json()
    message = body["error"]["message"]
    assert "fake-400-echo" in message and f"x-upstream-token: {MASKED}" in message
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    [row] = [r for r in _logs(sgw) if r["model"] == "reject-echo"]
    assert MASKED in row["response_body"]
    assert_clean(str(row))


# -- 401 and 403 --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("model", "provider", "status"), REFUSED)
def test_an_upstream_401_or_403_is_a_502_naming_the_provider(
    sgw: RunningGateway, model: str, provider: str, status: int, stream: bool
):
    key = sgw.create_key()

    response = _post(sgw, "/v1/chat/completions", _chat(model, stream=stream), key)

    assert response.status_code == 502
    assert response.json() == {
        "error": {
            "message": f"provider '{provider}' refused the gateway's credentials (HTTP {status})",
            "type": "upstream_auth_error",
            "param": None,
            "code": "upstream_auth_error",
        }
    }
    assert sgw.fake.count(model=MODELS[model]["model"]) == 1  # not retried
    # the client's own key is fine
    assert _post(sgw, "/v1/chat/completions", _chat("fake-ok"), key).status_code == 200
    [row] = [r for r in _logs(sgw) if r["model"] == model]
    assert (row["status"], row["status_code"]) == ("failed", status)
    assert row["error_code"] == "upstream_auth_error"
    assert_clean(str(row))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("model", "provider", "status"),
    [*REFUSED, pytest.param("claude-wrong-key", "claude", 401, id="anthropic-provider")],
)
def test_an_upstream_401_or_403_on_messages_is_a_502_naming_the_provider(
    sgw: RunningGateway, model: str, provider: str, status: int, stream: bool
):
    client = anthropic_client(sgw)

    with pytest.raises(anthropic.InternalServerError) as refused:
        if stream:
            with client.messages.stream(**_message(model)) as events:
                list(events)
        else:
            client.messages.create(**_message(model))

    assert refused.value.status_code == 502
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "upstream_auth_error",
            "message": f"provider '{provider}' refused the gateway's credentials (HTTP {status})",
        },
    }
    assert_clean(refused.value.response.text)


def test_batch_lines_mask_the_key_and_fail_refused_credentials_with_their_code(
    sgw: RunningGateway,
):
    client = sgw.client()
    lines = [
        chat_line("echo", model="echo-credentials"),
        chat_line("refused", model="reject-echo"),
        chat_line("auth", model="auth-echo"),
        chat_line("forbidden", model="forbidden"),
        chat_line("ok", model="fake-ok"),
    ]

    batch = start_batch(client, lines)
    sgw.drain()
    batch = client.batches.retrieve(batch.id)

    output = {r.custom_id: r for r in read_results(client, batch.output_file_id)}
    errors = {r.custom_id: r for r in read_results(client, batch.error_file_id)}
    assert set(output) == {"echo", "ok"} and set(errors) == {"refused", "auth", "forbidden"}
    for name, status in (("auth", 401), ("forbidden", 403)):
        line = errors[name]
        assert line.response is None and line.error is not None
        assert line.error.code == "upstream_auth_error"
        assert line.error.message.startswith(
            f"provider 'fake' refused the gateway's credentials (HTTP {status})"
        )
    assert sgw.fake.count(model="fake-401-echo") == 1  # not retried (max_attempts is 3)
    refused = errors["refused"].response
    assert refused is not None and refused.status_code == 400
    assert f"x-upstream-token: {MASKED}" in refused.body["error"]["message"]
    echo = output["echo"].response
    assert echo is not None
    _assert_echo_masked(echo.body["choices"][0]["message"]["content"])
    for file_id in (batch.output_file_id, batch.error_file_id):
        assert file_id is not None
        assert_clean(client.files.content(file_id).text)
    batch_rows = [r for r in _logs(sgw) if r["kind"] == "batch"]
    assert len(batch_rows) == 5
    assert_clean(orjson.dumps(batch_rows).decode())


def test_a_message_batch_line_refused_for_credentials_is_errored_with_that_type(
    sgw: RunningGateway,
):
    client = anthropic_client(sgw)
    params = {"max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "auth", "params": {"model": "claude-wrong-key", **params}},
            {"custom_id": "echo", "params": {"model": "echo-credentials", **params}},
        ]
    )

    sgw.drain()

    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    refused = results["auth"]
    assert refused.type == "errored"
    assert refused.error.error.type == "upstream_auth_error"
    assert refused.error.error.message.startswith(
        "provider 'claude' refused the gateway's credentials (HTTP 401)"
    )
    echoed = results["echo"]
    assert echoed.type == "succeeded" and echoed.message.content[0].type == "text"
    _assert_echo_masked(echoed.message.content[0].text)
