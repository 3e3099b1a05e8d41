"""An upstream that cannot be reached is named, never shown by its URL; a ``Retry-After``
that is not a delay or a date is treated as absent, a date is honoured, and every wait taken
from it is capped — on the synchronous routes (both dialects) and for batch lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningGateway
from tests.helpers import chat_line, read_results, start_batch, unique

URL_SECRET = "url-pass-5150"
DOWN_URL = f"http://gw-user:{URL_SECRET}@127.0.0.1:1/v1"  # nothing listens on port 1
NO_DNS_HOST = "batchway-test.invalid"  # .invalid never resolves (RFC 6761)
UNREACHABLE = [
    pytest.param("down-model", "cannot connect to provider 'down'", 503, id="connection-refused"),
    pytest.param("nodns-model", "cannot resolve the host of provider 'nodns'", 503, id="dns"),
    pytest.param("fake-timeout", "provider 'fake' did not answer in time", 504, id="timeout"),
]
MALFORMED = ["soon", "huge", "inf", "nan", "negative", "past", "none"]


@pytest.fixture
def fgw(make_gateway) -> RunningGateway:
    gateway: RunningGateway = make_gateway(
        providers={
            "down": {"kind": "openai-compatible", "base_url": DOWN_URL, "api_key": "none"},
            "nodns": {
                "kind": "openai-compatible",
                "base_url": f"http://{NO_DNS_HOST}/v1",
                "api_key": "none",
                "timeout_seconds": 5.0,
            },
        },
        models={
            "down-model": {"provider": "down", "model": "m"},
            "nodns-model": {"provider": "nodns", "model": "m"},
            **{
                f"limited-{case}": {"provider": "fake", "model": f"fake-429-always-{case}"}
                for case in [*MALFORMED, "day", "date"]
            },
        },
    )
    return gateway


@pytest.fixture(autouse=True)
def no_credentials_in_the_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG, logger="batchway")
    yield
    assert URL_SECRET not in caplog.text


def _post(gw: RunningGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.create_key()}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{gw.base_url}{path}", json=body, headers=headers, timeout=30)


def _body(path: str, model: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": unique()}]}
    if stream:
        body["stream"] = True
    if path == "/v1/messages":
        body["max_tokens"] = 20
    return body


def _assert_no_url(gw: RunningGateway, text: str) -> None:
    fake_upstream = gw.gateway.config.providers["fake"].base_url
    assert fake_upstream is not None
    for shown in (URL_SECRET, "127.0.0.1:1", NO_DNS_HOST, fake_upstream, "http://"):
        assert shown not in text


# -- unreachable providers ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize(("model", "message", "status"), UNREACHABLE)
def test_an_unreachable_provider_is_named_not_shown(
    fgw: RunningGateway, path: str, model: str, message: str, status: int
):
    for stream in (False, True):
        response = _post(fgw, path, _body(path, model, stream))

        assert response.status_code == status
        _assert_no_url(fgw, response.text)
        error = response.json()["error"]
        assert error["message"] == message
        if path == "/v1/messages":
            assert response.json()["type"] == "error"


def test_batch_lines_name_the_unreachable_provider(fgw: RunningGateway):
    client = fgw.client()
    lines = [chat_line(name, model=name) for name in ("down-model", "nodns-model")]

    batch = start_batch(client, lines)
    fgw.drain()

    errors = {
        r.custom_id: r
        for r in read_results(client, client.batches.retrieve(batch.id).error_file_id)
    }
    for model, message, _ in (p.values for p in UNREACHABLE[:2]):
        line = errors[model]
        assert line.error is not None and line.error.code == "upstream_unavailable"
        assert line.error.message == f"{message} (after 3 attempts)"
        _assert_no_url(fgw, line.model_dump_json())


# -- Retry-After --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_retry_after_is_treated_as_absent(fgw: RunningGateway, path: str, case: str):
    response = _post(fgw, path, _body(path, f"limited-{case}"))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("case", ["day", "date"])
def test_a_long_retry_after_is_capped(fgw: RunningGateway, path: str, case: str):
    response = _post(fgw, path, _body(path, f"limited-{case}"))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"  # the provider's retry_after_max_seconds


def test_an_http_date_is_honoured_up_to_the_configured_cap(make_gateway):
    gw: RunningGateway = make_gateway(
        providers={"fake": {"retry_after_max_seconds": 7200}},
        models={
            "limited-date": {"provider": "fake", "model": "fake-429-always-date"},
            "limited-day": {"provider": "fake", "model": "fake-429-always-day"},
        },
    )
    path = "/v1/chat/completions"

    dated = _post(gw, path, _body(path, "limited-date"))
    day = _post(gw, path, _body(path, "limited-day"))

    # one hour ahead, read to the second against the gateway's clock
    assert 3500 <= int(dated.headers["retry-after"]) <= 3600
    assert day.headers["retry-after"] == "7200"


def test_batch_lines_wait_at_most_the_backoff_cap(make_gateway):
    # Retry-After believed up to ~11 days, so that only backoff_max_seconds (0.05) caps the
    # wait: were "day" or "date" waited in full, the drain would not return
    cases = ["soon", "huge", "nan", "negative", "day", "date"]
    fgw: RunningGateway = make_gateway(
        providers={"fake": {"retry_after_max_seconds": 1e6}},
        models={
            f"limited-{c}": {"provider": "fake", "model": f"fake-429-always-{c}"} for c in cases
        },
    )
    client = fgw.client()
    lines = [chat_line(case, model=f"limited-{case}") for case in cases]

    batch = start_batch(client, lines)
    fgw.drain()

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    errors = read_results(client, batch.error_file_id)
    assert sorted(r.custom_id for r in errors) == sorted(cases)
    assert all(r.response is not None and r.response.status_code == 429 for r in errors)
    for case in cases:  # retried up to max_attempts, every time
        assert fgw.fake.count(model=f"fake-429-always-{case}") == 3
