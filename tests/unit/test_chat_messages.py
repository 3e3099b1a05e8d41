"""Unit tests of the Chat Completions <-> Messages translation (spec §6.5, §6.6).

Tables follow the spec's mapping tables row by row. Translated responses and stream events
are validated against the official SDKs' models and fed to their stream accumulators.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event  # the SDK's own accumulator
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from batchway.dialects.chat_messages.replies import (
    FINISH_REASON_FOR_STOP_REASON,
    STOP_REASON_FOR_FINISH_REASON,
    anthropic_error_from_openai,
    anthropic_error_type,
    chat_to_messages_response,
    messages_to_chat_response,
    openai_error_from_anthropic,
    status_for_anthropic_error_type,
)
from batchway.dialects.chat_messages.requests import (
    IGNORED_CHAT_FIELDS,
    IGNORED_MESSAGES_FIELDS,
    RAW_ARGUMENTS_KEY,
    chat_to_messages_request,
    messages_to_chat_request,
)
from batchway.dialects.chat_messages.streams import (
    ChatChunksToMessageEvents,
    MessageEventsToChatChunks,
)
from batchway.errors import UntranslatableRequest

ABSENT = "<absent>"
USER_HI = {"role": "user", "content": "hi"}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
}
WEATHER_USE = {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
PNG = "iVBORw0KGgo="
EVENTS = TypeAdapter(RawMessageStreamEvent)


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "messages": [USER_HI], **fields}


def messages_body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "max_tokens": 100, "messages": [USER_HI], **fields}


def pick(body: dict[str, Any], keys: Any) -> dict[str, Any]:
    return {key: body.get(key, ABSENT) for key in keys}


# -- §6.5 Chat -> Messages: top-level fields ---------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"max_completion_tokens": 50}, {"max_tokens": 50}, id="max_completion_tokens"),
        pytest.param({"max_tokens": 60}, {"max_tokens": 60}, id="max_tokens"),
        pytest.param(
            {"max_tokens": 60, "max_completion_tokens": 50}, {"max_tokens": 50}, id="mct-wins"
        ),
        pytest.param({}, {"max_tokens": 4096}, id="max-tokens-default"),
        pytest.param({"max_tokens": None}, {"max_tokens": 4096}, id="null-is-absent"),
        pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-string"),
        pytest.param({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}, id="stop-list"),
        pytest.param({"stop": ["x", " ", "\n"]}, {"stop_sequences": ["x"]}, id="stop-whitespace"),
        pytest.param({"stop": ["\n"]}, {"stop_sequences": ABSENT}, id="stop-only-whitespace"),
        pytest.param({"temperature": 1.7}, {"temperature": 1.0}, id="temperature-clamped"),
        pytest.param({"temperature": 0.3}, {"temperature": 0.3}, id="temperature-kept"),
        pytest.param({"top_p": 0.9}, {"top_p": 0.9}, id="top_p"),
        pytest.param({"n": 1}, {"n": ABSENT}, id="n-1"),
        pytest.param({"user": "u-1"}, {"metadata": {"user_id": "u-1"}}, id="user"),
        pytest.param(
            {"safety_identifier": "s-1"}, {"metadata": {"user_id": "s-1"}}, id="safety_identifier"
        ),
        pytest.param(
            {"user": "u-1", "safety_identifier": "s-1"},
            {"metadata": {"user_id": "u-1"}},
            id="user-wins",
        ),
        pytest.param({"stream": True}, {"stream": True}, id="stream"),
        pytest.param(
            {"stream": True, "stream_options": {"include_usage": True}},
            {"stream": True, "stream_options": ABSENT},
            id="stream_options-dropped",
        ),
        pytest.param({"modalities": ["text"]}, {"modalities": ABSENT}, id="modalities-text"),
        pytest.param({"reasoning_effort": "none"}, {"thinking": ABSENT}, id="effort-none"),
        pytest.param({"verbosity": "medium"}, {"verbosity": ABSENT}, id="verbosity-medium"),
    ],
)
def test_chat_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    out = chat_to_messages_request(chat_body(**fields))
    assert pick(out, expected) == expected
    assert out["model"] == "claude-x"
    assert out["messages"] == [USER_HI]


def test_chat_request_default_max_tokens_is_configurable() -> None:
    assert chat_to_messages_request(chat_body(), default_max_tokens=77)["max_tokens"] == 77


@pytest.mark.parametrize("field", sorted(IGNORED_CHAT_FIELDS))
def test_chat_request_ignored_fields_are_dropped(field: str) -> None:
    out = chat_to_messages_request(chat_body(**{field: {"type": "json_object"}}))
    # nothing leaks through: OpenAI metadata never becomes Anthropic metadata either
    assert out == {"model": "claude-x", "max_tokens": 4096, "messages": [USER_HI]}


def test_ignored_lists_are_what_the_spec_names() -> None:
    spec = {"response_format", "logprobs", "seed", "presence_penalty", "frequency_penalty"}
    assert spec | {"logit_bias"} <= IGNORED_CHAT_FIELDS
    assert {"n", "audio", "modalities", "reasoning_effort", "functions"}.isdisjoint(
        IGNORED_CHAT_FIELDS
    )
    assert IGNORED_MESSAGES_FIELDS == {"cache_control", "service_tier"}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"tools": [WEATHER_TOOL]},
            {
                "tools": [
                    {
                        "name": "weather",
                        "description": "Weather for a city",
                        "input_schema": WEATHER_TOOL["function"]["parameters"],
                    }
                ],
                "tool_choice": ABSENT,
            },
            id="tools",
        ),
        pytest.param(
            {"tools": [{"type": "function", "function": {"name": "ping", "strict": True}}]},
            {"tools": [{"name": "ping", "input_schema": {"type": "object"}, "strict": True}]},
            id="tool-default-schema-and-strict",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
            {"tool_choice": {"type": "auto"}},
            id="tool_choice-auto",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "tool_choice": "required"},
            {"tool_choice": {"type": "any"}},
            id="tool_choice-required",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "tool_choice": "none"},
            {"tool_choice": {"type": "none"}},
            id="tool_choice-none",
        ),
        pytest.param(
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
            },
            {"tool_choice": {"type": "tool", "name": "weather"}},
            id="tool_choice-named",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
            id="parallel-false-no-choice",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
            {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
            id="parallel-false-required",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "tool_choice": "none", "parallel_tool_calls": False},
            {"tool_choice": {"type": "none"}},
            id="parallel-false-none",
        ),
        pytest.param(
            {"tools": [WEATHER_TOOL], "parallel_tool_calls": True},
            {"tool_choice": ABSENT},
            id="parallel-true",
        ),
        pytest.param(
            {"tool_choice": "none", "parallel_tool_calls": False},
            {"tools": ABSENT, "tool_choice": ABSENT},
            id="no-tools-choice-dropped",
        ),
    ],
)
def test_chat_request_tools(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    assert pick(chat_to_messages_request(chat_body(**fields)), expected) == expected


# -- §6.5 Chat -> Messages: messages and content -----------------------------------------


@pytest.mark.parametrize(
    ("messages", "system", "turns"),
    [
        pytest.param(
            [{"role": "system", "content": "Be brief."}, USER_HI],
            "Be brief.",
            [USER_HI],
            id="system-string",
        ),
        pytest.param(
            [
                {"role": "developer", "content": [{"type": "text", "text": "A"}]},
                USER_HI,
                {"role": "assistant", "content": "hello"},
                {"role": "system", "content": "B"},
                {"role": "user", "content": "more"},
            ],
            "A\nB",
            [
                USER_HI,
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "more"},
            ],
            id="system-developer-anywhere",
        ),
        pytest.param([USER_HI], ABSENT, [USER_HI], id="no-system"),
        pytest.param(
            [USER_HI, {"role": "user", "content": [{"type": "text", "text": "again"}]}],
            ABSENT,
            [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}],
                }
            ],
            id="consecutive-users-merged",
        ),
        pytest.param(
            [
                USER_HI,
                {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "rain"}],
                },
                {"role": "user", "content": "thanks"},
            ],
            ABSENT,
            [
                USER_HI,
                {"role": "assistant", "content": [WEATHER_USE]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_2",
                            "content": [{"type": "text", "text": "rain"}],
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
            id="tool-results-one-turn",
        ),
        pytest.param(
            [
                {"role": "assistant", "content": "Let me check.", "tool_calls": [WEATHER_CALL]},
                {"role": "user", "content": "also"},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            ABSENT,
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "Let me check."}, WEATHER_USE],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {"type": "text", "text": "also"},
                    ],
                },
            ],
            id="tool-results-first-in-turn",
        ),
        pytest.param(
            [
                {"role": "assistant", "content": "a", "name": "bot"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            ],
            ABSENT,
            [
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "no"}],
                }
            ],
            id="consecutive-assistants-merged",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    ],
                }
            ],
            ABSENT,
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://x.test/a.jpg"},
                        },
                    ],
                }
            ],
            id="images",
        ),
    ],
)
def test_chat_request_messages(messages: list[Any], system: Any, turns: list[Any]) -> None:
    out = chat_to_messages_request(chat_body(messages=messages))
    assert out.get("system", ABSENT) == system
    assert out["messages"] == turns


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        pytest.param(chat_body(n=2), "n", "n=2 cannot be sent to an Anthropic model", id="n"),
        pytest.param(chat_body(audio={"voice": "x"}), "audio", "audio", id="audio"),
        pytest.param(
            chat_body(modalities=["text", "audio"]), "modalities", "text output", id="modalities"
        ),
        pytest.param(
            chat_body(functions=[{"name": "f"}]), "functions", "functions", id="functions"
        ),
        pytest.param(chat_body(function_call="auto"), "function_call", "no equivalent", id="fcall"),
        pytest.param(
            chat_body(reasoning_effort="high"), "reasoning_effort", "high", id="reasoning_effort"
        ),
        pytest.param(chat_body(verbosity="low"), "verbosity", "low", id="verbosity"),
        pytest.param(
            chat_body(web_search_options={}), "web_search_options", "web_search", id="web_search"
        ),
        pytest.param(chat_body(brand_new_field=1), "brand_new_field", "brand_new", id="unknown"),
        pytest.param(
            chat_body(messages=[{"role": "function", "name": "f", "content": "x"}]),
            "messages[0].role",
            "'function'",
            id="role-function",
        ),
        pytest.param(
            chat_body(messages=[{"role": "critic", "content": "x"}]),
            "messages[0].role",
            "'critic'",
            id="role-unknown",
        ),
        pytest.param(
            chat_body(
                messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
            ),
            "messages[0].content[0].type",
            "input_audio",
            id="input_audio-part",
        ),
        pytest.param(
            chat_body(messages=[{"role": "user", "content": [{"type": "file", "file": {}}]}]),
            "messages[0].content[0].type",
            "file",
            id="file-part",
        ),
        pytest.param(
            chat_body(
                messages=[
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x"}}],
                    }
                ]
            ),
            "messages[0].content[0].type",
            "image_url",
            id="system-image",
        ),
        pytest.param(
            chat_body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}],
                    }
                ]
            ),
            "messages[0].content[0]",
            "http(s)",
            id="image-ftp",
        ),
        pytest.param(
            chat_body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png,abc"}}
                        ],
                    }
                ]
            ),
            "messages[0].content[0]",
            "base64",
            id="image-data-not-base64",
        ),
        pytest.param(
            chat_body(
                messages=[
                    USER_HI,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {**WEATHER_CALL, "function": {"name": "w", "arguments": "{"}}
                        ],
                    },
                ]
            ),
            "messages[1].tool_calls[0].arguments",
            "JSON object",
            id="tool-arguments-invalid",
        ),
        pytest.param(
            chat_body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {**WEATHER_CALL, "function": {"name": "w", "arguments": "[1]"}}
                        ],
                    }
                ]
            ),
            "messages[0].tool_calls[0].arguments",
            "JSON object",
            id="tool-arguments-not-object",
        ),
        pytest.param(
            chat_body(messages=[{"role": "assistant", "content": "x", "audio": {"id": "a"}}]),
            "messages[0].audio",
            "audio",
            id="assistant-audio",
        ),
        pytest.param(
            chat_body(tools=[{"type": "custom", "custom": {"name": "c"}}]),
            "tools[0].type",
            "custom",
            id="custom-tool",
        ),
        pytest.param(
            chat_body(tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools"}),
            "tool_choice",
            "allowed_tools",
            id="tool_choice-allowed_tools",
        ),
        pytest.param(
            chat_body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            None,
            "malformed",
            id="malformed",
        ),
    ],
)
def test_chat_request_untranslatable(body: dict[str, Any], param: str | None, words: str) -> None:
    with pytest.raises(UntranslatableRequest) as caught:
        chat_to_messages_request(body)
    assert caught.value.param == param
    assert words in caught.value.message
    assert caught.value.status_code == 400 and not caught.value.retryable


# -- §6.5 Reverse: Messages -> Chat --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "options", "expected"),
    [
        pytest.param(
            {"system": "Be brief."},
            {},
            {"messages": [{"role": "system", "content": "Be brief."}, USER_HI]},
            id="system-string",
        ),
        pytest.param(
            {
                "system": [
                    {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "B"},
                ]
            },
            {},
            {"messages": [{"role": "system", "content": "A\nB"}, USER_HI]},
            id="system-blocks",
        ),
        pytest.param({}, {}, {"max_tokens": 100, "max_completion_tokens": ABSENT}, id="max_tokens"),
        pytest.param(
            {},
            {"max_tokens_key": "max_completion_tokens"},
            {"max_completion_tokens": 100, "max_tokens": ABSENT},
            id="max_completion_tokens",
        ),
        pytest.param({"stop_sequences": ["a", "b"]}, {}, {"stop": ["a", "b"]}, id="stop"),
        pytest.param({"stop_sequences": []}, {}, {"stop": ABSENT}, id="stop-empty"),
        pytest.param(
            {"stop_sequences": list("abcde")},
            {"allow_extensions": True},
            {"stop": list("abcde")},
            id="stop-5-with-extensions",
        ),
        pytest.param(
            {"temperature": 0.5, "top_p": 0.8},
            {},
            {"temperature": 0.5, "top_p": 0.8},
            id="sampling",
        ),
        pytest.param({"top_k": 40}, {"allow_extensions": True}, {"top_k": 40}, id="top_k-ext"),
        pytest.param(
            {"thinking": {"type": "disabled"}}, {}, {"thinking": ABSENT}, id="thinking-off"
        ),
        pytest.param({"metadata": {"user_id": "u-1"}}, {}, {"user": "u-1"}, id="metadata.user_id"),
        pytest.param({"metadata": {}}, {}, {"user": ABSENT}, id="metadata-empty"),
        pytest.param(
            {"stream": True},
            {},
            {"stream": True, "stream_options": {"include_usage": True}},
            id="stream",
        ),
        pytest.param(
            {"stream": False}, {}, {"stream": False, "stream_options": ABSENT}, id="stream-false"
        ),
        pytest.param(
            {"service_tier": "auto", "cache_control": {"type": "ephemeral"}},
            {},
            {"service_tier": ABSENT, "cache_control": ABSENT},
            id="ignored",
        ),
        pytest.param(
            {
                "tools": [
                    {
                        "name": "weather",
                        "description": "Weather for a city",
                        "input_schema": WEATHER_TOOL["function"]["parameters"],
                        "cache_control": {"type": "ephemeral"},
                    },
                    {
                        "type": "custom",
                        "name": "ping",
                        "input_schema": {"type": "object"},
                        "strict": True,
                    },
                ]
            },
            {},
            {
                "tools": [
                    WEATHER_TOOL,
                    {
                        "type": "function",
                        "function": {
                            "name": "ping",
                            "parameters": {"type": "object"},
                            "strict": True,
                        },
                    },
                ]
            },
            id="tools",
        ),
        pytest.param(
            {"tool_choice": {"type": "auto"}}, {}, {"tool_choice": "auto"}, id="tool_choice-auto"
        ),
        pytest.param(
            {"tool_choice": {"type": "any"}}, {}, {"tool_choice": "required"}, id="tool_choice-any"
        ),
        pytest.param(
            {"tool_choice": {"type": "none"}}, {}, {"tool_choice": "none"}, id="tool_choice-none"
        ),
        pytest.param(
            {"tool_choice": {"type": "tool", "name": "weather"}},
            {},
            {"tool_choice": {"type": "function", "function": {"name": "weather"}}},
            id="tool_choice-tool",
        ),
        pytest.param(
            {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
            {},
            {"tool_choice": "required", "parallel_tool_calls": False},
            id="disable_parallel_tool_use",
        ),
    ],
)
def test_messages_request_fields(
    fields: dict[str, Any], options: dict[str, Any], expected: dict[str, Any]
) -> None:
    out = messages_to_chat_request(messages_body(**fields), **options)
    assert pick(out, expected) == expected
    assert out["model"] == "gpt-x"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param(
            [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}],
                },
            ],
            [USER_HI, {"role": "assistant", "content": "hello"}],
            id="text-blocks",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?", "cache_control": {"type": "ephemeral"}},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    ],
                }
            ],
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                    ],
                }
            ],
            id="images",
        ),
        pytest.param(
            [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "redacted_thinking", "data": "x"},
                        WEATHER_USE,
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and?"},
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_2",
                            "content": [
                                {"type": "text", "text": "a"},
                                {"type": "text", "text": "b"},
                            ],
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_3",
                            "content": "boom",
                            "is_error": True,
                        },
                    ],
                },
            ],
            [
                USER_HI,
                {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "a\nb"},
                {"role": "tool", "tool_call_id": "call_3", "content": "Error: boom"},
                {"role": "user", "content": "and?"},
            ],
            id="tool-use-and-results",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
            [{"role": "tool", "tool_call_id": "t", "content": ""}],
            id="tool-result-only",
        ),
        pytest.param(
            [
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "t",
                            "name": "f",
                            "input": {RAW_ARGUMENTS_KEY: "{oops"},
                        }
                    ],
                }
            ],
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{oops"},
                        }
                    ],
                }
            ],
            id="raw-arguments-restored",
        ),
        pytest.param(
            [
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "x", "signature": "s"}],
                }
            ],
            [{"role": "assistant", "content": ""}],
            id="only-thinking",
        ),
    ],
)
def test_messages_request_messages(messages: list[Any], expected: list[Any]) -> None:
    assert messages_to_chat_request(messages_body(messages=messages))["messages"] == expected


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        pytest.param({"top_k": 5}, "top_k", "no top_k", id="top_k"),
        pytest.param({"stop_sequences": list("abcde")}, "stop_sequences", "at most 4", id="stop-5"),
        pytest.param(
            {"thinking": {"type": "enabled", "budget_tokens": 1024}},
            "thinking",
            "'enabled'",
            id="thinking-enabled",
        ),
        pytest.param({"thinking": {"type": "adaptive"}}, "thinking", "'adaptive'", id="adaptive"),
        pytest.param(
            {"metadata": {"user_id": "u", "tenant": "t"}},
            "metadata.tenant",
            "metadata.tenant",
            id="metadata-other",
        ),
        pytest.param({"container": "c"}, "container", "no equivalent", id="container"),
        pytest.param({"output_config": {"effort": "low"}}, "output_config", "output", id="output"),
        pytest.param(
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type",
            "web_search_20250305",
            id="server-tool",
        ),
        pytest.param(
            {"tools": [{"name": "f", "input_schema": {}, "input_examples": [{}]}]},
            "tools[0].input_examples",
            "input_examples",
            id="tool-field",
        ),
        pytest.param(
            {"tool_choice": {"type": "auto_plus"}},
            "tool_choice.type",
            "auto_plus",
            id="tool_choice",
        ),
        pytest.param(
            {"messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
            "'system'",
            id="role",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
            "document",
            id="document",
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages[0].content[0].source.type",
            "file image sources",
            id="image-file-source",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {}}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0].type",
            "image blocks",
            id="tool-result-image",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "server_tool_use", "id": "s", "name": "web_search"}],
                    }
                ]
            },
            "messages[0].content[0].type",
            "server_tool_use",
            id="server-tool-use-block",
        ),
        pytest.param(
            {"system": [{"type": "image", "source": {}}]}, "system[0].type", "image", id="system"
        ),
        pytest.param({"thinking": "yes"}, None, "malformed", id="malformed"),
    ],
)
def test_messages_request_untranslatable(
    fields: dict[str, Any], param: str | None, words: str
) -> None:
    with pytest.raises(UntranslatableRequest) as caught:
        messages_to_chat_request(messages_body(**fields))
    assert caught.value.param == param
    assert words in caught.value.message


def test_tool_calls_round_trip_chat_messages_chat() -> None:
    messages = [
        {"role": "system", "content": "Use tools."},
        USER_HI,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    body = chat_body(messages=messages, tools=[WEATHER_TOOL], tool_choice="required")
    back = messages_to_chat_request(chat_to_messages_request(body))
    assert back["messages"] == messages
    assert back["tools"] == [WEATHER_TOOL]
    assert back["tool_choice"] == "required"
    assert json.loads(back["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


# -- §6.6 responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reason_to_finish_reason(stop_reason: str, finish_reason: str) -> None:
    assert FINISH_REASON_FOR_STOP_REASON[stop_reason] == finish_reason
    chat = messages_to_chat_response(anthropic_message(stop_reason=stop_reason))
    assert chat["choices"][0]["finish_reason"] == finish_reason
    ChatCompletion.model_validate(chat)


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_to_stop_reason(finish_reason: str | None, stop_reason: str) -> None:
    if finish_reason is not None:
        assert STOP_REASON_FOR_FINISH_REASON[finish_reason] == stop_reason
    message = chat_to_messages_response(chat_completion(finish_reason=finish_reason))
    assert message["stop_reason"] == stop_reason
    assert message["stop_sequence"] is None
    Message.model_validate(message)


def anthropic_message(**fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
        **fields,
    }


def chat_completion(*, finish_reason: Any = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1711652795,
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello.", "refusal": None, **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24},
        "system_fingerprint": "fp_1",
    }


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {"input_tokens": 10, "output_tokens": 3},
            {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "cached": 0},
            id="plain",
        ),
        pytest.param(
            {
                "input_tokens": 10,
                "output_tokens": 3,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
            },
            {"prompt_tokens": 115, "completion_tokens": 3, "total_tokens": 118, "cached": 100},
            id="with-cache",
        ),
        pytest.param(
            {
                "input_tokens": 7,
                "output_tokens": 1,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
            },
            {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8, "cached": 0},
            id="null-cache",
        ),
    ],
)
def test_messages_usage_to_chat(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    chat = messages_to_chat_response(anthropic_message(usage=usage))
    out = chat["usage"]
    cached = expected.pop("cached")
    assert pick(out, expected) == expected
    assert out["prompt_tokens_details"]["cached_tokens"] == cached
    assert ChatCompletion.model_validate(chat).usage is not None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {"prompt_tokens": 22, "completion_tokens": 2, "total_tokens": 24},
            {
                "input_tokens": 22,
                "output_tokens": 2,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
            },
            id="plain",
        ),
        pytest.param(
            {
                "prompt_tokens": 120,
                "completion_tokens": 40,
                "total_tokens": 160,
                "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            },
            {
                "input_tokens": 56,
                "output_tokens": 40,
                "cache_read_input_tokens": 64,
                "cache_creation_input_tokens": None,
            },
            id="cached",
        ),
        pytest.param(
            {
                "prompt_tokens": 115,
                "completion_tokens": 3,
                "total_tokens": 118,
                "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
            },
            {
                "input_tokens": 10,
                "output_tokens": 3,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 5,
            },
            id="cache-write",
        ),
        pytest.param(
            None,
            {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
            },
            id="missing",
        ),
    ],
)
def test_chat_usage_to_messages(usage: Any, expected: dict[str, Any]) -> None:
    completion = {**chat_completion(), "usage": usage}
    message = chat_to_messages_response(completion)
    assert message["usage"] == expected
    Message.model_validate(message)


def test_usage_round_trips_through_both_dialects() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 3,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
    }
    chat = messages_to_chat_response(anthropic_message(usage=usage))
    assert chat_to_messages_response(chat)["usage"] == usage


def test_messages_response_shape() -> None:
    message = anthropic_message(
        content=[
            {"type": "thinking", "thinking": "let me see", "signature": "sig"},
            {"type": "text", "text": "It is "},
            {"type": "text", "text": "sunny.", "citations": None},
            WEATHER_USE,
        ],
        stop_reason="tool_use",
    )
    Message.model_validate(message)
    chat = messages_to_chat_response(message, created=1700000000)
    assert chat["id"] == "chatcmpl-abc"
    assert chat["object"] == "chat.completion"
    assert chat["created"] == 1700000000
    assert chat["model"] == "claude-x"
    assert chat["system_fingerprint"] is None and chat["service_tier"] is None
    choice = chat["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": "It is sunny.",
        "refusal": None,
        "tool_calls": [WEATHER_CALL],
    }
    parsed = ChatCompletion.model_validate(chat)
    assert parsed.choices[0].message.tool_calls is not None


def test_messages_response_without_text_has_null_content() -> None:
    chat = messages_to_chat_response(
        anthropic_message(content=[WEATHER_USE], stop_reason="tool_use")
    )
    assert chat["choices"][0]["message"]["content"] is None
    assert chat["created"] > 1700000000
    ChatCompletion.model_validate(chat)


def test_messages_refusal_sets_message_refusal() -> None:
    message = anthropic_message(
        content=[{"type": "text", "text": "I can't."}], stop_reason="refusal"
    )
    choice = messages_to_chat_response(message)["choices"][0]
    assert choice["message"]["refusal"] == "I can't."
    assert choice["message"]["content"] == "I can't."
    assert choice["finish_reason"] == "content_filter"


def test_chat_response_shape() -> None:
    completion = chat_completion(
        finish_reason="tool_calls", content="Checking.", tool_calls=[WEATHER_CALL]
    )
    ChatCompletion.model_validate(completion)
    message = chat_to_messages_response(completion)
    assert message == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-x",
        "content": [{"type": "text", "text": "Checking."}, WEATHER_USE],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 22,
            "output_tokens": 2,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": None,
        },
    }
    Message.model_validate(message)


@pytest.mark.parametrize(
    ("message", "content", "stop_reason"),
    [
        pytest.param({"content": ""}, [], "end_turn", id="empty-content"),
        pytest.param({"content": None}, [], "end_turn", id="null-content"),
        pytest.param(
            {"content": None, "refusal": "I can't help."},
            [{"type": "text", "text": "I can't help."}],
            "refusal",
            id="refusal",
        ),
        pytest.param(
            {
                "content": None,
                "tool_calls": [{**WEATHER_CALL, "function": {"name": "f", "arguments": "{bad"}}],
            },
            [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "f",
                    "input": {RAW_ARGUMENTS_KEY: "{bad"},
                }
            ],
            "end_turn",
            id="invalid-arguments-kept-raw",
        ),
        pytest.param(
            {
                "content": None,
                "tool_calls": [{**WEATHER_CALL, "function": {"name": "f", "arguments": ""}}],
            },
            [{"type": "tool_use", "id": "call_1", "name": "f", "input": {}}],
            "end_turn",
            id="empty-arguments",
        ),
    ],
)
def test_chat_response_content(
    message: dict[str, Any], content: list[Any], stop_reason: str
) -> None:
    out = chat_to_messages_response(chat_completion(**message))
    assert out["content"] == content
    assert out["stop_reason"] == stop_reason
    Message.model_validate(out)


def test_invalid_arguments_survive_the_round_trip() -> None:
    call = {**WEATHER_CALL, "function": {"name": "f", "arguments": "{bad"}}
    message = chat_to_messages_response(chat_completion(content=None, tool_calls=[call]))
    chat = messages_to_chat_response(message)
    assert chat["choices"][0]["message"]["tool_calls"] == [call]


def test_legacy_function_call_becomes_tool_use() -> None:
    completion = chat_completion(
        finish_reason="function_call",
        content=None,
        function_call={"name": "weather", "arguments": '{"city": "Oslo"}'},
    )
    message = chat_to_messages_response(completion)
    (block,) = message["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("call_")
    assert (block["name"], block["input"]) == ("weather", {"city": "Oslo"})
    assert message["stop_reason"] == "tool_use"
    Message.model_validate(message)


@pytest.mark.parametrize(
    ("chat_id", "message_id"),
    [("chatcmpl-abc", "msg_abc"), ("msg_xyz", "msg_xyz"), ("gen-42", "msg_gen-42")],
)
def test_response_ids(chat_id: str, message_id: str) -> None:
    message = chat_to_messages_response({**chat_completion(), "id": chat_id})
    assert message["id"] == message_id


def test_response_without_id_gets_a_fresh_one() -> None:
    completion = {key: value for key, value in chat_completion().items() if key != "id"}
    first, second = chat_to_messages_response(completion), chat_to_messages_response(completion)
    assert first["id"].startswith("msg_") and first["id"] != second["id"]
    chat = messages_to_chat_response({**anthropic_message(), "id": None})
    assert chat["id"].startswith("chatcmpl-") and len(chat["id"]) > len("chatcmpl-")


def test_responses_round_trip() -> None:
    completion = chat_completion(
        finish_reason="tool_calls", content="Hi", tool_calls=[WEATHER_CALL]
    )
    back = messages_to_chat_response(chat_to_messages_response(completion))
    assert back["id"] == "chatcmpl-abc"
    assert back["choices"][0]["message"]["content"] == "Hi"
    assert back["choices"][0]["message"]["tool_calls"] == [WEATHER_CALL]
    assert back["choices"][0]["finish_reason"] == "tool_calls"


# -- §6.6 batch error envelopes ------------------------------------------------------------

ERROR_TABLE = [
    (400, "invalid_request_error"),
    (401, "authentication_error"),
    (402, "billing_error"),
    (403, "permission_error"),
    (404, "not_found_error"),
    (409, "conflict_error"),
    (413, "request_too_large"),
    (429, "rate_limit_error"),
    (500, "api_error"),
    (504, "timeout_error"),
    (529, "overloaded_error"),
]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [*ERROR_TABLE, (422, "invalid_request_error"), (502, "api_error"), (503, "api_error")],
)
def test_anthropic_error_type(status: int, error_type: str) -> None:
    assert anthropic_error_type(status) == error_type


@pytest.mark.parametrize(("status", "error_type"), [*ERROR_TABLE, (500, "something_new_error")])
def test_status_for_anthropic_error_type(status: int, error_type: str) -> None:
    assert status_for_anthropic_error_type(error_type) == status


@pytest.mark.parametrize(
    ("anthropic_type", "openai_type", "code"),
    [
        ("invalid_request_error", "invalid_request_error", None),
        ("authentication_error", "invalid_request_error", "invalid_api_key"),
        ("billing_error", "insufficient_quota", "insufficient_quota"),
        ("not_found_error", "invalid_request_error", "not_found_error"),
        ("rate_limit_error", "rate_limit_error", "rate_limit_exceeded"),
        ("api_error", "server_error", None),
        ("overloaded_error", "server_error", "overloaded_error"),
    ],
)
def test_openai_error_from_anthropic(
    anthropic_type: str, openai_type: str, code: str | None
) -> None:
    inner = {"type": anthropic_type, "message": "it broke"}
    expected = {"error": {"message": "it broke", "type": openai_type, "param": None, "code": code}}
    assert (
        openai_error_from_anthropic({"type": "error", "error": inner, "request_id": "r"})
        == expected
    )
    assert openai_error_from_anthropic(inner) == expected


def test_openai_error_from_a_body_without_message() -> None:
    error = openai_error_from_anthropic({"unexpected": True})["error"]
    assert error["type"] == "server_error" and error["message"]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_error_from_openai(status: int, error_type: str) -> None:
    body = {"error": {"message": "nope", "type": "x", "param": None, "code": None}}
    out = anthropic_error_from_openai(body, status, request_id="req_1")
    assert out == {
        "type": "error",
        "error": {"type": error_type, "message": "nope"},
        "request_id": "req_1",
    }
    assert ErrorResponse.model_validate(out).error.type == error_type
    assert anthropic_error_from_openai(body["error"], status)["error"]["message"] == "nope"


def test_error_envelopes_round_trip_the_status() -> None:
    for status, _ in ERROR_TABLE:
        body = anthropic_error_from_openai({"error": {"message": "m"}}, status)
        assert status_for_anthropic_error_type(body["error"]["type"]) == status
        assert openai_error_from_anthropic(body)["error"]["message"] == "m"


# -- streaming -----------------------------------------------------------------------------


def chat_chunks(completion: dict[str, Any], *, with_usage: bool = True) -> list[dict[str, Any]]:
    """A realistic chunk stream for a chat completion: small text pieces, split arguments."""
    message = completion["choices"][0]["message"]
    base = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    text = message.get("content") or ""
    chunks += [chunk({"content": text[i : i + 3]}) for i in range(0, len(text), 3)]
    for position, call in enumerate(message.get("tool_calls") or []):
        head = {"index": position, "id": call["id"], "type": "function"}
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {**head, "function": {"name": call["function"]["name"], "arguments": ""}}
                    ]
                }
            )
        )
        arguments = call["function"]["arguments"]
        for i in range(0, len(arguments), 4):
            fragment = {"index": position, "function": {"arguments": arguments[i : i + 4]}}
            chunks.append(chunk({"tool_calls": [fragment]}))
    chunks.append(chunk({}, completion["choices"][0]["finish_reason"]))
    if with_usage:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


def message_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A realistic Anthropic event stream for a message."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            for i in range(0, len(block["text"]), 3):
                delta = {"type": "text_delta", "text": block["text"][i : i + 3]}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif block["type"] == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                }
            )
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                }
            )
        else:
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                }
            )
            arguments = json.dumps(block["input"])
            for i in range(0, len(arguments), 4):
                delta = {"type": "input_json_delta", "partial_json": arguments[i : i + 4]}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    delta_usage = {"output_tokens": usage["output_tokens"]}
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    return events


def accumulate_message(events: list[dict[str, Any]]) -> Message:
    """Validate each event against the SDK's types and fold them with its accumulator."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        parsed = EVENTS.validate_python(event)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def accumulate_completion(chunks: list[dict[str, Any]]) -> ChatCompletion:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return ChatCompletion.model_validate(state.current_completion_snapshot.model_dump())


