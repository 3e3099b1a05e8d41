"""Does the gateway's memory stay flat as batch files grow?

Runs ``batchway serve`` in a child process (SQLite, a local files folder, the simulated
provider with no latency) and, for input files of increasing size, uploads the file,
runs the batch to completion, and downloads the output, while sampling the child's
resident memory (VmRSS from /proc) every 50 ms. The figure that matters is the ratio of
peak memory above the idle baseline between the largest and the smallest file: flat
memory means that ratio stays near 1 while the file grows tenfold.

With ``--inline`` the same requests are posted inline instead, as one
``POST /v1/messages/batches`` body, and the batch is run and its results streamed back;
the peak is also reported for the POST alone (where a body read whole would show).

    .venv/bin/python bench/memory.py [--sizes-mb 20,200] [--line-kb 4] [--inline]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
from _serve import create_key, rss_mb, run_batch, simulated_config, start_gateway


class RssSampler:
    """Samples a process's resident memory in a thread and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    size_mb: float
    lines: int
    idle_mb: float
    peak_mb: float
    seconds: float
    create_peak_mb: float | None = None  # --inline: the peak while the body was posted

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.idle_mb


def _input_file(size_mb: int, line_kb: int) -> bytes:
    """A batch input of about ``size_mb`` (10**6 bytes) with lines of about ``line_kb`` each."""
    filler = "lorem ipsum dolor sit amet " * (line_kb * 1024 // 27)
    lines = []
    total = 0
    index = 0
    while total + len(filler) < size_mb * 1_000_000:  # decimal MB: 200 stays under 200 MiB
        line = json.dumps(
            {
                "custom_id": f"line-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"{index} {filler}"}],
                    "max_tokens": 20,
                },
            }
        ).encode()
        lines.append(line)
        total += len(line) + 1
        index += 1
    return b"\n".join(lines) + b"\n"


def _inline_body(size_mb: int, line_kb: int) -> tuple[bytes, int]:
    """A message batch body of about ``size_mb`` with requests of about ``line_kb`` each."""
    filler = "lorem ipsum dolor sit amet " * (line_kb * 1024 // 27)
    requests = []
    total = 0
    while total + len(filler) < size_mb * 1_000_000:
        request = json.dumps(
            {
                "custom_id": f"r{len(requests)}",
                "params": {
                    "model": "gpt-4o-mini",
                    "max_tokens": 20,
                    "messages": [{"role": "user", "content": f"{len(requests)} {filler}"}],
                },
            }
        ).encode()
        requests.append(request)
        total += len(request) + 1
    return b'{"requests": [' + b",".join(requests) + b"]}", len(requests)


def _run_inline(base_url: str, key: str, body: bytes, sampler: RssSampler) -> float:
    """Post the body, run the batch to its end and stream its results; the peak while
    the POST was answered."""
    headers = {"x-api-key": key, "content-type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        response = client.post("/v1/messages/batches", content=body)
        create_peak = sampler.peak
        if response.status_code != 200:
            raise SystemExit(f"the batch was refused: {response.status_code} {response.text}")
        batch = response.json()
        deadline = time.monotonic() + 1800
        while batch["processing_status"] != "ended":
            if time.monotonic() > deadline:
                raise SystemExit(f"batch {batch['id']} did not end")
            time.sleep(0.5)
            batch = client.get(f"/v1/messages/batches/{batch['id']}").json()
        if batch["request_counts"]["succeeded"] != body.count(b'"custom_id"'):
            raise SystemExit(f"not every request succeeded: {batch['request_counts']}")
        with client.stream("GET", f"/v1/messages/batches/{batch['id']}/results") as results:
            for _ in results.iter_bytes(1 << 20):
                pass
    return create_peak


def measure(size_mb: int, line_kb: int, inline: bool = False) -> Run:
    if inline:
        data, lines = _inline_body(size_mb, line_kb)
    else:
        data = _input_file(size_mb, line_kb)
        lines = data.count(b"\n")
    create_peak = None
    with tempfile.TemporaryDirectory() as tmp:
        process, base_url = start_gateway(Path(tmp), simulated_config(Path(tmp)))
        try:
            key = create_key(base_url)
            client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, timeout=600)
            idle = rss_mb(process.pid)
            started = time.perf_counter()
            with RssSampler(process.pid) as sampler:
                if inline:
                    create_peak = _run_inline(base_url, key, data, sampler)
                else:
                    run_batch(client, data)
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(30)
    return Run(len(data) / 1e6, lines, idle, sampler.peak, elapsed, create_peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="20,200", help="input sizes, comma separated")
    parser.add_argument("--line-kb", type=int, default=4, help="size of one input line")
    parser.add_argument("--inline", action="store_true", help="post the requests inline")
    args = parser.parse_args()
    runs = [measure(int(size), args.line_kb, args.inline) for size in args.sizes_mb.split(",")]
    print(
        f"{'input MB':>9} {'lines':>7} {'idle MB':>8} {'peak MB':>8} {'growth MB':>10} "
        f"{'s':>7} {'POST peak MB':>13}"
    )
    for run in runs:
        post = f"{run.create_peak_mb:13.1f}" if run.create_peak_mb is not None else f"{'-':>13}"
        print(
            f"{run.size_mb:9.1f} {run.lines:7d} {run.idle_mb:8.1f} {run.peak_mb:8.1f} "
            f"{run.growth_mb:10.1f} {run.seconds:7.1f} {post}"
        )
    smallest, largest = runs[0], runs[-1]
    print(
        f"input grew x{largest.size_mb / smallest.size_mb:.1f}; "
        f"memory growth above idle grew x{largest.growth_mb / max(smallest.growth_mb, 0.1):.2f}"
    )
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    name = "memory-inline.json" if args.inline else "memory.json"
    (results / name).write_text(json.dumps([run.__dict__ for run in runs], indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
