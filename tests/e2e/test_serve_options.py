"""`batchway serve` as an operator runs it: --version, JSON logs with an access line per
request, and the log level."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import orjson
import yaml

from tests.conftest import gateway_config
from tests.processes import GatewayProcess


def _config(tmp_path: Path, upstream_url: str) -> Path:
    path = tmp_path / "batchway.yaml"
    config = gateway_config(
        f"sqlite:///{tmp_path}/bw.db", tmp_path / "files", upstream_url, worker={"enabled": True}
    )
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_version():
    done = subprocess.run(
        [sys.executable, "-m", "batchway.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"batchway {version('batchway')}"


def test_json_logs_with_an_access_line_per_request(tmp_path: Path, fake_upstream):
    _, upstream = fake_upstream
    log = tmp_path / "serve.log"
    gateway = GatewayProcess(
        _config(tmp_path, upstream.url), log, "--log-format", "json", "--access-log"
    )
    gateway.start()
    try:
        httpx.get(f"{gateway.base_url}/v1/models")  # no key: 401
    finally:
        assert gateway.terminate() in (0, -15)
    entries = [orjson.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert {"method": "GET", "path": "/v1/models", "status": 401}.items() <= access[-1].items()
    assert any(e.get("action") == "worker_stopping" for e in entries)  # the gateway's own fields


def test_warning_level_keeps_info_out(tmp_path: Path, fake_upstream):
    _, upstream = fake_upstream
    log = tmp_path / "serve.log"
    gateway = GatewayProcess(_config(tmp_path, upstream.url), log, "--log-level", "warning")
    gateway.start()
    gateway.terminate()
    text = log.read_text()
    assert " INFO " not in text and "worker_stopping" not in text