def tool_calls(completion: ChatCompletion) -> list[tuple[str, str, str]]:
    calls = completion.choices[0].message.tool_calls or []
    return [(c.id, c.function.name, c.function.arguments) for c in calls]  # type: ignore[union-attr]


def to_message_events(
    chunks: list[dict[str, Any]], model: str = "claude-x"
) -> list[dict[str, Any]]:
    converter = ChatChunksToMessageEvents(model)
    events = [event for chunk in chunks for event in converter.feed(chunk)]
    return events + converter.finish()


def to_chat_chunks(
    events: list[dict[str, Any]], *, include_usage: bool = True
) -> list[dict[str, Any]]:
    converter = MessageEventsToChatChunks("gpt-x", include_usage, created=5)
    return [chunk for event in events for chunk in converter.feed(event)]


STREAMED_COMPLETIONS = [
    pytest.param(chat_completion(content="Hello there, friend."), id="text"),
    pytest.param(
        chat_completion(
            finish_reason="tool_calls",
            content=None,
            tool_calls=[
                WEATHER_CALL,
                {
                    **WEATHER_CALL,
                    "id": "call_2",
                    "function": {"name": "time", "arguments": '{"tz": "CET", "fmt": 24}'},
                },
            ],
        ),
        id="two-tools",
    ),
    pytest.param(
        chat_completion(
            finish_reason="tool_calls", content="Let me look.", tool_calls=[WEATHER_CALL]
        ),
        id="text-then-tool",
    ),
    pytest.param(chat_completion(finish_reason="length", content="Cut sho"), id="length"),
    pytest.param(
        {
            **chat_completion(content="cached"),
            "usage": {
                "prompt_tokens": 120,
                "completion_tokens": 4,
                "total_tokens": 124,
                "prompt_tokens_details": {"cached_tokens": 64},
            },
        },
        id="cached-usage",
    ),
]


