"""Unit tests of ``batchway.core.tokens``: token estimates of a request before it is sent.

Most cases count text with the heuristic (one token per four UTF-8 bytes), where ``w(k)`` is a
text of exactly ``k`` tokens. The tiktoken cases build a tiny byte-level encoding on disk, so
they need no download; the one that uses a real encoding is skipped unless one is on disk.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import tiktoken_ext.openai_public  # type: ignore[import-untyped]

from batchway.core import tokens
from batchway.core.tokens import (
    DEFAULT_OUTPUT_TOKENS,
    FILE_TOKENS,
    IMAGE_TOKENS,
    estimate_input_tokens,
    estimate_output_tokens,
    estimate_tokens,
    heuristic_count,
    load_tiktoken_counter,
    set_text_counter,
    text_counter,
)

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
REQ = tokens.REQUEST_OVERHEAD  # 3
MSG = tokens.MESSAGE_OVERHEAD  # 4


def w(k: int) -> str:
    """A text of exactly ``k`` heuristic tokens."""
    return "abcd" * k


def j(value: Any) -> int:
    """Heuristic tokens of a value's JSON text."""
    return heuristic_count(orjson.dumps(value).decode())


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": {"type": "object"}}]
SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 1000}


@pytest.fixture(autouse=True)
def heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts on the heuristic, whatever encodings this machine has on disk."""
    monkeypatch.setattr(tokens, "_counter", heuristic_count)


# --- input, per endpoint ----------------------------------------------------------------------

INPUT_CASES = [
    # chat completions
    pytest.param(
        CHAT,
        {"messages": [{"role": "system", "content": w(2)}, {"role": "user", "content": w(3)}]},
        REQ + MSG + 2 + MSG + 3,
        id="chat-strings",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": w(2)},
                        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                        {"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}},
                        {"type": "input_audio", "input_audio": {"data": "UklGR" * 999}},
                        {"type": "file", "file": {"file_data": "JVBERi0" * 999}},
                    ],
                }
            ]
        },
        REQ + MSG + 2 + IMAGE_TOKENS + 85 + FILE_TOKENS + FILE_TOKENS,
        id="chat-parts-images-audio-file",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": w(1), "arguments": w(2)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": w(1)},
                {"role": "assistant", "function_call": {"name": w(1), "arguments": w(1)}},
            ]
        },
        REQ + MSG + 1 + 2 + MSG + 1 + MSG + 2,
        id="chat-tool-calls",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "name": w(1), "content": w(1)}]},
        REQ + MSG + 1 + 1 + 1,
        id="chat-name",
    ),
    pytest.param(
        CHAT,
        {
            "messages": [{"role": "user", "content": w(1)}],
            "tools": TOOLS,
            "response_format": {"type": "json_schema", "json_schema": SCHEMA},
        },
        REQ + MSG + 1 + j(TOOLS) + j(SCHEMA),
        id="chat-tools-and-schema",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "content": w(1)}], "functions": TOOLS},
        REQ + MSG + 1 + j(TOOLS),
        id="chat-legacy-functions",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"role": "user", "content": "é" * 8}]},  # 16 UTF-8 bytes
        REQ + MSG + 4,
        id="chat-counts-utf8-bytes",
    ),
    # Anthropic messages
    pytest.param(
        MESSAGES,
        {"system": w(2), "messages": [{"role": "user", "content": w(3)}], "max_tokens": 9},
        REQ + 2 + MSG + 3,
        id="messages-system-string",
    ),
    pytest.param(
        MESSAGES,
        {
            "system": [
                {"type": "text", "text": w(2)},
                {"type": "text", "text": w(1), "cache_control": {"type": "ephemeral"}},
            ],
            "messages": [{"role": "user", "content": [{"type": "text", "text": w(1)}]}],
        },
        REQ + 3 + MSG + 1,
        id="messages-system-blocks",
    ),
    pytest.param(
        MESSAGES,
        {
            "messages": [
                {"role": "user", "content": [{"type": "image", "source": PNG}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": w(2), "signature": "sig" * 50},
                        {"type": "text", "text": w(1)},
                        {"type": "tool_use", "id": "t1", "name": w(1), "input": {"q": "abcd"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": w(2)},
                                {"type": "image", "source": PNG},
                            ],
                        },
                        {"type": "tool_result", "tool_use_id": "t2", "content": w(1)},
                    ],
                },
            ],
            "tools": ANTHROPIC_TOOLS,
        },
        REQ
        + (MSG + IMAGE_TOKENS)
        + (MSG + 2 + 1 + 1 + j({"q": "abcd"}))
        + (MSG + 2 + IMAGE_TOKENS + 1)
        + j(ANTHROPIC_TOOLS),
        id="messages-blocks-images-tools",
    ),
    pytest.param(
        MESSAGES,
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "base64", "data": "JVB" * 999}},
                        {"type": "document", "source": {"type": "text", "data": w(3)}},
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [{"type": "text", "text": w(1)}],
                            },
                        },
                    ],
                }
            ]
        },
        REQ + MSG + FILE_TOKENS + 3 + 1,
        id="messages-documents",
    ),
    # legacy completions
    pytest.param(COMPLETIONS, {"prompt": w(5)}, 5, id="completions-string"),
    pytest.param(COMPLETIONS, {"prompt": [w(1), w(2)]}, 3, id="completions-list"),
    pytest.param(COMPLETIONS, {"prompt": [11, 22, 33]}, 3, id="completions-token-array"),
    pytest.param(COMPLETIONS, {"prompt": [[1, 2], [3]]}, 3, id="completions-token-arrays"),
    pytest.param(COMPLETIONS, {"prompt": w(2), "suffix": w(1)}, 3, id="completions-suffix"),
    # responses
    pytest.param(RESPONSES, {"input": w(4)}, REQ + MSG + 4, id="responses-string"),
    pytest.param(
        RESPONSES,
        {
            "instructions": w(2),
            "input": [
                {"role": "user", "content": w(1)},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": w(2)},
                        {"type": "input_image", "image_url": "https://x/a.png", "detail": "high"},
                        {"type": "input_file", "file_id": "file-1"},
                    ],
                },
                {"type": "function_call", "call_id": "c", "name": w(1), "arguments": w(1)},
                {"type": "function_call_output", "call_id": "c", "output": w(3)},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": w(1)}]},
                {"type": "item_reference", "id": "msg_1"},
            ],
            "tools": TOOLS,
            "text": {"format": {"type": "json_schema", **SCHEMA}},
        },
        REQ
        + 2
        + (MSG + 1)
        + (MSG + 2 + IMAGE_TOKENS + FILE_TOKENS)
        + (MSG + 2)
        + (MSG + 3)
        + (MSG + 1)
        + MSG
        + j(TOOLS)
        + j(SCHEMA["schema"]),
        id="responses-items",
    ),
    # embeddings
    pytest.param(EMBEDDINGS, {"input": w(3)}, 3, id="embeddings-string"),
    pytest.param(EMBEDDINGS, {"input": [w(1), w(2)]}, 3, id="embeddings-strings"),
    pytest.param(EMBEDDINGS, {"input": [5] * 40}, 40, id="embeddings-token-array"),
    pytest.param(EMBEDDINGS, {"input": [[1, 2], [3, 4, 5]]}, 5, id="embeddings-token-arrays"),
    pytest.param(EMBEDDINGS, {"input": []}, 0, id="embeddings-empty"),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), INPUT_CASES)
def test_input_tokens_per_endpoint_shape(
    endpoint: str, body: dict[str, Any], expected: int
) -> None:
    assert estimate_input_tokens(endpoint, body) == expected


# --- odd shapes never raise ---------------------------------------------------------------------


def _nested(depth: int) -> Any:
    """Tool results inside tool results, ``depth`` deep, around a one-token text."""
    value: Any = w(1)
    for _ in range(depth):
        value = [{"type": "tool_result", "content": value}]
    return value


ODD_CASES = [
    pytest.param(CHAT, {}, REQ, id="chat-empty"),
    pytest.param(CHAT, {"messages": "hello"}, REQ, id="messages-not-a-list"),
    pytest.param(CHAT, {"messages": [None, 3, "x"]}, REQ + 3 * MSG, id="messages-not-dicts"),
    pytest.param(CHAT, {"messages": [{"content": 42}]}, REQ + MSG, id="content-a-number"),
    pytest.param(
        CHAT,
        {"messages": [{"content": [None, 7, {"type": "mystery"}, {"type": "text", "text": 5}]}]},
        REQ + MSG,
        id="parts-of-odd-types",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"content": [{"type": "mystery", "text": w(2)}]}]},
        REQ + MSG + 2,
        id="unknown-part-with-text",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"tool_calls": "x", "function_call": [1], "name": 7}]},
        REQ + MSG,
        id="odd-tool-calls",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"content": _nested(10_000)}]},
        REQ + MSG,
        id="deep-nesting-is-cut-off",
    ),
    pytest.param(
        CHAT,
        {"messages": [{"content": _nested(5)}]},
        REQ + MSG + 1,
        id="shallow-nesting-is-counted",
    ),
    pytest.param(
        CHAT,
        {"messages": [], "tools": [{"big": 2**70}], "response_format": "json"},
        REQ,
        id="unserialisable-tools",
    ),
    pytest.param(
        CHAT, {"messages": [{"content": "\ud800abc"}]}, REQ + MSG + 2, id="lone-surrogate"
    ),
    pytest.param(
        MESSAGES, {"system": 5, "messages": None, "tools": "x"}, REQ + 1, id="messages-odd"
    ),
    pytest.param(COMPLETIONS, {"prompt": None}, 0, id="completions-no-prompt"),
    pytest.param(COMPLETIONS, {"prompt": [w(1), 3, None, [1]]}, 2, id="completions-mixed"),
    pytest.param(RESPONSES, {"input": 3.5}, REQ, id="responses-odd-input"),
    pytest.param(RESPONSES, {"input": [None, "x" * 8]}, REQ + 2 * MSG + 2, id="responses-mixed"),
    pytest.param(EMBEDDINGS, {"input": {"a": 1}}, 0, id="embeddings-dict"),
    pytest.param(
        "/v1/audio/speech",
        {"input": w(2), "messages": [{"content": w(1)}], "prompt": [w(1)]},
        2 + MSG + 1 + 1,
        id="unknown-endpoint-reads-usual-places",
    ),
    pytest.param("chat/completions", {"messages": [{"content": w(1)}]}, REQ + MSG + 1, id="no-v1"),
    pytest.param("/v1/embeddings/", {"input": w(2)}, 2, id="trailing-slash"),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), ODD_CASES)
def test_odd_shapes_estimate_what_they_can(endpoint: str, body: Any, expected: int) -> None:
    assert estimate_input_tokens(endpoint, body) == expected


@pytest.mark.parametrize("body", [None, [], "text", 3])
def test_a_body_that_is_not_an_object_counts_nothing(body: Any) -> None:
    assert estimate_tokens(CHAT, body) == 0
    assert estimate_tokens(COMPLETIONS, body) == 0


# --- output allowance --------------------------------------------------------------------------

OUTPUT_CASES = [
    pytest.param(CHAT, {"max_completion_tokens": 100, "max_tokens": 50}, 100, id="chat-mct-wins"),
    pytest.param(CHAT, {"max_tokens": 50}, 50, id="chat-max-tokens"),
    pytest.param(CHAT, {}, DEFAULT_OUTPUT_TOKENS, id="chat-default"),
    pytest.param(CHAT, {"max_tokens": 50, "n": 3}, 150, id="chat-n-choices"),
    pytest.param(CHAT, {"max_tokens": 10, "n": 10**9}, 1280, id="chat-n-capped"),
    pytest.param(CHAT, {"max_tokens": 0}, 0, id="chat-zero"),
    pytest.param(CHAT, {"max_tokens": True, "n": True}, DEFAULT_OUTPUT_TOKENS, id="chat-bools"),
    pytest.param(CHAT, {"max_tokens": -5, "n": -1}, DEFAULT_OUTPUT_TOKENS, id="chat-negative"),
    pytest.param(CHAT, {"max_tokens": "50"}, DEFAULT_OUTPUT_TOKENS, id="chat-string-limit"),
    pytest.param(MESSAGES, {"max_tokens": 1024}, 1024, id="messages"),
    pytest.param(MESSAGES, {}, DEFAULT_OUTPUT_TOKENS, id="messages-default"),
    pytest.param(COMPLETIONS, {}, 16, id="completions-upstream-default"),
    pytest.param(COMPLETIONS, {"max_tokens": 20, "n": 2, "best_of": 3}, 60, id="best-of"),
    pytest.param(COMPLETIONS, {"max_tokens": 20, "prompt": ["a", "b"]}, 40, id="two-prompts"),
    pytest.param(COMPLETIONS, {"max_tokens": 20, "prompt": [1, 2, 3]}, 20, id="token-array"),
    pytest.param(RESPONSES, {"max_output_tokens": 300, "max_tokens": 9}, 300, id="responses"),
    pytest.param(RESPONSES, {}, DEFAULT_OUTPUT_TOKENS, id="responses-default"),
    pytest.param(EMBEDDINGS, {"max_tokens": 100}, 0, id="embeddings-none"),
    pytest.param("/v1/other", {"max_output_tokens": 7}, 7, id="unknown-endpoint"),
    pytest.param(CHAT, None, 0, id="not-an-object"),
]


@pytest.mark.parametrize(("endpoint", "body", "expected"), OUTPUT_CASES)
def test_output_allowance(endpoint: str, body: Any, expected: int) -> None:
    assert estimate_output_tokens(endpoint, body) == expected


@pytest.mark.parametrize(("endpoint", "body", "expected_input"), INPUT_CASES[:3] + INPUT_CASES[-5:])
def test_estimate_is_input_plus_output(
    endpoint: str, body: dict[str, Any], expected_input: int
) -> None:
    assert estimate_tokens(endpoint, body) == expected_input + estimate_output_tokens(
        endpoint, body
    )


def test_an_explicit_counter_is_used() -> None:
    body = {"messages": [{"role": "user", "content": "anything at all"}], "max_tokens": 10}

    assert estimate_tokens(CHAT, body, count=lambda text: 100) == REQ + MSG + 100 + 10


# --- the heuristic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("日本語", 3), ("é", 1), ("\ud800", 1)],
)
def test_heuristic_counts_a_token_per_four_utf8_bytes(text: str, expected: int) -> None:
    assert heuristic_count(text) == expected


# --- tiktoken from local disk -------------------------------------------------------------------


def test_copied_encoding_specs_match_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our copies of tiktoken's patterns and special tokens equal what tiktoken builds."""
    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    for name, (_, pat_str, special_tokens) in tokens._ENCODINGS.items():
        spec = tiktoken_ext.openai_public.ENCODING_CONSTRUCTORS[name]()
        assert spec["pat_str"] == pat_str, name
        assert spec["special_tokens"] == special_tokens, name


