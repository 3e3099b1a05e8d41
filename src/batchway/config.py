"""The gateway's settings: one YAML file, validated into frozen objects.

``${VAR}`` and ``${VAR:-default}`` in any string value are taken from the environment.
Unknown keys are a startup error, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from batchway.errors import ConfigError

__all__ = [
    "BatchLimits",
    "Config",
    "FileExpiryConfig",
    "LogConfig",
    "ModelRoute",
    "PriceConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "WorkerConfig",
    "default_config",
    "load_config",
]

ProviderKind = Literal["openai-compatible", "openai", "azure", "anthropic", "simulated"]
BatchMode = Literal["native", "execute", "auto"]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProviderConfig(_Frozen):
    """One upstream provider."""

    kind: ProviderKind
    base_url: str | None = None
    api_key: str | None = None
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    timeout_seconds: float = Field(default=600.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    # secrets (the api_key, credential-like headers) shorter than this are not masked in
    # the provider's answers: masking "EMPTY" would garble text and protect nothing
    secret_min_length: int = Field(default=8, ge=1)
    # the longest wait taken from the provider's Retry-After (passed on to clients of
    # synchronous routes; batch lines and native polls cap it further)
    retry_after_max_seconds: float = Field(default=60.0, gt=0)
    # the provider's own rate limits (rolling minute); batch lines wait for quota and leave
    # ``interactive_share`` of each limit to synchronous traffic
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    interactive_share: float = Field(default=0.2, ge=0, lt=1)
    # the window rpm and tpm are counted in: 60 s, or 1 s for a server that limits per second
    rate_window_seconds: float = Field(default=60.0, gt=0)
    # openai, azure: run batch lines through the provider's own batch API (``native``, for its
    # discount), as calls made by the gateway (``execute``), or native with a fall back to
    # execute when the provider refuses the batch (``auto``)
    batch: BatchMode = "auto"
    batch_poll_seconds: float = Field(default=30.0, gt=0)  # first poll of an upstream batch …
    batch_poll_max_seconds: float = Field(default=300.0, gt=0)  # … backing off to this
    batch_max_lines: int | None = Field(default=None, ge=1)  # default: the provider's limit
    # azure only: the resource name (or give its endpoint as base_url), and the REST API
    # version of the classic (dated) API
    resource: str | None = None
    api_version: str = "2024-10-21"
    # anthropic only: the API version header, and max_tokens for chat requests without one
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(default=4096, ge=1)
    # openai-compatible only: pass Messages fields OpenAI lacks (top_k…) through, as vLLM takes
    allow_extensions: bool = False
    # simulated only: how long a fake answer takes
    latency_ms: float = Field(default=20.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _azure_resource(cls, data: Any) -> Any:
        """An Azure ``resource`` name stands for its endpoint."""
        if isinstance(data, dict) and data.get("resource") and not data.get("base_url"):
            return {**data, "base_url": f"https://{data['resource']}.openai.azure.com"}
        return data

    @model_validator(mode="after")
    def _check_kind(self) -> ProviderConfig:
        if self.kind == "azure" and self.resource and not self.base_url:
            return self.model_copy(update={"base_url": f"https://{self.resource}.openai.azure.com"})
        if self.kind in ("openai-compatible", "azure") and not self.base_url:
            raise ValueError(f"an {self.kind} provider needs a base_url")
        return self

    @property
    def sends_api_key(self) -> bool:
        return bool(self.api_key) and self.api_key not in ("none", "None")


class ModelRoute(_Frozen):
    """Where a public model name goes: a provider and the provider's own model name."""

    provider: str
    model: str
    weight: float = Field(default=1.0, gt=0)  # share of traffic among a model's routes


class WorkerConfig(_Frozen):
    """The batch worker: leases, retries and how results are flushed."""

    enabled: bool = True
    lease_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    idle_poll_seconds: float = Field(default=0.25, gt=0)
    # results are written as soon as their calls return (one transaction takes every result
    # that arrived meanwhile); a positive interval waits that long to gather more per write
    flush_interval_seconds: float = Field(default=0.0, ge=0)
    flush_max_items: int = Field(default=256, ge=1)
    # give-up rules: a result that cannot be written alone after this many tries is set
    # aside (the line fails with ``result_not_recorded``) …
    max_record_attempts: int = Field(default=3, ge=1, le=100)
    # … a batch whose validation or finalization raised this many times in a row ends
    # (cancelled, expired, or failed with ``internal_error``) …
    max_step_failures: int = Field(default=5, ge=1, le=100)
    # … and an upstream (native) batch whose polling failed this many times in a row is
    # given up: its lines run as calls (``batch: auto``) or fail with ``batch_failed``
    max_upstream_failures: int = Field(default=10, ge=1, le=1000)
    # on SIGTERM: stop claiming lines, let calls in flight finish and record them for at
    # most this long, then exit (lines still in flight then run again after a restart)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)


