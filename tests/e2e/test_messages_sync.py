"""``POST /v1/messages`` through the official ``anthropic`` SDK, streamed and not, on an
Anthropic provider (as is), an OpenAI-compatible one (translated) and the simulated one."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.conftest import RunningGateway
from tests.e2e.test_anthropic_batches import agw, anthropic_client, fake_anthropic  # noqa: F401
from tests.helpers import unique

MODELS = ["claude-fake", "fake-ok", "gpt-4o"]
IDS = ["anthropic", "openai-compatible", "simulated"]


def _expected(model: str, prompt: str, text: str) -> None:
    if model == "gpt-4o":
        assert text.startswith("[simulated]") and prompt in text
    else:
        assert text == f"echo: {prompt}"


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_create(agw: RunningGateway, model: str):  # noqa: F811
    client = anthropic_client(agw)
    prompt = f"hello {unique()}"
    message = client.messages.create(
        model=model,
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": prompt}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    _expected(model, prompt, message.content[0].text)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_stream(agw: RunningGateway, model: str):  # noqa: F811
    client = anthropic_client(agw)
    prompt = f"stream me {unique()}"
    with client.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    _expected(model, prompt, text)
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_the_upstream_gets_its_own_key_and_model(agw: RunningGateway, fake_anthropic):  # noqa: F811
    fake, _ = fake_anthropic
    key = agw.create_key()
    anthropic_client(agw, key).messages.create(
        model="claude-fake", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    [seen] = [r for r in fake.requests if r.path == "/v1/messages"]
    assert seen.headers["x-api-key"] == "sk-ant-upstream"
    assert key not in str(seen.headers)
    assert seen.json["model"] == "fake-ok"


def test_errors(agw: RunningGateway):  # noqa: F811
    client = anthropic_client(agw)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="claude-refuses", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="fake-ok",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"top_k": 5},
        )
    response = httpx.post(
        f"{agw.base_url}/v1/messages",
        json={"model": "fake-ok", "messages": []},
        headers={"x-api-key": client.api_key},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=agw.base_url, api_key="nope", max_retries=0).messages.create(
            model="fake-ok", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


@pytest.fixture
def fallback_gw(make_gateway) -> RunningGateway:
    # the first route always fails (5xx): the second must answer, as on the OpenAI routes
    gateway: RunningGateway = make_gateway(
        models={
            "fallback": [
                {"provider": "fake", "model": "fake-500", "weight": 1_000_000},
                {"provider": "fake", "model": "fake-ok", "weight": 0.000001},
            ],
            "refused": [
                {"provider": "fake", "model": "fake-400", "weight": 1_000_000},
                {"provider": "fake", "model": "fake-ok", "weight": 0.000001},
            ],
        }
    )
    return gateway


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_retryable_failure_moves_to_the_next_route(fallback_gw: RunningGateway, stream: bool):
    client = anthropic_client(fallback_gw)
    prompt = f"fall back {unique()}"
    request = {
        "model": "fallback",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        with client.messages.stream(**request) as events:  # type: ignore[arg-type]
            text = "".join(events.text_stream)
    else:
        message = client.messages.create(**request)  # type: ignore[arg-type]
        assert message.content[0].type == "text"
        text = message.content[0].text
    assert text == f"echo: {prompt}"
    assert fallback_gw.fake.count(model="fake-500") == 1
    assert fallback_gw.fake.count(model="fake-ok") == 1


def test_a_final_refusal_is_not_retried_on_another_route(fallback_gw: RunningGateway):
    client = anthropic_client(fallback_gw)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="refused", max_tokens=50, messages=[{"role": "user", "content": "no"}]
        )
    assert fallback_gw.fake.count(model="fake-400") == 1
    assert fallback_gw.fake.count(model="fake-ok") == 0
