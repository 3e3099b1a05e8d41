"""The gateway's settings: one YAML file, validated into frozen objects.

``${VAR}`` and ``${VAR:-default}`` in any string value are taken from the environment.
Unknown keys are a startup error, so that a typo never silently falls back to a default.

A provider's ``kind`` is checked against the kinds ``load_config`` is given
(``batchway.providers.registry.KINDS``): this module is imported by every layer, so it must not
import the providers, which import it. Each kind also checks its entries (a base_url it
needs). A config built with ``Config.model_validate`` alone is not checked for kinds; the
registry checks each entry again as it builds the providers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from batchway.errors import ConfigError

__all__ = [
    "AzureDialectConfig",
    "BatchLimits",
    "Config",
    "ConsoleConfig",
    "DatabasePoolConfig",
    "FileExpiryConfig",
    "KindCheck",
    "LogConfig",
    "ModelRoute",
    "NATIVE_BATCH_DISCOUNT",
    "PriceConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "S3Config",
    "WorkerConfig",
    "default_config",
    "load_config",
]

BatchMode = Literal["native", "execute", "auto"]

# Azure's rule for a deployment name: letters, digits, '-', '_' and '.', at most 64
_DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_KINDS = "provider_kinds"  # the validation context's key for the kinds a config may name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KindCheck(Protocol):
    """What loading a config needs of a provider kind (``batchway.providers.kind``)."""

    def check(self, config: ProviderConfig) -> ProviderConfig:
        """The entry as the kind's provider takes it; ValueError says what it lacks."""
        ...


def _kinds(info: ValidationInfo) -> Mapping[str, KindCheck] | None:
    kinds: Mapping[str, KindCheck] | None = (info.context or {}).get(_KINDS)
    return kinds


def _one_of(names: list[str]) -> str:
    """``'a', 'b' or 'c'``, as pydantic words the values a field allows."""
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class ProviderConfig(_Frozen):
    """One upstream provider."""

    kind: str  # one of the kinds load_config is given
    base_url: str | None = None
    api_key: str | None = None
    max_concurrency: int = Field(default=256, ge=1, le=10_000)
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
    # azure only: the resource name (its endpoint is the base_url when none is given), and
    # the REST API version of the classic (dated) API
    resource: str | None = None
    api_version: str = "2024-10-21"
    # anthropic only: the API version header, and max_tokens for chat requests without one
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(default=4096, ge=1)
    # openai-compatible only: pass Messages fields OpenAI lacks (top_k…) through, as vLLM takes
    allow_extensions: bool = False
    # simulated only: how long a fake answer takes
    latency_ms: float = Field(default=20.0, ge=0)

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kinds = _kinds(info)
        if kinds is not None and not (isinstance(value, str) and value in kinds):
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": _one_of(list(kinds))}
            )
        return value

    @model_validator(mode="after")
    def _check_kind(self, info: ValidationInfo) -> ProviderConfig:
        kinds = _kinds(info)
        return kinds[self.kind].check(self) if kinds is not None else self

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
    # an idle worker looks for work after idle_poll_seconds, then twice as long after each
    # look that found none, up to idle_poll_max_seconds (or idle_poll_seconds if larger);
    # wake-ups (a batch created here, a PostgreSQL NOTIFY) end a wait at once
    idle_poll_seconds: float = Field(default=0.25, gt=0)
    idle_poll_max_seconds: float = Field(default=5.0, gt=0)
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


class DatabasePoolConfig(_Frozen):
    """Connections one process keeps to PostgreSQL (SQLite needs no pool). Every process of
    a cluster opens up to ``size + max_overflow``: keep their sum under the server's
    ``max_connections`` (100 by default)."""

    size: int = Field(default=5, ge=1, le=1000)
    max_overflow: int = Field(default=10, ge=0, le=1000)
    timeout_seconds: float = Field(default=30.0, gt=0)  # waiting for a free connection


class S3Config(_Frozen):
    """Object storage for ``files: s3://bucket/prefix``: AWS S3 or any S3-compatible server
    (MinIO, R2, Ceph). Credentials left out are read from the standard ``AWS_*`` variables."""

    endpoint_url: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    virtual_hosted_style: bool = False  # bucket.host/key instead of host/bucket/key
    # uploads are sent in parts of this size (S3: at least 5 MiB); one part per writer
    # is held in memory at a time
    part_size: int = Field(default=8 << 20, ge=5 << 20, le=5 << 30)
    max_retries: int = Field(default=5, ge=0, le=50)  # per request, with backoff
    timeout_seconds: float = Field(default=60.0, gt=0)  # per request


