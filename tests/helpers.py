"""Builders for batch input files and readers for result files."""

from __future__ import annotations

import io
import json
import secrets
from typing import Any

import openai

from batchway.api.openai.models import OpenAIBatchOutputLine


def chat_line(
    custom_id: str, model: str = "fake-ok", prompt: str | None = None, **body: Any
) -> dict[str, Any]:
    """One chat-completions request line; the prompt names the custom_id by default."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": model,
            "messages": [{"role": "user", "content": prompt or f"say {custom_id}"}],
            **body,
        },
    }


def unique() -> str:
    """A token that makes prompts unique across tests (the fake remembers prompts)."""
    return secrets.token_hex(4)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, data: bytes, name: str = "batch.jsonl") -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose="batch").id


def read_results(client: openai.OpenAI, file_id: str | None) -> list[OpenAIBatchOutputLine]:
    """Every line of a result file, each checked against the wire model."""
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    assert text.endswith("\n")
    # split on "\n" only: a JSON string may hold U+2028 and such, which splitlines() breaks on
    lines = text.split("\n")[:-1]
    return [OpenAIBatchOutputLine.model_validate_json(line) for line in lines]