@pytest.mark.parametrize("completion", STREAMED_COMPLETIONS)
def test_chat_chunks_to_message_events(completion: dict[str, Any]) -> None:
    events = to_message_events(chat_chunks(completion))
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop")
    streamed = accumulate_message(events)
    expected = chat_to_messages_response(completion)
    assert streamed.model_dump(
        include={"content", "stop_reason", "stop_sequence"}
    ) == Message.model_validate(expected).model_dump(
        include={"content", "stop_reason", "stop_sequence"}
    )
    assert streamed.usage.model_dump(exclude_none=True) == Message.model_validate(
        expected
    ).usage.model_dump(exclude_none=True)
    assert streamed.model == "claude-x" and streamed.id == expected["id"]


def test_chat_chunks_blocks_are_numbered_and_closed_in_order() -> None:
    completion = chat_completion(
        finish_reason="tool_calls", content="Hi", tool_calls=[WEATHER_CALL]
    )
    events = to_message_events(chat_chunks(completion))
    starts = [
        (e["index"], e["content_block"]["type"])
        for e in events
        if e["type"] == "content_block_start"
    ]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert starts == [(0, "text"), (1, "tool_use")]
    assert stops == [0, 1]
    text_stop = events.index({"type": "content_block_stop", "index": 0})
    tool_start = next(i for i, e in enumerate(events) if e.get("index") == 1)
    assert text_stop < tool_start  # one block open at a time


