"""Unit tests of ``batchway.core.usage.usage_of``: token counts from any kind of answer."""

from __future__ import annotations

from typing import Any

import pytest

from batchway.core.models import Usage
from batchway.core.usage import usage_of


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {
                "object": "chat.completion",
                "usage": {
                    "prompt_tokens": 120,
                    "completion_tokens": 40,
                    "total_tokens": 160,
                    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 12, "audio_tokens": 0},
                },
            },
            Usage(input_tokens=120, cached_tokens=64, output_tokens=40, reasoning_tokens=12),
            id="chat-with-details",
        ),
        pytest.param(
            {"usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}},
            Usage(input_tokens=9, output_tokens=3),
            id="chat-without-details",
        ),
        pytest.param(
            {
                "usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": 3,
                    "prompt_tokens_details": None,
                    "completion_tokens_details": None,
                }
            },
            Usage(input_tokens=9, output_tokens=3),
            id="chat-null-details",
        ),
        pytest.param(
            {"object": "text_completion", "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
            Usage(input_tokens=5, output_tokens=7),
            id="completion",
        ),
        pytest.param(
            {"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}},
            Usage(input_tokens=8),
            id="embeddings",
        ),
        pytest.param(
            {
                "object": "response",
                "usage": {
                    "input_tokens": 50,
                    "input_tokens_details": {"cached_tokens": 10},
                    "output_tokens": 30,
                    "output_tokens_details": {"reasoning_tokens": 20},
                    "total_tokens": 80,
                },
            },
            Usage(input_tokens=50, cached_tokens=10, output_tokens=30, reasoning_tokens=20),
            id="responses",
        ),
        pytest.param(
            {"object": "response", "usage": {"input_tokens": 4, "output_tokens": 2}},
            Usage(input_tokens=4, output_tokens=2),
            id="responses-without-details",
        ),
        pytest.param(
            {
                "type": "message",
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": 100,
                    "cache_read_input_tokens": 200,
                    "output_tokens": 5,
                },
            },
            # Anthropic's input_tokens leave the cache out: every input token is counted
            Usage(input_tokens=310, cached_tokens=200, output_tokens=5),
            id="anthropic-with-cache",
        ),
        pytest.param(
            {
                "type": "message",
                "usage": {
                    "input_tokens": 10,
                    "cache_creation_input_tokens": None,
                    "cache_read_input_tokens": None,
                    "output_tokens": 5,
                },
            },
            Usage(input_tokens=10, output_tokens=5),
            id="anthropic-null-cache",
        ),
    ],
)
def test_usage_of(body: dict[str, Any], expected: Usage) -> None:
    usage = usage_of(body)

    assert usage == expected
    assert usage.total_tokens == expected.input_tokens + expected.output_tokens


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-usage"),
        pytest.param({"usage": None}, id="null-usage"),
        pytest.param({"usage": []}, id="usage-list"),
        pytest.param({"usage": "lots"}, id="usage-string"),
        pytest.param({"usage": 42}, id="usage-number"),
        pytest.param({"usage": {}}, id="usage-empty"),
        pytest.param({"usage": {"prompt_tokens": "10", "completion_tokens": None}}, id="strings"),
        pytest.param({"usage": {"prompt_tokens": 1.5, "completion_tokens": 2.0}}, id="floats"),
        pytest.param({"usage": {"input_tokens": "x", "output_tokens": [1]}}, id="responses-junk"),
        pytest.param(None, id="body-null"),
        pytest.param([{"usage": {"prompt_tokens": 3}}], id="body-list"),
        pytest.param("usage", id="body-string"),
        pytest.param(7, id="body-number"),
    ],
)
def test_missing_or_garbage_usage_is_zero(body: Any) -> None:
    assert usage_of(body) == Usage()


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param({"prompt_tokens": 4, "prompt_tokens_details": "n/a"}, id="chat-string"),
        pytest.param({"prompt_tokens": 4, "completion_tokens_details": [0]}, id="chat-list"),
        pytest.param({"input_tokens": 4, "input_tokens_details": 3}, id="responses-number"),
        pytest.param({"input_tokens": 4, "output_tokens_details": True}, id="responses-bool"),
    ],
)
def test_garbage_details_are_ignored(usage: dict[str, Any]) -> None:
    assert usage_of({"usage": usage}) == Usage(input_tokens=4)
