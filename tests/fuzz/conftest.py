"""Fixtures for the fuzz suite: one gateway per module and backend, shared by every example.

Starting a gateway costs far more than one fuzz example, so a module's examples all run on
one gateway (on SQLite, then on PostgreSQL), each module with its own database and files
folder. Every example leaves the gateway as it found it in the ways that matter: a refused
request leaves nothing behind, and an accepted batch is drained to its end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from batchway.api.app import create_app
from batchway.config import Config
from batchway.server import ServerHandle, serve_in_thread
from batchway.testing import FakeUpstream
from tests.conftest import (
    BACKENDS,
    RunningGateway,
    _postgres_admin,
    _postgres_database,
    gateway_config,
)

ADMIN_KEY = "admin-secret"
UPSTREAM_KEY = "upstream-secret"  # the fake provider's key in the test config
# the fake upstream's models that refuse every call (see batchway.testing.fake_upstream)
UPSTREAM_FAILURES = [
    "fake-401-echo",
    "fake-403",
    "fake-400-echo",
    "fake-echo-credentials",
    *(
        f"fake-429-always-{case}"
        for case in ("soon", "huge", "inf", "nan", "negative", "day", "date", "past", "none")
    ),
]


def fuzz_settings(max_examples: int) -> settings:
    """Bounded examples and no deadline (a drain takes as long as it takes). Under CI the
    examples are derandomized, so a run that passed once passes again on the same code."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=os.environ.get("CI") == "true",
        database=None,  # no .hypothesis directory in the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_template: str | None,
) -> Iterator[str]:
    """A fresh database for one module, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz-db')}/batchway.db"
        return
    if postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    name = f"bw_fuzz_{secrets.token_hex(6)}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    try:
        yield _postgres_database(name)
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def fuzz_gw(
    module_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstream: tuple[FakeUpstream, ServerHandle],
) -> Iterator[RunningGateway]:
    """A gateway with the default test config, serving one module's examples."""
    fake, upstream = fake_upstream
    folder = tmp_path_factory.mktemp("fuzz-files")
    failing = {name: {"provider": "fake", "model": name} for name in UPSTREAM_FAILURES}
    config = Config.model_validate(
        gateway_config(module_database_url, folder / "files", upstream.url, models=failing)
    )
    app = create_app(config)
    with serve_in_thread(app) as handle:
        yield RunningGateway(handle=handle, app=app, fake=fake, admin_key=ADMIN_KEY)


@pytest.fixture(scope="module")
def fuzz_key(fuzz_gw: RunningGateway) -> str:
    """A gateway key of the module's own."""
    return fuzz_gw.create_key("fuzz")


@pytest.fixture(scope="module")
def http(fuzz_gw: RunningGateway, fuzz_key: str) -> Iterator[httpx.Client]:
    """One keep-alive client for the module, authenticated with its key."""
    with httpx.Client(
        base_url=fuzz_gw.base_url,
        headers={"authorization": f"Bearer {fuzz_key}"},
        timeout=30,
    ) as client:
        yield client


def json_of(response: httpx.Response) -> Any:
    """The response's JSON, failing the test (not erroring) when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        pytest.fail(f"{response.status_code} answer is not JSON: {response.content[:300]!r}")