def test_chat_chunks_without_usage_keep_start_tokens() -> None:
    events = to_message_events(chat_chunks(chat_completion(), with_usage=False))
    assert events[0]["message"]["usage"]["input_tokens"] == 0
    delta = events[-2]
    assert delta["usage"]["output_tokens"] == 0 and delta["usage"]["input_tokens"] is None
    assert accumulate_message(events).usage.input_tokens == 0


def test_chat_chunks_refusal_and_empty_stream() -> None:
    base = chat_chunks(chat_completion(content=None))
    refusal = {
        **base[0],
        "choices": [{"index": 0, "delta": {"refusal": "No."}, "finish_reason": None}],
    }
    message = accumulate_message(to_message_events([base[0], refusal, *base[1:]]))
    assert message.stop_reason == "refusal"
    assert [block.model_dump(exclude_none=True) for block in message.content] == [
        {"type": "text", "text": "No."}
    ]
    empty = ChatChunksToMessageEvents("m")
    events = empty.finish()
    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]
    assert accumulate_message(events).content == []
    assert empty.finish() == [] and empty.feed(base[0]) == []


def test_chat_chunks_ignore_other_choices() -> None:
    chunks = chat_chunks(chat_completion(content="one"))
    other = {
        **chunks[1],
        "choices": [{"index": 1, "delta": {"content": "two"}, "finish_reason": None}],
    }
    message = accumulate_message(to_message_events([*chunks[:2], other, *chunks[2:]]))
    assert message.content[0].model_dump(exclude_none=True) == {"type": "text", "text": "one"}


