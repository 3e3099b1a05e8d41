"""Builders for batch input files and readers for result files."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai

from batchway.dialects.openai.wire import OpenAIBatchOutputLine

if TYPE_CHECKING:
    from tests.conftest import RunningGateway

BOUNDARY = "batchway-test-boundary"


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


def start_batch(
    client: openai.OpenAI, lines: list[dict[str, Any]], endpoint: str = "/v1/chat/completions"
) -> Any:
    """Upload ``lines`` and create a batch on them; returns the batch."""
    return client.batches.create(
        input_file_id=upload(client, jsonl(lines)), endpoint=endpoint, completion_window="24h"
    )


def read_results(client: openai.OpenAI, file_id: str | None) -> list[OpenAIBatchOutputLine]:
    """Every line of a result file, each checked against the wire model."""
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    assert text.endswith("\n")
    # split on "\n" only: a JSON string may hold U+2028 and such, which splitlines() breaks on
    lines = text.split("\n")[:-1]
    return [OpenAIBatchOutputLine.model_validate_json(line) for line in lines]


def multipart(*parts: tuple[str, str | bytes | None, bytes]) -> bytes:
    """A multipart/form-data body, parts in the order given: (name, filename, data).

    A filename may be bytes, to send what a str cannot (a NUL, invalid UTF-8).
    """
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            raw = filename if isinstance(filename, bytes) else filename.encode()
            disposition += b'; filename="' + raw + b'"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: ".encode() + disposition + b"\r\n"
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def post_multipart(gw: RunningGateway, key: str, body: bytes) -> httpx.Response:
    """POST a hand-made multipart body to ``/v1/files``."""
    return httpx.post(
        f"{gw.url}/files",
        content=body,
        headers={
            "authorization": f"Bearer {key}",
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )


def blobs(gw: RunningGateway) -> list[str]:
    """Every entry of the gateway's files folder, temporary ones included."""
    folder = Path(gw.gateway.config.files)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
