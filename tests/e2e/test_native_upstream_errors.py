"""Native batches (OpenAI and Anthropic batch API fakes): the provider's key is masked in the
results read back, a batch refused for the gateway's credentials fails its lines with
``upstream_auth_error`` (even in ``auto`` mode: the calls would be refused too), and a
throttled poll waits at most ``batch_poll_max_seconds`` whatever its ``Retry-After`` says."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from typing import Any

import pytest

from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeAnthropicAPI, FakeOpenAIBatchAPI
from tests.conftest import RunningGateway
from tests.helpers import chat_line, read_results, start_batch, unique

OPENAI_KEY = "sk-native-openai-secret"
ANTHROPIC_KEY = "sk-ant-native-secret-2"
WRONG_KEY = "sk-native-wrong-key-1"
POLL = {"batch_poll_seconds": 0.01, "batch_poll_max_seconds": 0.05}


@pytest.fixture(scope="module")
def openai_api() -> Iterator[tuple[FakeOpenAIBatchAPI, ServerHandle]]:
    fake = FakeOpenAIBatchAPI(api_key=OPENAI_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture(scope="module")
def anthropic_api() -> Iterator[tuple[FakeAnthropicAPI, ServerHandle]]:
    fake = FakeAnthropicAPI(api_key=ANTHROPIC_KEY)
    with serve_in_thread(fake) as handle:
        yield fake, handle


@pytest.fixture
def ngw(make_gateway, openai_api, anthropic_api):
    """``ngw(batch=…)``: a gateway with right and wrong keys for each native batch API."""
    fake, handle = openai_api
    claude, claude_handle = anthropic_api
    for api in (fake, claude):
        api.reset()
    fake.throttle_polls, fake.throttle_retry_after = 0, None

    def start(batch: str = "native", **overrides: Any) -> RunningGateway:
        # Retry-After believed up to ~11 days: only batch_poll_max_seconds caps a poll's wait
        openai = {"kind": "openai", "base_url": handle.url, "batch": batch, **POLL}
        openai["retry_after_max_seconds"] = 1e6
        anthropic = {"kind": "anthropic", "base_url": claude_handle.base_url, "batch": batch}
        gateway: RunningGateway = make_gateway(
            providers={
                "oai": {**openai, "api_key": OPENAI_KEY},
                "oai-wrong": {**openai, "api_key": WRONG_KEY},
                "claude": {**anthropic, **POLL, "api_key": ANTHROPIC_KEY},
                "claude-wrong": {**anthropic, **POLL, "api_key": WRONG_KEY},
            },
            models={
                "gpt-native": {"provider": "oai", "model": "fake-ok"},
                "gpt-wrong-key": {"provider": "oai-wrong", "model": "fake-ok"},
                "claude-native": {"provider": "claude", "model": "fake-ok"},
                "claude-wrong-key": {"provider": "claude-wrong", "model": "fake-ok"},
            },
            **overrides,
        )
        return gateway

    return start


@pytest.mark.parametrize(
    ("model", "key"), [("gpt-native", OPENAI_KEY), ("claude-native", ANTHROPIC_KEY)]
)
def test_the_providers_key_is_masked_in_native_results(ngw, model: str, key: str):
    gw = ngw()
    client = gw.client()
    batch = start_batch(client, [chat_line("echo", model=model, prompt=f"repeat {key} please")])

    gw.drain()

    batch = client.batches.retrieve(batch.id)
    text = client.files.content(batch.output_file_id).text
    assert key not in text
    [line] = read_results(client, batch.output_file_id)
    assert line.response is not None
    assert line.response.body["choices"][0]["message"]["content"] == "echo: repeat [masked] please"


@pytest.mark.parametrize("mode", ["native", "auto"])
@pytest.mark.parametrize(
    ("model", "provider"), [("gpt-wrong-key", "oai-wrong"), ("claude-wrong-key", "claude-wrong")]
)
def test_a_batch_refused_for_credentials_fails_its_lines(
    ngw, openai_api, anthropic_api, mode: str, model: str, provider: str
):
    gw = ngw(batch=mode)
    client = gw.client()
    tag = unique()
    batch = start_batch(client, [chat_line(f"l{i}", model=model, prompt=tag) for i in range(3)])

    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.failed == 3
    errors = read_results(client, batch.error_file_id)
    assert len(errors) == 3
    for line in errors:
        assert line.response is None and line.error is not None
        assert line.error.code == "upstream_auth_error"
        assert line.error.message == (
            f"provider '{provider}' refused the gateway's credentials (HTTP 401)"
        )
    assert WRONG_KEY not in client.files.content(batch.error_file_id).text
    # no fall back to calls, which would carry the same credentials
    fake, _ = openai_api
    claude, _ = anthropic_api
    assert fake.upstream.count() == 0
    assert claude.count(path="/v1/messages") == 0


def _in_an_hour() -> str:
    return email.utils.formatdate(time.time() + 3600, usegmt=True)


@pytest.mark.parametrize(
    "retry_after",
    ["soon", "1e400", "-5", "86400", None, "date"],
    ids=["text", "overflow", "negative", "a-day", "absent", "http-date"],
)
def test_a_throttled_poll_waits_at_most_the_poll_cap(ngw, openai_api, retry_after: str | None):
    # were a day (or an hour) waited in full, the drain would not return
    fake, _ = openai_api
    gw = ngw()
    client = gw.client()
    fake.throttle_polls = 3
    fake.throttle_retry_after = _in_an_hour() if retry_after == "date" else retry_after
    batch = start_batch(client, [chat_line(f"l{i}", model="gpt-native") for i in range(2)])

    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None and batch.request_counts.completed == 2
    assert fake.throttle_polls == 0  # every throttled poll was answered and waited out


@pytest.mark.parametrize("mode", ["auto", "native"])
def test_an_upstream_batch_whose_polls_keep_failing_is_given_up(ngw, openai_api, mode: str):
    fake, _ = openai_api
    gw = ngw(batch=mode, worker={"max_upstream_failures": 3})
    client = gw.client()
    fake.throttle_polls = 1000  # every poll is refused with a 429
    fake.throttle_retry_after = "0"
    batch = start_batch(client, [chat_line(f"g{i}", model="gpt-native") for i in range(2)])

    gw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    if mode == "auto":  # its lines ran as calls instead
        assert batch.request_counts.completed == 2
    else:
        assert batch.request_counts.failed == 2
        errors = read_results(client, batch.error_file_id)
        assert {e.error.code for e in errors if e.error} == {"batch_failed"}
        assert all("3 times in a row" in (e.error.message or "") for e in errors if e.error)