STREAMED_MESSAGES = [
    pytest.param(
        anthropic_message(content=[{"type": "text", "text": "Hello there, friend."}]), id="text"
    ),
    pytest.param(
        anthropic_message(
            content=[
                {"type": "thinking", "thinking": "weather?", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                WEATHER_USE,
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "time",
                    "input": {"tz": "CET", "fmt": 24},
                },
            ],
            stop_reason="tool_use",
        ),
        id="thinking-text-two-tools",
    ),
    pytest.param(anthropic_message(stop_reason="max_tokens"), id="max_tokens"),
    pytest.param(
        anthropic_message(
            usage={
                "input_tokens": 10,
                "output_tokens": 3,
                "cache_creation_input_tokens": 5,
                "cache_read_input_tokens": 100,
            }
        ),
        id="cache-usage",
    ),
]


@pytest.mark.parametrize("message", STREAMED_MESSAGES)
def test_message_events_to_chat_chunks(message: dict[str, Any]) -> None:
    chunks = to_chat_chunks(message_events(message))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    streamed = accumulate_completion(chunks)
    expected = ChatCompletion.model_validate(messages_to_chat_response(message))
    streamed_message = streamed.choices[0].message
    assert streamed_message.content == expected.choices[0].message.content
    assert tool_calls(streamed) == tool_calls(expected)
    assert streamed.choices[0].finish_reason == expected.choices[0].finish_reason
    assert streamed.usage == expected.usage
    assert streamed.id == expected.id and streamed.model == "gpt-x"


