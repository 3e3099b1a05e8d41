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
import json
import tempfile
import time
from pathlib import Path

import openai
from _serve import cpu_seconds, create_key, run_batch, simulated_config, start_gateway

SETTLE_SECONDS = 15.0  # the backoff reaches its longest sleep (0.25 s doubling to 5 s) by then
ARMS = {"backoff": {}, "no backoff": {"idle_poll_seconds": 0.25, "idle_poll_max_seconds": 0.1}}


def _one_batch(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=create_key(base_url), max_retries=0)
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        }
        for i in range(10)
    ]
    run_batch(client, "".join(json.dumps(line) + "\n" for line in lines).encode(), timeout=60)


def measure(arm: str, seconds: float) -> float:
    """The share of one core ``serve`` spends idle (percent)."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config = simulated_config(workdir, worker=ARMS[arm])
        process, base_url = start_gateway(workdir, config)
        try:
            _one_batch(base_url)
            time.sleep(SETTLE_SECONDS)
            start_cpu, start = cpu_seconds(process.pid), time.monotonic()
            time.sleep(seconds)
            used = cpu_seconds(process.pid) - start_cpu
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
