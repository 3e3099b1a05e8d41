"""Unit tests of ``batchway.providers.simulated``: the offline, clearly labelled provider."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import orjson
import pytest

from batchway.config import ProviderConfig
from batchway.core.ports import Provider, UpstreamResponse
from batchway.core.usage import usage_of
from batchway.errors import UpstreamRejected
from batchway.providers.simulated import FINGERPRINT, PROVIDER_TYPE, SimulatedProvider

PREFIX = "[simulated]"


@pytest.fixture
def provider() -> SimulatedProvider:
    return SimulatedProvider("sim", ProviderConfig(kind="simulated", latency_ms=0))


async def call(provider: SimulatedProvider, endpoint: str, request: dict[str, Any]) -> Any:
    answer = await provider.send(endpoint, json.dumps(request).encode())
    assert isinstance(answer, UpstreamResponse)
    assert answer.status == 200
    assert answer.request_id is not None and answer.request_id.startswith("req_sim_")
    return json.loads(answer.body)


def chat(prompt: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}], **extra}


def chat_text(answer: dict[str, Any]) -> str:
    content: str = answer["choices"][0]["message"]["content"]
    return content


def test_provider_metadata(provider: SimulatedProvider) -> None:
    assert PROVIDER_TYPE == "simulated"
    assert provider.name == "sim"
    assert provider.max_concurrency == ProviderConfig(kind="simulated").max_concurrency
    seam: Provider = provider  # the Protocol is static only; mypy checks this assignment
    assert callable(seam.send) and callable(seam.close)


async def test_chat_answer_is_labelled_and_well_formed(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/chat/completions", chat("Describe a teapot"))

    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "gpt-4o"
    assert answer["system_fingerprint"] == FINGERPRINT
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    assert chat_text(answer).startswith(PREFIX)
    assert "Describe a teapot" in chat_text(answer)
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage_of(answer).input_tokens == usage["prompt_tokens"] > 0


async def test_chat_is_deterministic_per_prompt(provider: SimulatedProvider) -> None:
    first = await call(provider, "/v1/chat/completions", chat("same prompt"))
    again = await call(provider, "/v1/chat/completions", chat("same prompt"))
    other = await call(provider, "/v1/chat/completions", chat("another prompt"))

    assert chat_text(first) == chat_text(again)
    assert chat_text(first) != chat_text(other)
    assert first["id"] != again["id"]  # ids stay unique


async def test_chat_answers_the_last_user_message(provider: SimulatedProvider) -> None:
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        ],
    }

    answer = await call(provider, "/v1/chat/completions", request)

    assert "second question" in chat_text(answer)
    assert "first question" not in chat_text(answer)
    assert chat_text(answer) == chat_text(
        await call(provider, "/v1/chat/completions", chat("second question"))
    )


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("limit", [1, 3, 5])
async def test_chat_honours_the_token_limit(
    provider: SimulatedProvider, field: str, limit: int
) -> None:
    answer = await call(provider, "/v1/chat/completions", chat("a long prompt", **{field: limit}))

    text = chat_text(answer)
    assert len(text.split()) == limit
    assert text.startswith(PREFIX)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == limit


async def test_a_whole_number_written_as_a_float_is_a_count(provider: SimulatedProvider) -> None:
    # JSON has one number type: 3e0 is the integer 3 (json gives Python 3.0)
    answer = await call(provider, "/v1/chat/completions", chat("a long prompt", max_tokens=3e0))

    assert len(chat_text(answer).split()) == 3
    assert answer["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("limit", [1.5, 0, -1, True, "3"])
async def test_a_limit_that_is_not_a_positive_integer_is_a_400(
    provider: SimulatedProvider, limit: Any
) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await provider.send("/v1/chat/completions", orjson.dumps(chat("hi", max_tokens=limit)))

    assert caught.value.status == 400
    assert "max_tokens" in caught.value.message


async def test_chat_with_a_generous_limit_stops_normally(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/chat/completions", chat("short", max_tokens=1000))

    assert answer["choices"][0]["finish_reason"] == "stop"


async def test_chat_without_messages_still_answers(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/chat/completions", {"model": "m"})

    assert chat_text(answer).startswith(PREFIX)


@pytest.mark.parametrize(
    ("given", "count"),
    [
        pytest.param("one text", 1, id="string"),
        pytest.param(["a", "b", "c"], 3, id="list-of-strings"),
    ],
)
@pytest.mark.parametrize("dimensions", [None, 3, 64])
async def test_embeddings_are_unit_vectors_of_the_asked_size(
    provider: SimulatedProvider, given: Any, count: int, dimensions: int | None
) -> None:
    request: dict[str, Any] = {"model": "text-embedding-3-small", "input": given}
    if dimensions is not None:
        request["dimensions"] = dimensions

    answer = await call(provider, "/v1/embeddings", request)

    size = dimensions or 256
    assert answer["object"] == "list"
    assert [d["index"] for d in answer["data"]] == list(range(count))
    for item in answer["data"]:
        assert item["object"] == "embedding"
        assert len(item["embedding"]) == size
        assert math.isclose(math.fsum(v * v for v in item["embedding"]), 1.0, rel_tol=1e-9)
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] >= count


async def test_embeddings_base64_decode_to_the_float_vectors(provider: SimulatedProvider) -> None:
    request = {"model": "e", "input": ["alpha", "beta"], "dimensions": 32}

    floats = await call(provider, "/v1/embeddings", request)
    encoded = await call(provider, "/v1/embeddings", {**request, "encoding_format": "base64"})

    for plain, packed in zip(floats["data"], encoded["data"], strict=True):
        assert isinstance(packed["embedding"], str)
        decoded = struct.unpack("<32f", base64.b64decode(packed["embedding"]))
        assert decoded == pytest.approx(plain["embedding"], abs=1e-6)
        assert math.isclose(math.fsum(v * v for v in decoded), 1.0, rel_tol=1e-5)


async def test_embeddings_are_deterministic_and_distinct(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/embeddings", {"model": "e", "input": ["x", "y", "x"]})

    first, second, third = (d["embedding"] for d in answer["data"])
    assert first == third
    assert first != second


async def test_completion_shape(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/completions", {"model": "m", "prompt": "Once upon"})

    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    assert answer["choices"][0]["text"].startswith(PREFIX)
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert usage_of(answer).output_tokens == answer["usage"]["completion_tokens"] > 0


async def test_completion_prompt_list_and_limit(provider: SimulatedProvider) -> None:
    request = {"model": "m", "prompt": ["Once", "upon"], "max_tokens": 2}

    answer = await call(provider, "/v1/completions", request)

    assert answer["choices"][0]["text"].split() == [PREFIX, "A"]
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("Tell me a story", id="string-input"),
        pytest.param(
            [{"role": "user", "content": [{"type": "input_text", "text": "Tell me a story"}]}],
            id="message-input",
        ),
    ],
)
async def test_response_shape(provider: SimulatedProvider, given: Any) -> None:
    answer = await call(provider, "/v1/responses", {"model": "m", "input": given})

    assert answer["object"] == "response"
    assert answer["id"].startswith("resp_")
    assert answer["status"] == "completed"
    message = answer["output"][0]
    assert message["type"] == "message" and message["role"] == "assistant"
    text = message["content"][0]
    assert text["type"] == "output_text"
    assert text["text"].startswith(PREFIX)
    assert "Tell me a story" in text["text"]
    usage = usage_of(answer)
    assert usage.input_tokens == answer["usage"]["input_tokens"] > 0
    assert usage.output_tokens == answer["usage"]["output_tokens"] > 0


async def test_response_honours_max_output_tokens(provider: SimulatedProvider) -> None:
    answer = await call(provider, "/v1/responses", {"input": "hello", "max_output_tokens": 2})

    assert answer["status"] == "incomplete"
    assert len(answer["output"][0]["content"][0]["text"].split()) == 2


@pytest.mark.parametrize(
    "endpoint",
    ["/v1/models", "/chat/completions", "/v1/images/generations", ""],
)
async def test_unknown_endpoint_is_rejected(provider: SimulatedProvider, endpoint: str) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await provider.send(endpoint, b'{"model": "m"}')

    assert caught.value.status == 404
    assert not caught.value.retryable
    assert endpoint in caught.value.message


async def test_close_is_harmless(provider: SimulatedProvider) -> None:
    await provider.close()
    answer = await call(provider, "/v1/chat/completions", chat("still here"))
    assert chat_text(answer).startswith(PREFIX)


async def test_messages_are_answered_as_a_message(provider: SimulatedProvider) -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 50,
        "system": "be brief",
        "messages": [{"role": "user", "content": "describe a lamp"}],
    }
    answer = await provider.send("/v1/messages", orjson.dumps(body))
    message = orjson.loads(answer.body)
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["text"].startswith("[simulated]")
    assert "describe a lamp" in message["content"][0]["text"]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] > 0
