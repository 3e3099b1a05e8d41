"""`batchway serve` as a child process for the benchmarks that measure it from outside:
started on a fresh folder with a given config, waited for, given a gateway key, and its
CPU time and resident memory read from /proc."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

HOST = "127.0.0.1"
ADMIN_KEY = "bench-admin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float:
    """A process's CPU time (every thread's), or only its main thread's."""
    stat = Path(f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def simulated_config(workdir: Path, **extra: Any) -> dict[str, Any]:
    """SQLite and local files in ``workdir``, one model on the simulated provider."""
    return {
        "database": f"sqlite:///{workdir}/batchway.db",
        "files": str(workdir / "files"),
        "admin_key": ADMIN_KEY,
        "providers": {"sim": {"kind": "simulated", "latency_ms": 0, "max_concurrency": 64}},
        "models": {"gpt-4o-mini": {"provider": "sim", "model": "gpt-4o-mini"}},
        **extra,
    }


def start_gateway(workdir: Path, config: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    """``batchway serve`` on a free port with ``config``; returns once it answers."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [sys.executable, "-m", "batchway.cli.main", "serve", "--port", str(port)]
    command += ["--config", str(workdir / "config.yaml")]
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the gateway did not start")


def create_key(base_url: str) -> str:
    """A new gateway key, made with the admin key."""
    response = httpx.post(
        f"{base_url}/admin/keys",
        json={"name": "bench"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    key: str = response.json()["key"]
    return key


def run_batch(client: openai.OpenAI, data: bytes, timeout: float = 1800) -> int:
    """Upload ``data``, run it as a batch to ``completed`` (every line must succeed) and
    stream the output file back; returns the output's size in bytes."""
    uploaded = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + timeout
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        if time.monotonic() > deadline:
            raise SystemExit(f"batch {batch.id} did not finish")
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    if batch.status != "completed" or batch.output_file_id is None:
        raise SystemExit(f"batch ended {batch.status}: {batch.errors}")
    size = 0
    with client.files.with_streaming_response.content(batch.output_file_id) as response:
        for chunk in response.iter_bytes(1 << 20):
            size += len(chunk)
    if batch.request_counts is None or batch.request_counts.completed != batch.request_counts.total:
        raise SystemExit(f"not every line succeeded: {batch.request_counts}")
    return size