class RateLimitConfig(_Frozen):
    """Where rate-limit windows are counted: in this process, or in Redis (shared by every
    gateway process that uses the same Redis and prefix)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "batchway"
    redis_timeout_seconds: float = Field(default=5.0, gt=0, le=300)  # each Redis command
    # with redis: a provider's max_concurrency holds across every process together, batch
    # lines and synchronous calls (batch lines: at most 1 - interactive_share of it); a
    # process that stops renewing its share (killed) loses it after concurrency_lease_seconds
    shared_concurrency: bool = True
    concurrency_lease_seconds: float = Field(default=10.0, gt=0, le=3600)
    # calls a process keeps room for beyond its synchronous calls in flight (and a quarter
    # more of those), so that a new call seldom waits for the shared pool
    concurrency_headroom: int = Field(default=4, ge=0, le=10_000)


NATIVE_BATCH_DISCOUNT = 0.5  # what OpenAI's, Azure's and Anthropic's batch APIs take off


class PriceConfig(_Frozen):
    """A model's price in USD per million tokens, and its batch price.

    Configured (``batch_discount``, or ``batch_input``/``batch_output``), the batch price
    applies to every batch line of the model however it runs, natively or executed by the
    gateway. Not configured, lines that ran through a provider's native batch API get the
    provider's discount (``NATIVE_BATCH_DISCOUNT``) and lines the gateway executed none."""

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)
    cached_input: float | None = Field(default=None, ge=0)  # default: the input price
    batch_discount: float | None = Field(default=None, ge=0, le=1)
    batch_input: float | None = Field(default=None, ge=0)
    batch_output: float | None = Field(default=None, ge=0)

    @property
    def own_batch_price(self) -> bool:
        """Whether the config sets this model's batch price (it then applies to every
        batch line, native or executed)."""
        return any(
            v is not None for v in (self.batch_discount, self.batch_input, self.batch_output)
        )


class LogConfig(_Frozen):
    """Request logs: one row per upstream call outcome."""

    record_bodies: bool = False  # keep request and response bodies (prompts!) in the logs
    retention_days: float | None = Field(default=30.0, gt=0)  # None: keep forever
    flush_interval_seconds: float = Field(default=0.25, gt=0)
    # the share of successful synchronous calls that get a log row (0: none; failures are
    # always logged, batch lines always); every call still counts in usage, spend and budgets
    sync_sample_rate: float = Field(default=1.0, ge=0, le=1)


class ConsoleConfig(_Frozen):
    """The web console at ``/console``."""

    enabled: bool = True
    # signs session cookies; shared by every replica behind one address. None: derived from
    # the admin key when there is one (sessions then end when it changes), else random per
    # process (sessions end on restart)
    session_secret: str | None = Field(default=None, min_length=16)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    page_size: int = Field(default=50, ge=10, le=200)  # rows per page of a listing
    refresh_seconds: float = Field(default=2.0, ge=0.5)  # a running batch's page updates


class AzureDialectConfig(_Frozen):
    """The Azure OpenAI dialect the gateway serves to its clients (``/openai/…``); the
    upstream kind ``azure`` is configured under ``providers``."""

    # deployment name → public model name; a name not listed is the deployment of the public
    # model of that name
    deployments: dict[str, str] = Field(default_factory=dict)

    @field_validator("deployments")
    @classmethod
    def _deployment_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _DEPLOYMENT_NAME.fullmatch(name):
                raise ValueError(
                    f"deployment name {name!r} must be 1 to 64 letters, digits, '-', '_' or '.'"
                )
        return value


class Config(_Frozen):
    """The whole gateway configuration."""

    database: str = "sqlite:///batchway-data/batchway.db"
    database_pool: DatabasePoolConfig = Field(default_factory=DatabasePoolConfig)
    files: str = "batchway-data/files"  # a local folder, or s3://bucket/prefix
    s3: S3Config = Field(default_factory=S3Config)
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
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    azure: AzureDialectConfig = Field(default_factory=AzureDialectConfig)

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
        for deployment, model in self.azure.deployments.items():
            if model not in self.models:
                raise ValueError(f"azure deployment {deployment!r} names unknown model {model!r}")
            # a public model's own name always names it, in every dialect
            if deployment in self.models and deployment != model:
                raise ValueError(
                    f"azure deployment {deployment!r} is the name of another public model"
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


def _validate(data: Any, source: str, kinds: Mapping[str, KindCheck] | None = None) -> Config:
    try:
        return Config.model_validate(data, context={_KINDS: kinds})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid config {source}: {problems}") from exc


def load_config(path: str | Path, *, kinds: Mapping[str, KindCheck]) -> Config:
    """Read and validate a YAML config file, expanding ``${VAR}`` references; each provider's
    ``kind`` must be one of ``kinds`` (``batchway.providers.registry.KINDS``), which checks it."""
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
    return _validate(_relative_to(path.parent, _expand_tree(data)), str(path), kinds)


_SQLITE = "sqlite:///"


def _relative_to(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The config with its relative paths (a SQLite file, the files folder; the defaults
    too) taken from the config file's folder, not from wherever the command runs."""
    fields = Config.model_fields
    database = data.get("database", fields["database"].default)
    files = data.get("files", fields["files"].default)
    resolved = dict(data)
    if isinstance(database, str) and database.startswith(_SQLITE):
        local = database[len(_SQLITE) :]
        if local and not local.startswith((":memory:", "/", "file:")):
            resolved["database"] = _SQLITE + str((folder / local).resolve())
    if isinstance(files, str) and "://" not in files and not Path(files).is_absolute():
        resolved["files"] = str((folder / files).resolve())
    return resolved


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
