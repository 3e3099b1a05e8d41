"""Upstream calls repeated by restarts: kill -9 and SIGTERM in the middle of a batch.

``batchway serve`` runs as a child process on a fresh SQLite database (or PostgreSQL with
``--database postgresql``) against the fake upstream in this process (``fake-slow``, 20 ms a
call). A batch of N lines starts; each time another ``N / (stops + 1)`` lines are done the
gateway is stopped — ``kill -9`` or SIGTERM — and started again, until the batch completes.
The fake upstream counts every call by prompt, so a call sent twice is a repeat.

Reported per mode: repeated calls in all and per stop (the bound for kill -9 is
``max_concurrency`` C per stop, for SIGTERM 0).

Usage::

    .venv/bin/python bench/restarts.py [--lines 2000] [--concurrency 32] [--stops 2]
        [--modes kill,term] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import yaml

from batchway.server import serve_in_thread
from batchway.testing import FakeUpstream

_POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _database(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'batchway.db'}"
    name = f"bw_bench_{secrets.token_hex(4)}"
    subprocess.run(
        ["psql", f"{_POSTGRES}/postgres", "-qc", f'CREATE DATABASE "{name}"'], check=True
    )
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


class Gateway:
    def __init__(self, config: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = [
            *(sys.executable, "-m", "batchway.cli.main", "serve"),
            *("--config", str(config), "--port", str(self.port)),
        ]
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self._command, stdout=self._log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise SystemExit(f"the gateway did not start; see {self._log}")

    def stop(self, mode: str) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL if mode == "kill" else signal.SIGTERM)
        self.process.wait(60)


def run(mode: str, args: argparse.Namespace, fake: FakeUpstream, upstream: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bw-restarts-") as tmp:
        workdir = Path(tmp)
        config = {
            "database": _database(args.database, workdir),
            "files": str(workdir / "files"),
            "admin_key": "admin",
            "providers": {
                "fake": {
                    "kind": "openai-compatible",
                    "base_url": upstream,
                    "api_key": "none",
                    "max_concurrency": args.concurrency,
                }
            },
            "models": {"fake-slow": {"provider": "fake", "model": "fake-slow"}},
            "worker": {"lease_seconds": 2},
        }
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        gateway = Gateway(workdir / "config.yaml", workdir / "gateway.log")
        gateway.start()
        admin = {"authorization": "Bearer admin"}
        key = httpx.post(f"{gateway.url}/admin/keys", json={"name": "b"}, headers=admin)
        client = openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key=key.json()["key"], max_retries=0
        )
        tag = secrets.token_hex(4)
        lines = b"".join(
            json.dumps(
                {
                    "custom_id": f"l{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "fake-slow",
                        "messages": [{"role": "user", "content": f"{tag}:{i}"}],
                    },
                }
            ).encode()
            + b"\n"
            for i in range(args.lines)
        )
        file = client.files.create(file=("b.jsonl", lines), purpose="batch")
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        started = time.monotonic()
        for stop in range(1, args.stops + 1):
            goal = args.lines * stop // (args.stops + 1)
            while True:
                counts = client.batches.retrieve(batch.id).request_counts
                if counts is not None and counts.completed >= goal:
                    break
                time.sleep(0.02)
            gateway.stop(mode)
            gateway.start()
            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=client.api_key)
        while client.batches.retrieve(batch.id).status != "completed":
            time.sleep(0.05)
        seconds = time.monotonic() - started
        gateway.stop("term")
        sent = collections.Counter(
            r.json["messages"][0]["content"] for r in fake.requests if r.model == "fake-slow"
        )
        repeats = sum(count - 1 for count in sent.values())
        return {
            "mode": mode,
            "lines": args.lines,
            "stops": args.stops,
            "concurrency": args.concurrency,
            "all_sent": len(sent) == args.lines,
            "repeats": repeats,
            "repeats_per_stop": repeats / args.stops,
            "seconds": round(seconds, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stops", type=int, default=2)
    parser.add_argument("--modes", default="kill,term")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    fake = FakeUpstream(slow_seconds=0.02)
    with serve_in_thread(fake) as handle:
        for mode in args.modes.split(","):
            fake.clear()
            result = run(mode, args, fake, handle.url)
            print(
                f"{mode:>4}: {result['lines']} lines, {result['stops']} stops at C="
                f"{result['concurrency']}: {result['repeats']} repeated calls "
                f"({result['repeats_per_stop']:.1f} per stop), every line sent: "
                f"{result['all_sent']}, {result['seconds']} s"
            )


if __name__ == "__main__":
    main()
