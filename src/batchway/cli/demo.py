"""``batchway demo``: the tutorial batch, end to end, as a user would run it.

Starts the gateway on a free local port, makes a key through the admin API, then drives
the gateway with the official OpenAI SDK: upload, create the batch, follow its progress,
download and print the results.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path

import orjson
from openai import OpenAI
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchway.api.app import create_app
from batchway.config import Config
from batchway.providers.registry import simulated_providers
from batchway.server import serve_in_thread

__all__ = ["run_demo"]


def _create_key(base_url: str, admin_key: str) -> str:
    request = urllib.request.Request(
        f"{base_url}/admin/keys",
        data=json.dumps({"name": "demo"}).encode(),
        headers={"authorization": f"Bearer {admin_key}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        key: str = json.load(response)["key"]
    return key


def _answer_text(body: dict[str, object]) -> str:
    choices = body.get("choices")
    if isinstance(choices, list) and choices:
        message = choices[0].get("message") or {}
        return str(message.get("content") or choices[0].get("text") or "")
    if "data" in body:
        return f"embedding x{len(body['data'])}"  # type: ignore[arg-type]
    return json.dumps(body)[:200]


def run_demo(config: Config, input_file: Path, console: Console) -> None:
    """Run ``input_file`` as a batch through a gateway started for the occasion."""
    admin_key = config.admin_key or "bw-admin-" + secrets.token_urlsafe(16)
    app = create_app(config.model_copy(update={"admin_key": admin_key}))
    simulated = simulated_providers(config)
    with serve_in_thread(app) as server:
        console.print(f"[bold]batchway[/bold] is serving on {server.base_url}")
        if simulated:
            console.print(
                f"[yellow]provider {', '.join(simulated)} is simulated: "
                "answers are labelled fakes, made offline[/yellow]"
            )
        client = OpenAI(base_url=server.url, api_key=_create_key(server.base_url, admin_key))
        with input_file.open("rb") as handle:
            uploaded = client.files.create(file=(input_file.name, handle), purpose="batch")
        console.print(f"uploaded {input_file} as {uploaded.id} ({uploaded.bytes} bytes)")
        first = orjson.loads(input_file.read_bytes().split(b"\n", 1)[0])
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint=first["url"], completion_window="24h"
        )
        console.print(f"created batch {batch.id}")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(batch.status, total=None)
            while batch.status not in ("completed", "failed", "expired", "cancelled"):
                time.sleep(0.2)
                batch = client.batches.retrieve(batch.id)
                counts = batch.request_counts
                done = (counts.completed + counts.failed) if counts else 0
                progress.update(
                    task,
                    description=batch.status,
                    total=counts.total if counts and counts.total else None,
                    completed=done,
                )
        _print_results(client, batch.id, console)


def _print_results(client: OpenAI, batch_id: str, console: Console) -> None:
    batch = client.batches.retrieve(batch_id)
    console.print(f"batch {batch.id} is [bold]{batch.status}[/bold]: {batch.request_counts}")
    if batch.errors and batch.errors.data:
        for error in batch.errors.data:
            console.print(f"  line {error.line}: {error.code}: {error.message}")
    table = Table("custom_id", "status", "answer", show_lines=True)
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for line in client.files.content(file_id).text.splitlines():
            result = json.loads(line)
            response = result["response"]
            if response is None:
                table.add_row(result["custom_id"], "error", escape(result["error"]["message"]))
            elif response["status_code"] >= 300:
                message = response["body"].get("error", {}).get("message", "")
                table.add_row(result["custom_id"], str(response["status_code"]), escape(message))
            else:
                answer = escape(_answer_text(response["body"]))
                table.add_row(result["custom_id"], str(response["status_code"]), answer)
    console.print(table)
    if batch.usage:
        console.print(
            f"tokens: {batch.usage.input_tokens} in, {batch.usage.output_tokens} out "
            f"(output file {batch.output_file_id}, error file {batch.error_file_id})"
        )
