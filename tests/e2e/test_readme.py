"""The README's own commands and snippets, run as a new user would run them.

Each runs in a fresh folder holding what a clone has (``batchway.yaml``, ``examples/``) and
the repository's ``.venv``; ``bash scripts/setup.sh`` itself is left out (it made that
``.venv``). The only edit is the port, so that a busy 8080 cannot fail the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(section: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` in the README section headed ``section``."""
    start = README.index(f"## {section}\n")
    end = README.find("\n## ", start + 1)
    text = README[start : end if end != -1 else None]
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder laid out as a fresh clone is, for the README's commands."""
    shutil.copy(ROOT / "batchway.yaml", tmp_path / "batchway.yaml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHWAY_")}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def test_the_readme_config_is_the_repositorys():
    (config,) = _blocks("Using it", "yaml")
    assert config == (ROOT / "batchway.yaml").read_text(encoding="utf-8")


def test_the_demo_runs_offline(clone: Path):
    (commands,) = _blocks("Two commands", "bash")[:1]
    assert commands.strip() == "bash scripts/demo.sh"
    demo = (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8").splitlines()
    assert demo[-1] == 'exec .venv/bin/batchway demo --file examples/batch.jsonl "$@"'
    done = subprocess.run(
        [".venv/bin/batchway", "demo", "--file", "examples/batch.jsonl"],
        cwd=clone,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout
    for custom_id in ("prod1", "prod2", "prod3", "prod4", "prod5"):
        assert custom_id in done.stdout
    assert "simulated" in done.stdout


def test_using_it_runs_as_written(clone: Path):
    blocks = _blocks("Using it", "bash")
    setup = blocks[0]
    (cli,) = [block for block in blocks if "batches submit" in block]
    (snippet,) = _blocks("Using it", "python")
    export, submit = cli.splitlines()[:2]
    assert "batches submit" in submit
    port = str(_free_port())
    lines = [line for line in setup.splitlines() if not line.startswith("bash scripts/setup.sh")]
    # a step that fails ends the script; the served gateway must not outlive it (it holds
    # the output pipe open, and the test would wait for it instead of reporting)
    script = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
    script += "\n".join(lines).replace("8080", port)
    # the served gateway is what the snippet talks to: wait for it, as a person would
    script += f"""
for _ in $(seq 1 1200); do curl -sf localhost:{port}/healthz >/dev/null && break; sleep 0.1; done
.venv/bin/python snippet.py
{export.replace("8080", port)}
{submit}
status=$?
kill %1
wait
exit $status
"""
    (clone / "snippet.py").write_text(snippet.replace("8080", port), encoding="utf-8")
    process = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=clone,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, out + err
    results = [line for line in out.splitlines() if line.startswith('{"id"')]
    assert len(results) == 5, out
    assert all('"status_code":200' in line.replace(" ", "") for line in results)
    assert all("[simulated]" in line for line in results)
    # the command line client waited for its batch and wrote the results
    assert len((clone / "results.jsonl").read_text().splitlines()) == 5
    # the data is where the config file is, not where the command ran
    assert (clone / "batchway-data" / "batchway.db").is_file()


def test_the_curl_paths_answer(clone: Path):
    """The curl block's first request, as written, against the README's gateway."""
    curls = _blocks("Using it", "bash")[1]
    first = curls.splitlines()[0]
    assert first.startswith("curl localhost:8080/files ")
    port = str(_free_port())
    env = {**_env(), "BATCHWAY_ADMIN_KEY": "change-me"}
    server = subprocess.Popen(
        [".venv/bin/batchway", "serve", "--config", "batchway.yaml", "--port", port],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        key = subprocess.run(
            [".venv/bin/batchway", "keys", "create", "--name", "c", "-c", "batchway.yaml", "-q"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        done = subprocess.run(
            ["bash", "-c", first.replace("8080", port)],
            cwd=clone,
            env={**env, "BATCHWAY_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert '"object":"file"' in done.stdout.replace(" ", ""), done.stdout + done.stderr
    finally:
        server.terminate()
        server.wait(30)