class BatchLimits(_Frozen):
    """Limits on request bodies, uploads, batch input and what a key may store (the
    ``limits`` section)."""

    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_batch_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_batch_lines: int = Field(default=50_000, ge=1)
    max_message_batch_requests: int = Field(default=100_000, ge=1)  # Anthropic's limit
    # the whole body of an inline batch (POST /v1/messages/batches, or POST /v1/batches,
    # which may carry inline requests)
    max_message_batch_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_reported_errors: int = Field(default=100, ge=0)
    # any other JSON request body: the synchronous routes, the admin API
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # one line of a batch input file, or one request of an inline batch
    max_batch_line_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # nesting of arrays and objects in a JSON body, a batch line or an inline request;
    # capped well below the 254 levels orjson can write
    max_json_depth: int = Field(default=128, ge=1, le=200)
    # multipart uploads: text fields, the size of each, a part's headers, the file's name
    max_form_fields: int = Field(default=32, ge=1)
    max_form_field_bytes: int = Field(default=64 * 1024, ge=1)
    max_form_header_bytes: int = Field(default=16 * 1024, ge=1)
    max_filename_length: int = Field(default=255, ge=1)
    # the live (unexpired, undeleted) files of one key: uploads, inline batch inputs and
    # batch results all count; None: no limit. A key may carry its own of each.
    max_storage_bytes_per_key: int | None = Field(default=10 * 1024**3, ge=1)
    max_files_per_key: int | None = Field(default=10_000, ge=1)


class FileExpiryConfig(_Frozen):
    """The sweep that deletes expired files (their rows and blobs)."""

    interval_seconds: float = Field(default=600.0, gt=0)  # how often it runs
    chunk: int = Field(default=500, ge=1, le=100_000)  # files deleted per transaction


class RateLimitConfig(_Frozen):
    """Where rate-limit windows are counted: in this process, or in Redis (shared by every
    gateway process that uses the same Redis and prefix)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "batchway"


class PriceConfig(_Frozen):
    """A model's price in USD per million tokens. The batch price applies where the provider
    really discounts (its native batch API): ``batch_input``/``batch_output`` if given, else
    the normal price less ``batch_discount``."""

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # default: the input price
    batch_discount: float = Field(default=0.5, ge=0, le=1)
    batch_input: float | None = Field(default=None, ge=0)
    batch_output: float | None = Field(default=None, ge=0)


class LogConfig(_Frozen):
    """Request logs: one row per upstream call outcome."""

    record_bodies: bool = False  # keep request and response bodies (prompts!) in the logs
    retention_days: float | None = Field(default=30.0, gt=0)  # None: keep forever
    flush_interval_seconds: float = Field(default=0.25, gt=0)


class Config(_Frozen):
    """The whole gateway configuration."""

    database: str = "sqlite:///batchway-data/batchway.db"
    files: str = "batchway-data/files"
    admin_key: str | None = None
    public_url: str | None = None
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelRoute | list[ModelRoute]] = Field(default_factory=dict)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    limits: BatchLimits = Field(default_factory=BatchLimits)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)  # per public model name
    logs: LogConfig = Field(default_factory=LogConfig)
    file_expiry: FileExpiryConfig = Field(default_factory=FileExpiryConfig)
    metrics: bool = True  # Prometheus metrics at /metrics

    @field_validator("admin_key")
    @classmethod
    def _empty_admin_key_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _check_routes(self) -> Config:
        for name, routes in self.models.items():
            for route in routes if isinstance(routes, list) else [routes]:
                if route.provider not in self.providers:
                    raise ValueError(
                        f"model {name!r} routes to unknown provider {route.provider!r}"
                    )
        return self

    def routes(self, public_model: str) -> list[ModelRoute]:
        """The routes of a public model name, first choice first (empty if unknown)."""
        entry = self.models.get(public_model)
        if entry is None:
            return []
        return entry if isinstance(entry, list) else [entry]

    @property
    def async_database_url(self) -> str:
        """The database URL with the async driver SQLAlchemy needs."""
        url = self.database
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url


def _expand_env(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"environment variable {name} is not set (used as ${{{name}}})")
            return default
        return value

    return _ENV_PATTERN.sub(replace, text)


def _expand_tree(data: Any) -> Any:
    """Expand variables inside the string values of parsed YAML, so that a value is taken
    verbatim (a ``#`` or ``: `` in a secret stays part of it) and comments are left alone."""
    if isinstance(data, str):
        return _expand_env(data)
    if isinstance(data, dict):
        return {key: _expand_tree(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_expand_tree(value) for value in data]
    return data


def _validate(data: Any, source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid config {source}: {problems}") from exc


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file, expanding ``${VAR}`` references."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return _validate(_expand_tree(data), str(path))


def default_config() -> Config:
    """The embedded default: SQLite and files under ./batchway-data, a simulated provider.

    Every answer of the simulated provider is clearly labelled as simulated.
    """
    simulated = {"provider": "simulated"}
    return _validate(
        {
            "admin_key": os.environ.get("BATCHWAY_ADMIN_KEY"),
            "providers": {"simulated": {"kind": "simulated", "latency_ms": 20}},
            "models": {
                name: {**simulated, "model": name}
                for name in (
                    "gpt-4o",
                    "gpt-4o-mini",
                    "gpt-4.1-mini",
                    "text-embedding-3-small",
                    "text-embedding-3-large",
                )
            },
        },
        "(default)",
    )
