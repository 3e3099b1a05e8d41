"""What an idle gateway costs: CPU of ``batchway serve`` with nothing to do.

Starts ``batchway serve`` (SQLite, a local files folder, the simulated provider, the batch
worker on) twice in turn: once with the default idle backoff, once with it off
(``worker.idle_poll_max_seconds`` below ``idle_poll_seconds``: a look every 0.25 s for
ever). Each runs one batch of a few lines first, so the worker has had work and gone
quiet again, then sits idle; its CPU time (from /proc) is read over ``--seconds`` after
a settling pause. Reported: the share of one core each spends idle, and their ratio.

    .venv/bin/python bench/idle.py [--seconds 60] [--rounds 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
import yaml

HOST = "127.0.0.1"
SETTLE_SECONDS = 15.0  # the backoff reaches its longest sleep (0.25 s doubling to 5 s) by then
ARMS = {"backoff": {}, "no backoff": {"idle_poll_seconds": 0.25, "idle_poll_max_seconds": 0.1}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(workdir: Path, worker: dict[str, float]) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        "database": f"sqlite:///{workdir}/batchway.db",
        "files": str(workdir / "files"),
        "admin_key": "bench-admin",
        "providers": {"sim": {"kind": "simulated", "latency_ms": 0}},
        "models": {"gpt-4o-mini": {"provider": "sim", "model": "gpt-4o-mini"}},
        "worker": worker,
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = _free_port()
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


def _one_batch(base_url: str) -> None:
    key = httpx.post(
        f"{base_url}/admin/keys",
        json={"name": "bench"},
        headers={"authorization": "Bearer bench-admin"},
    ).json()["key"]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0)
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(10)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    upload = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the batch did not end: {batch.status}")
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    if batch.status != "completed":
        raise SystemExit(f"the batch ended {batch.status}")


def measure(arm: str, seconds: float) -> float:
    """The share of one core ``serve`` spends idle (percent)."""
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = _start(Path(tmp), ARMS[arm])
        try:
            _one_batch(base_url)
            time.sleep(SETTLE_SECONDS)
            start_cpu, start = _cpu_seconds(process.pid), time.monotonic()
            time.sleep(seconds)
            used = _cpu_seconds(process.pid) - start_cpu
            return 100 * used / (time.monotonic() - start)
        finally:
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured per run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, arm order alternating")
    args = parser.parse_args()
    results: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for round_no in range(args.rounds):
        order = list(ARMS) if round_no % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            share = measure(arm, args.seconds)
            results[arm].append(share)
            print(f"round {round_no + 1}  {arm:<11} {share:6.2f} % of a core", flush=True)
    print("\n| worker | idle CPU, % of one core (per round) |\n|---|---|")
    for arm, shares in results.items():
        print(f"| {arm} | {' / '.join(f'{s:.2f}' for s in shares)} |")
    backoff, steady = (sum(results[a]) / len(results[a]) for a in ARMS)
    print(f"\nbackoff / no backoff: {backoff / steady:.2f}")


if __name__ == "__main__":
    main()
