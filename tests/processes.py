"""Gateway and worker processes started as an operator starts them, for the tests that
kill, stop or scale them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["GatewayProcess", "WorkerProcess", "free_port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """``batchway serve`` in a child process, as an operator would run it."""

    def __init__(self, config_path: Path, log_path: Path, *options: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._command = [
            sys.executable,
            "-m",
            "batchway.cli.main",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(self.port),
            *options,
        ]
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # the child is still starting; nothing to wait on but the port
        raise AssertionError("gateway did not start:\n" + self.log_path.read_text())

    def create_key(self, name: str = "tester") -> str:
        """A new gateway key, made with the admin key of the tests' configs."""
        answer = httpx.post(
            f"{self.base_url}/admin/keys",
            json={"name": name},
            headers={"authorization": "Bearer admin-secret"},
        )
        assert answer.status_code == 200, answer.text
        key: str = answer.json()["key"]
        return key

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not gone within 10 s: a test's end never leaves a
        process behind (nor stops the next one from being stopped)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class WorkerProcess(GatewayProcess):
    """``batchway worker`` in a child process: no port; started when it is running."""

    def __init__(self, config_path: Path, log_path: Path, *options: str) -> None:
        super().__init__(config_path, log_path, *options)
        self._command = [
            sys.executable,
            "-m",
            "batchway.cli.main",
            "worker",
            "--config",
            str(config_path),
            *options,
        ]

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