def _byte_level_encoding(directory: Path, filename: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write a tiny encoding (one token per byte) and make it the expected ``o200k_base``."""
    data = b"".join(base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(256))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_bytes(data)
    _, pat_str, _ = tokens._ENCODINGS["o200k_base"]
    spec = (hashlib.sha256(data).hexdigest(), pat_str, {"<|endoftext|>": 256})
    monkeypatch.setattr(tokens, "_ENCODINGS", {"o200k_base": spec})


O200K_CACHE_NAME = hashlib.sha1(
    b"https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
).hexdigest()


@pytest.mark.parametrize("filename", ["o200k_base.tiktoken", O200K_CACHE_NAME])
def test_an_encoding_in_batchway_tiktoken_dir_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str
) -> None:
    _byte_level_encoding(tmp_path / "ours", filename, monkeypatch)
    monkeypatch.setenv("BATCHWAY_TIKTOKEN_DIR", str(tmp_path / "ours"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(tokens, "_counter", None)

    count = text_counter()

    assert count is not heuristic_count
    assert count("hello world") == 11  # one token per byte
    assert text_counter() is count  # resolved once
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 1}
    assert estimate_tokens(CHAT, body) == REQ + MSG + 5 + 1


def test_tiktokens_own_cache_dir_is_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _byte_level_encoding(tmp_path, O200K_CACHE_NAME, monkeypatch)
    monkeypatch.delenv("BATCHWAY_TIKTOKEN_DIR", raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    count = load_tiktoken_counter()

    assert count is not None
    assert count("abc") == 3


def test_a_file_that_fails_its_hash_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _byte_level_encoding(tmp_path, "o200k_base.tiktoken", monkeypatch)
    with (tmp_path / "o200k_base.tiktoken").open("ab") as file:
        file.write(b"Zm9v 256\n")

    assert load_tiktoken_counter(str(tmp_path)) is None


def test_a_malformed_file_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"not base64 at all\n"
    (tmp_path / "o200k_base.tiktoken").write_bytes(data)
    _, pat_str, special = tokens._ENCODINGS["o200k_base"]
    spec = (hashlib.sha256(data).hexdigest(), pat_str, special)
    monkeypatch.setattr(tokens, "_ENCODINGS", {"o200k_base": spec})

    assert load_tiktoken_counter(str(tmp_path)) is None


def test_without_an_encoding_on_disk_the_heuristic_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHWAY_TIKTOKEN_DIR", str(tmp_path))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tokens, "_counter", None)

    assert load_tiktoken_counter() is None
    assert text_counter() is heuristic_count


def test_an_empty_batchway_tiktoken_dir_turns_tiktoken_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _byte_level_encoding(tmp_path, O200K_CACHE_NAME, monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("BATCHWAY_TIKTOKEN_DIR", "")

    assert load_tiktoken_counter() is None


def test_set_text_counter_replaces_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []

    def fake_load() -> tokens.TextCounter:
        calls.append(None)
        return len

    monkeypatch.setattr(tokens, "load_tiktoken_counter", fake_load)
    set_text_counter(lambda text: 7)
    assert estimate_input_tokens(EMBEDDINGS, {"input": "whatever"}) == 7

    set_text_counter(None)
    assert text_counter() is len
    assert text_counter() is len
    assert len(calls) == 1


def test_the_tiktoken_counter_falls_back_on_long_texts_and_errors() -> None:
    def broken(text: str) -> list[int]:
        raise ValueError("tokenizer quirk")

    count = tokens._tiktoken_counter(lambda text: [0])
    assert count("x" * 100) == 1
    assert count("x" * (tokens._EXACT_LIMIT + 4)) == heuristic_count(
        "x" * (tokens._EXACT_LIMIT + 4)
    )
    assert tokens._tiktoken_counter(broken)("abcdefgh") == 2


def test_a_real_encoding_on_disk_counts_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With o200k_base or cl100k_base on disk (BATCHWAY_TIKTOKEN_DIR or tiktoken's cache)."""
    count = load_tiktoken_counter()
    if count is None:
        pytest.skip("no tiktoken encoding on local disk")
    monkeypatch.setattr(tokens, "_counter", None)

    assert text_counter()("hello world") == 2  # the same in both encodings
    assert count("<|endoftext|>") > 1  # special tokens are plain text here
    body = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 1}
    assert estimate_tokens(CHAT, body) == REQ + MSG + 2 + 1
