"""Unit tests of ``batchway.config``: YAML loading, ``${VAR}`` expansion and validation."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from batchway.config import Config, ModelRoute, ProviderConfig, default_config, load_config
from batchway.core.routing import Router
from batchway.errors import ConfigError
from batchway.providers.registry import KINDS

BASE = """
providers:
  sim:
    kind: simulated
    latency_ms: 0
models:
  chat:
    provider: sim
    model: upstream-chat
"""


Write = Callable[[str], Path]


def load(path: str | Path) -> Config:
    """The config at ``path``, its providers checked by the gateway's kinds."""
    return load_config(path, kinds=KINDS)


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """Write a YAML config (dedented) and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "batchway.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def test_minimal_config_loads(write: Write) -> None:
    config = load(write(BASE))

    assert config.providers == {"sim": ProviderConfig(kind="simulated", latency_ms=0)}
    assert config.routes("chat") == [ModelRoute(provider="sim", model="upstream-chat")]
    assert config.routes("unknown") == []


def test_load_config_accepts_a_string_path(write: Write) -> None:
    assert load(str(write(BASE))).routes("chat")[0].model == "upstream-chat"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param("${BWT_A}", {"BWT_A": "sk-123"}, "sk-123", id="plain"),
        pytest.param("${BWT_A:-fallback}", {}, "fallback", id="default-when-unset"),
        pytest.param("${BWT_A:-fallback}", {"BWT_A": ""}, "fallback", id="default-when-empty"),
        pytest.param("${BWT_A:-fallback}", {"BWT_A": "set"}, "set", id="set-beats-default"),
        pytest.param("x${BWT_A:-}y", {}, "xy", id="empty-default"),
        pytest.param("${BWT_A}-${BWT_B}", {"BWT_A": "a", "BWT_B": "b"}, "a-b", id="two-vars"),
        pytest.param("${BWT_A:-http://h:8080/v1}", {}, "http://h:8080/v1", id="default-url"),
        pytest.param("$BWT_A", {"BWT_A": "no"}, "$BWT_A", id="no-braces-untouched"),
    ],
)
def test_environment_expansion(
    write: Write, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("BWT_A", raising=False)
    monkeypatch.delenv("BWT_B", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    config = load(write(BASE + f'public_url: "{text}"\n'))

    assert config.public_url == expected


def test_expansion_reaches_nested_values_and_numbers(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BWT_URL", "http://upstream.invalid/v1")
    monkeypatch.setenv("BWT_CONCURRENCY", "12")
    monkeypatch.setenv("BWT_TOKEN", "t0ken")
    path = write(
        """
        providers:
          up:
            kind: openai-compatible
            base_url: ${BWT_URL}
            max_concurrency: ${BWT_CONCURRENCY}
            headers:
              x-auth: Bearer ${BWT_TOKEN}
        """
    )

    provider = load(path).providers["up"]

    assert provider.base_url == "http://upstream.invalid/v1"
    assert provider.max_concurrency == 12
    assert provider.headers == {"x-auth": "Bearer t0ken"}


def test_missing_variable_without_default_is_named(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BWT_MISSING_KEY", raising=False)

    with pytest.raises(ConfigError) as caught:
        load(write(BASE + "admin_key: ${BWT_MISSING_KEY}\n"))

    assert "BWT_MISSING_KEY" in caught.value.message


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("abc #def", id="hash-after-space-is-a-comment"),
        pytest.param("123456", id="digits-become-an-int"),
        pytest.param("null", id="null-becomes-none"),
        pytest.param("pa: ss", id="colon-space"),
    ],
)
def test_variable_values_are_taken_verbatim(
    write: Write, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("BWT_SECRET", secret)
    path = write(
        """
        providers:
          up:
            kind: openai-compatible
            base_url: http://upstream.invalid/v1
            api_key: ${BWT_SECRET}
        """
    )

    assert load(path).providers["up"].api_key == secret


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param(BASE + "databse: sqlite:///x.db\n", ["databse"], id="top-level"),
        pytest.param(
            """
            providers:
              sim:
                kind: simulated
                latency: 5
            """,
            ["providers.sim", "latency"],
            id="inside-a-provider",
        ),
        pytest.param(
            BASE + "worker:\n  max_attempt: 3\n", ["worker", "max_attempt"], id="inside-worker"
        ),
        pytest.param(
            BASE.replace("model: upstream-chat", "model: upstream-chat\n    priority: 2"),
            ["models.chat", "priority"],
            id="inside-a-route",
        ),
    ],
)
def test_unknown_keys_are_errors(write: Write, text: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(text))

    assert all(name in caught.value.message for name in names), caught.value.message


def test_model_routed_to_an_unknown_provider_is_an_error(write: Write) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(BASE.replace("provider: sim", "provider: nowhere")))

    assert "nowhere" in caught.value.message
    assert "chat" in caught.value.message


def test_one_bad_route_in_a_list_is_an_error(write: Write) -> None:
    text = """
    providers:
      sim: {kind: simulated}
    models:
      chat:
        - {provider: sim, model: a}
        - {provider: ghost, model: b}
    """
    with pytest.raises(ConfigError, match="ghost"):
        load(write(text))


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param("{kind: openai-compatible}", id="missing"),
        pytest.param("{kind: openai-compatible, base_url: ''}", id="empty"),
    ],
)
def test_openai_compatible_needs_a_base_url(write: Write, provider: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        load(write(f"providers:\n  up: {provider}\n"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("kind", "carrier-pigeon", id="unknown-kind"),
        pytest.param("max_concurrency", "0", id="zero-concurrency"),
        pytest.param("timeout_seconds", "0", id="zero-timeout"),
        pytest.param("latency_ms", "-1", id="negative-latency"),
    ],
)
def test_provider_field_values_are_checked(write: Write, field: str, value: str) -> None:
    provider = {"kind": "simulated", field: value}
    text = "providers:\n  sim:\n" + "".join(f"    {k}: {v}\n" for k, v in provider.items())

    with pytest.raises(ConfigError, match=field):
        load(write(text))


def test_a_list_of_routes_is_accepted_first_choice_first(write: Write) -> None:
    text = """
    providers:
      sim: {kind: simulated}
      up: {kind: openai-compatible, base_url: "http://upstream.invalid/v1"}
    models:
      chat:
        - {provider: up, model: primary}
        - {provider: sim, model: fallback}
    """

    config = load(write(text))

    assert config.routes("chat") == [
        ModelRoute(provider="up", model="primary"),
        ModelRoute(provider="sim", model="fallback"),
    ]
    router = Router(config)
    first = router.route("chat")
    assert first is not None
    assert first == router.routes("chat")[0]
    assert first.model == "primary"


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        pytest.param("sqlite:///data/b.db", "sqlite+aiosqlite:///data/b.db", id="sqlite-relative"),
        pytest.param("sqlite:////abs/b.db", "sqlite+aiosqlite:////abs/b.db", id="sqlite-absolute"),
        pytest.param(
            "postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db", id="postgresql"
        ),
        pytest.param("postgres://u@h/db", "postgresql+asyncpg://u@h/db", id="postgres-alias"),
        pytest.param("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db", id="already-async"),
        pytest.param(
            "postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db", id="already-asyncpg"
        ),
        pytest.param("mysql://h/db", "mysql://h/db", id="other-untouched"),
    ],
)
def test_async_database_url(database: str, expected: str) -> None:
    assert Config(database=database).async_database_url == expected


def test_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHWAY_ADMIN_KEY", raising=False)

    config = default_config()

    simulated = [name for name, p in config.providers.items() if p.kind == "simulated"]
    assert simulated
    route = config.routes("gpt-4o")
    assert len(route) == 1
    assert route[0].provider in simulated
    assert route[0].model == "gpt-4o"
    assert all(r.provider in simulated for name in config.models for r in config.routes(name))
    assert config.admin_key is None
    assert config.async_database_url.startswith("sqlite+aiosqlite://")


@pytest.mark.parametrize(
    ("value", "expected"),
    [pytest.param("s3cret", "s3cret", id="set"), pytest.param("", None, id="empty-is-none")],
)
def test_default_config_takes_the_admin_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("BATCHWAY_ADMIN_KEY", value)

    assert default_config().admin_key == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("providers: [unclosed\n", "YAML", id="invalid-yaml"),
        pytest.param("a: b\n c: d\n", "YAML", id="bad-indentation"),
        pytest.param("- one\n- two\n", "mapping", id="top-level-list"),
        pytest.param("just a string\n", "mapping", id="top-level-string"),
        pytest.param("42\n", "mapping", id="top-level-number"),
        pytest.param("providers: 3\n", "providers", id="providers-not-a-mapping"),
    ],
)
def test_malformed_files_are_config_errors(write: Write, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(write(text))


@pytest.mark.parametrize(
    "text", [pytest.param("", id="empty"), pytest.param("# only a comment\n", id="comment")]
)
def test_an_empty_file_gives_the_defaults(write: Write, text: str) -> None:
    path = write(text)
    defaults = Config(
        database=f"sqlite:///{path.parent / 'batchway-data' / 'batchway.db'}",
        files=str(path.parent / "batchway-data" / "files"),
    )
    assert load(path) == defaults


@pytest.mark.parametrize(
    ("database", "files", "expected_database", "expected_files"),
    [
        ("sqlite:///data/bw.db", "blobs", "sqlite:///{dir}/data/bw.db", "{dir}/blobs"),
        ("sqlite:///../up.db", "./here", "sqlite:///{parent}/up.db", "{dir}/here"),
        ("sqlite:////abs/bw.db", "/abs/files", "sqlite:////abs/bw.db", "/abs/files"),
        ("sqlite:///:memory:", "s3://bucket/x", "sqlite:///:memory:", "s3://bucket/x"),
        ("postgresql://u@h/db", "f", "postgresql://u@h/db", "{dir}/f"),
    ],
)
def test_relative_paths_are_taken_from_the_config_files_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    files: str,
    expected_database: str,
    expected_files: str,
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "batchway.yaml"
    path.write_text(f"database: '{database}'\nfiles: '{files}'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # somewhere else than the config

    config = load(path)

    where = {"dir": str(folder.resolve()), "parent": str(tmp_path.resolve())}
    assert config.database == expected_database.format(**where)
    assert config.files == expected_files.format(**where)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_config_is_frozen(write: Write) -> None:
    config = load(write(BASE))

    with pytest.raises(ValidationError):
        config.database = "sqlite:///other.db"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("api_key", "sends"),
    [
        pytest.param("sk-1", True, id="key"),
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="empty"),
        pytest.param("none", False, id="none-string"),
    ],
)
def test_sends_api_key(api_key: str | None, sends: bool) -> None:
    provider = ProviderConfig(kind="openai-compatible", base_url="http://h", api_key=api_key)

    assert provider.sends_api_key is sends


def test_storage_quota_and_file_expiry_defaults() -> None:
    config = Config()
    assert config.limits.max_storage_bytes_per_key == 10 * 1024**3
    assert config.limits.max_files_per_key == 10_000
    assert (config.file_expiry.interval_seconds, config.file_expiry.chunk) == (600.0, 500)


def test_storage_quotas_may_be_turned_off_or_set(write: Write) -> None:
    config = load(
        write(
            "limits: {max_storage_bytes_per_key: null, max_files_per_key: 5}\n"
            "file_expiry: {interval_seconds: 30, chunk: 10}\n"
        )
    )
    assert config.limits.max_storage_bytes_per_key is None
    assert config.limits.max_files_per_key == 5
    assert (config.file_expiry.interval_seconds, config.file_expiry.chunk) == (30.0, 10)


@pytest.mark.parametrize(
    "text",
    [
        "limits: {max_storage_bytes_per_key: 0}",
        "limits: {max_files_per_key: -1}",
        "file_expiry: {interval_seconds: 0}",
        "file_expiry: {chunk: 0}",
        "file_expiry: {every: 5}",
    ],
)
def test_bad_storage_settings_are_config_errors(write: Write, text: str) -> None:
    with pytest.raises(ConfigError):
        load(write(text + "\n"))
