"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable), the fake upstream,
and a running gateway driven over HTTP.

PostgreSQL is used at ``BATCHWAY_TEST_POSTGRES`` (default: 127.0.0.1:5432, database ``test``,
trust auth). When it cannot be reached the PostgreSQL cases are skipped, except under CI
(``CI=true``), where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest

from batchway.api.app import create_app
from batchway.config import Config
from batchway.gateway import Gateway
from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeUpstream

T = TypeVar("T")

REDIS_URL = os.environ.get("BATCHWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BATCHWAY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]
# the implementations of the store ports the contract tests (tests/contract) run on
STORE_BACKENDS = ["sqlite", "postgres", "memory"]
FAKE_MODELS = [
    "fake-ok",
    "fake-slow",
    "fake-429-then-ok",
    "fake-500-then-ok",
    "fake-500",
    "fake-400",
    "fake-timeout",
    "fake-bad-json",
]


def _postgres_problem() -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    problem = _postgres_problem()
    if problem is None:
        return True
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    return False


def _redis_problem() -> str | None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def redis_available() -> bool:
    """Redis for the shared rate limiter; its cases are skipped when it is unreachable,
    except under CI, where that is a failure."""
    problem = _redis_problem()
    if problem is None:
        return True
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    return False


@pytest.fixture
def redis_url(redis_available: bool) -> str:
    if not redis_available:
        pytest.skip("Redis is not reachable")
    return REDIS_URL


async def _postgres_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _postgres_database(name: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres_template(postgres_available: bool) -> Iterator[str | None]:
    """A migrated database that each test's database is cloned from (cheaper than migrating)."""
    if not postgres_available:
        yield None
        return
    from batchway.config import Config
    from batchway.store.migrate import migrate
    from batchway.store.sql import create_engine

    name = f"bw_template_{secrets.token_hex(6)}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))

    async def migrate_template() -> None:
        engine = create_engine(Config(database=_postgres_database(name)).async_database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(migrate_template())
        yield name
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def _fresh_database(tmp_path: Path, postgres_template: str | None) -> Iterator[str]:
    """A new SQLite file in ``tmp_path``, or (given the template) a migrated PostgreSQL
    database, dropped afterwards."""
    if postgres_template is None:
        yield f"sqlite:///{tmp_path}/batchway.db"
        return
    name = f"bw_test_{secrets.token_hex(6)}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    try:
        yield _postgres_database(name)
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_template: str | None
) -> Iterator[str]:
    """A fresh database for one test, on each backend (PostgreSQL's comes migrated)."""
    if request.param == "postgresql" and postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    template = postgres_template if request.param == "postgresql" else None
    with _fresh_database(tmp_path, template) as url:
        yield url


@pytest.fixture
def postgres_url(tmp_path: Path, postgres_template: str | None) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, for what only runs on PostgreSQL (several
    processes sharing one database)."""
    if postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    with _fresh_database(tmp_path, postgres_template) as url:
        yield url


@pytest.fixture(params=STORE_BACKENDS)
def store_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """What a contract test's stores run on: a fresh SQLite or PostgreSQL database (its
    URL), or None for the in-memory fakes, which then touch no server, file or socket
    (PostgreSQL is only probed for its own cases)."""
    if request.param == "memory":
        yield None
        return
    template = None
    if request.param == "postgres":
        template = request.getfixturevalue("postgres_template")
        if template is None:
            pytest.skip("PostgreSQL is not reachable")
    with _fresh_database(request.getfixturevalue("tmp_path"), template) as url:
        yield url


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the loopback S3 server, and the config that points at it."""

    endpoint: str
    bucket: str

    def config(self) -> dict[str, Any]:
        """The ``s3`` config section for this server."""
        return {"endpoint_url": self.endpoint, "access_key_id": "test", "secret_access_key": "test"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3-compatible server (moto's server mode) on a loopback port for the session."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the S3 server (moto) did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def s3_bucket(s3_server: str) -> S3Bucket:
    name = f"bw-{secrets.token_hex(6)}"
    response = httpx.put(f"{s3_server}/{name}")
    assert response.status_code == 200, response.text
    return S3Bucket(s3_server, name)


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[tuple[FakeUpstream, ServerHandle]]:
    """The fake OpenAI-compatible provider, on a loopback port for the whole session."""
    fake = FakeUpstream(slow_seconds=0.05, timeout_seconds=5.0, retry_after="0")
    with serve_in_thread(fake) as handle:
        yield fake, handle


def gateway_config(
    database: str, files: Path | str, upstream_url: str, **overrides: Any
) -> dict[str, Any]:
    """A config (as a dict) routing every fake-* model to the fake upstream."""
    config: dict[str, Any] = {
        "database": database,
        "files": str(files),
        "admin_key": "admin-secret",
        "providers": {
            "fake": {
                "kind": "openai-compatible",
                "base_url": upstream_url,
                "api_key": "upstream-secret",
                "max_concurrency": 8,
                "timeout_seconds": 1.0,
            },
            "sim": {"kind": "simulated", "latency_ms": 0},
        },
        "models": {
            **{name: {"provider": "fake", "model": name} for name in FAKE_MODELS},
            # a public name that differs from the upstream's own
            "team-model": {"provider": "fake", "model": "fake-ok"},
            "gpt-4o": {"provider": "sim", "model": "gpt-4o"},
        },
        "worker": {
            "enabled": False,
            "lease_seconds": 5,
            "max_attempts": 3,
            "backoff_base_seconds": 0.01,
            "backoff_max_seconds": 0.05,
            "idle_poll_seconds": 0.05,
        },
    }
    return _merge(config, overrides)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class RunningGateway:
    """A gateway serving on loopback, with its batch worker run on demand (drain mode)."""

    handle: ServerHandle
    app: Any
    fake: FakeUpstream
    admin_key: str = "admin-secret"
    _clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def base_url(self) -> str:
        return self.handle.base_url

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the gateway's own event loop and wait for it."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.app.state.loop)
        return future.result(timeout)

    def drain(self) -> None:
        """Run the batch worker until no batch has anything left to do."""
        self.run(self.gateway.worker.drain())

    def create_key(self, name: str = "tester", **limits: Any) -> str:
        response = httpx.post(
            f"{self.base_url}/admin/keys",
            json={"name": name, **limits},
            headers={"authorization": f"Bearer {self.admin_key}"},
        )
        assert response.status_code == 200, response.text
        key: str = response.json()["key"]
        return key

    def client(self, key: str | None = None) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.url, api_key=key or self.create_key(), max_retries=0)
        self._clients.append(client)
        return client


@pytest.fixture
def make_gateway(
    database_url: str,
    tmp_path: Path,
    fake_upstream: tuple[FakeUpstream, ServerHandle],
) -> Iterator[Any]:
    """Start gateways on the test's database; ``make_gateway(**config_overrides)``."""
    fake, upstream = fake_upstream
    stack: list[Any] = []

    def start(**overrides: Any) -> RunningGateway:
        files = overrides.pop("files", tmp_path / "files")
        config = Config.model_validate(
            gateway_config(database_url, files, upstream.url, **overrides)
        )
        app = create_app(config)
        server = serve_in_thread(app)
        handle = server.__enter__()
        stack.append(server)
        return RunningGateway(handle=handle, app=app, fake=fake)

    fake.clear()
    fake.limit_rate(None)
    try:
        yield start
    finally:
        for server in reversed(stack):
            server.__exit__(None, None, None)


@pytest.fixture
def gw(make_gateway: Any) -> RunningGateway:
    """A gateway with the default test config."""
    gateway: RunningGateway = make_gateway()
    return gateway