def test_message_events_role_goes_with_a_leading_tool_call() -> None:
    message = anthropic_message(content=[WEATHER_USE], stop_reason="tool_use")
    first = to_chat_chunks(message_events(message))[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert first["tool_calls"][0]["id"] == "call_1"
    assert first["tool_calls"][0]["function"] == {"name": "weather", "arguments": ""}
    empty = to_chat_chunks(message_events(anthropic_message(content=[])))
    assert empty[0]["choices"][0]["delta"]["content"] == ""
    assert empty[0]["choices"][0]["finish_reason"] == "stop"


def test_message_events_without_usage_chunk() -> None:
    chunks = to_chat_chunks(message_events(anthropic_message()), include_usage=False)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert accumulate_completion(chunks).choices[0].message.content == "Hello."


def test_message_events_error_becomes_an_openai_error() -> None:
    converter = MessageEventsToChatChunks("gpt-x", True)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert converter.feed(error) == [
        {
            "error": {
                "message": "busy",
                "type": "server_error",
                "param": None,
                "code": "overloaded_error",
            }
        }
    ]
    assert converter.feed({"type": "ping"}) == []


@pytest.mark.parametrize("completion", STREAMED_COMPLETIONS)
def test_streams_chain_back_to_the_same_completion(completion: dict[str, Any]) -> None:
    chunks = to_chat_chunks(to_message_events(chat_chunks(completion)))
    streamed = accumulate_completion(chunks)
    original = ChatCompletion.model_validate(completion)
    assert streamed.choices[0].message.content == original.choices[0].message.content
    assert tool_calls(streamed) == tool_calls(original)
    assert streamed.choices[0].finish_reason == original.choices[0].finish_reason
    assert streamed.usage is not None and original.usage is not None
    assert (streamed.usage.prompt_tokens, streamed.usage.completion_tokens) == (
        original.usage.prompt_tokens,
        original.usage.completion_tokens,
    )
