"""Domain objects: frozen dataclasses that know nothing of wire formats or tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from batchway.core.states import BatchStatus, ItemState

T = TypeVar("T")

BudgetPeriod = Literal["day", "month"]
RequestKind = Literal["batch", "interactive"]

__all__ = [
    "ApiKey",
    "Batch",
    "BatchError",
    "BatchItem",
    "BudgetPeriod",
    "ItemOutcome",
    "NewItem",
    "Page",
    "Principal",
    "RequestKind",
    "RequestLog",
    "RequestCounts",
    "StorageUse",
    "StoredFile",
    "Usage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: a gateway key as the request path sees it (never the key itself)."""

    key_id: str
    name: str
    models: frozenset[str] | None = None  # None: every configured model
    is_admin: bool = False
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute
    tph: int | None = None  # tokens per hour
    rph: int | None = None  # requests per hour
    budget_usd: float | None = None
    budget_period: BudgetPeriod | None = None  # None: the budget never resets
    max_storage_bytes: int | None = None  # None: the config's limit
    max_files: int | None = None  # None: the config's limit

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.rpm, self.rph, self.tpm, self.tph))

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A stored gateway key (its hash only)."""

    id: str
    name: str
    key_hash: str
    created_at: int
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    revoked: bool = False
    tph: int | None = None
    budget_period: BudgetPeriod | None = None
    max_storage_bytes: int | None = None
    max_files: int | None = None
    rph: int | None = None

    def principal(self) -> Principal:
        return Principal(
            key_id=self.id,
            name=self.name,
            models=frozenset(self.models) if self.models is not None else None,
            rpm=self.rpm,
            tpm=self.tpm,
            tph=self.tph,
            rph=self.rph,
            budget_usd=self.budget_usd,
            budget_period=self.budget_period,
            max_storage_bytes=self.max_storage_bytes,
            max_files=self.max_files,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageUse:
    """What a key's live files take: their bytes and how many there are."""

    bytes: int = 0
    files: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """A file a key uploaded, or a batch's output or error file."""

    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None = None
    status: str = "processed"


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchError:
    """One problem found in a batch's input file (``line`` is 1-based)."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCounts:
    """How many lines are in each state; ``processing`` covers pending and leased."""

    total: int = 0
    processing: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0

    @property
    def unsuccessful(self) -> int:
        """Every line that went (or will go) to the error file."""
        return self.failed + self.cancelled + self.expired


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token totals of a batch's successful lines."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A batch: its input, where it is in its life, and its results."""

    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: int
    expires_at: int
    model: str | None = None
    metadata: dict[str, str] | None = None
    output_expires_after: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[BatchError, ...] = ()
    counts: RequestCounts = field(default_factory=RequestCounts)
    usage: Usage = field(default_factory=Usage)
    # the wire shape the batch's own routes answer in, named by the route that created it
    # (the core never reads it); None: each route answers in its own dialect
    shape: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """A validated input line, ready to be stored."""

    line: int
    custom_id: str
    model: str
    provider: str
    body: bytes  # the line's body as sent, model already rewritten to the upstream name


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchItem:
    """A stored line a worker has leased."""

    id: str
    batch_id: str
    line: int
    custom_id: str
    provider: str
    endpoint: str
    body: bytes
    attempts: int
    model: str = ""  # the public model name
    owner: str = ""  # the key whose batch it is


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """What became of one leased line; the worker records these in bulk."""

    item_id: str
    state: ItemState
    status_code: int | None = None
    response: bytes | None = None  # the upstream body (JSON) when there was one
    request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    not_before: float | None = None  # for a retry: when it may run again
    usage: Usage = field(default_factory=Usage)
    latency_ms: float | None = None  # how long the upstream call took
    native: bool = False  # it ran in the provider's native batch API (at its batch price)


@dataclass(frozen=True, slots=True, kw_only=True)
class LineRecord:
    """An outcome as the store writes it: priced, with its request-log row when the line
    went upstream (or was refused), so that storing it is all that is left to do."""

    outcome: ItemOutcome
    batch_id: str
    cost_usd: float = 0.0
    log: RequestLog | None = None

    @property
    def item_id(self) -> int:
        return int(self.outcome.item_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a cursor-paginated listing."""

    items: list[T]
    has_more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestLog:
    """One upstream call outcome: a synchronous request, or a batch line that finished.

    Never holds a key; holds bodies only when the config asks for them.
    """

    created_at_ms: int  # when it finished
    kind: RequestKind
    key_id: str
    model: str  # the public model name
    provider: str
    endpoint: str
    status: str  # "succeeded", "failed", "budget_exceeded", "rate_limited"…
    upstream_model: str | None = None
    batch_id: str | None = None
    custom_id: str | None = None
    item_id: int | None = None
    status_code: int | None = None
    error_code: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float | None = None
    cost_usd: float = 0.0
    retries: int = 0
    request_id: str | None = None
    request_body: bytes | None = None
    response_body: bytes | None = None
    id: int | None = None  # set once stored


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemResult:
    """A finished line as its result file (or results stream) shows it."""

    id: int
    line: int
    custom_id: str
    state: ItemState
    status_code: int | None = None
    response: bytes | None = None
    request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamBatchRow:
    """What the gateway knows of one batch submitted upstream."""

    id: str
    provider: str
    endpoint: str
    model: str
    state: str  # preparing, submitted, collected
    lines: int
    upstream_file_id: str | None
    upstream_batch_id: str | None
    poll_interval: float
    failures: int

    @property
    def owner(self) -> str:
        """The lease owner of its lines."""
        return f"native:{self.id}"
