"""Every seam between the domain and the outside world, in one place, pointing inward.

``core`` depends on these Protocols only; ``store`` (SQL, Redis, disk), ``providers`` and
the in-memory fakes in ``batchway.testing.memory`` implement them, and the contract tests in
``tests/contract`` hold every implementation of a port to the same behaviour.

- stores: `KeyStore`, `FileStore`, `BatchStore`, `LineStore`, `UpstreamBatchStore`, and
  `Store` (all of them over one database, as ``SqlStore`` is);
- `BlobStore` / `BlobWriter`: file contents;
- `RequestLogs`: the request log, analytics and spend;
- `RateLimiter`: rolling-window counters;
- `Provider` (with `UpstreamResponse`) and `NativeBatchAPI` (with `NativeStatus`): upstreams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from batchway.core.analytics import LogFilter, UsageQuery, UsageReport
from batchway.core.endpoints import Endpoint
from batchway.core.listings import BatchFigures, BatchFilter, LineFilter, LineView
from batchway.core.models import (
    ApiKey,
    Batch,
    BatchItem,
    ItemOutcome,
    ItemResult,
    LineRecord,
    NewItem,
    Page,
    Principal,
    RequestCounts,
    RequestLog,
    StorageUse,
    StoredFile,
    UpstreamBatchRow,
    Usage,
)
from batchway.core.ratelimit import Decision, Limit, Ticket
from batchway.core.states import BatchStatus, ItemState

__all__ = [
    "BatchStore",
    "BlobStore",
    "BlobWriter",
    "ConcurrencyPool",
    "FileStore",
    "HolderKind",
    "KeyStore",
    "LineAccounting",
    "LineBudgets",
    "LinePricing",
    "LineStore",
    "NativeBatchAPI",
    "NativeStatus",
    "PrincipalLookup",
    "Provider",
    "Providers",
    "RateLimiter",
    "RequestLogs",
    "Store",
    "UpstreamBatchStore",
    "UpstreamResponse",
    "Wakeups",
]


# -- stores ---------------------------------------------------------------------------------


class KeyStore(Protocol):
    """Gateway keys, found by the hash of the key."""

    async def create_key(self, key: ApiKey) -> None: ...
    async def key_by_hash(self, key_hash: str) -> ApiKey | None: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def list_keys(self) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str) -> bool: ...
    async def update_key(self, key_id: str, changes: dict[str, Any]) -> ApiKey | None:
        """Set these columns of a key (a None value clears a limit); the key as it is now,
        or None if there is no such key."""
        ...


class FileStore(Protocol):
    """File records (their bytes live in a ``BlobStore``), within each owner's storage quota."""

    async def create_file(self, file: StoredFile, blob_key: str) -> None: ...
    async def get_file(self, owner: str | None, file_id: str, now: int) -> StoredFile | None: ...
    async def file_blob_key(self, file_id: str) -> str | None: ...
    async def list_files(
        self,
        owner: str,
        now: int,
        *,
        purpose: str | None,
        limit: int,
        after: str | None,
        ascending: bool,
    ) -> Page[StoredFile]: ...
    async def delete_file(self, owner: str, file_id: str, now: int) -> str | None:
        """Delete a file's row; returns its blob key (None if there was no such file)."""
        ...

    async def storage_use(self, owner: str, now: int) -> StorageUse:
        """What the live files of ``owner`` take at ``now``."""
        ...

    async def create_file_within(
        self,
        file: StoredFile,
        blob_key: str,
        *,
        now: int,
        max_bytes: int | None,
        max_files: int | None,
    ) -> StorageUse | None:
        """Insert ``file`` if its owner's live files still fit within ``max_bytes`` and
        ``max_files`` with it (None: no such limit). Returns None once inserted, or what the
        owner's files take when it did not fit (nothing is inserted then)."""
        ...

    async def expired_files(self, now: int, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` files expired at ``now``, oldest expiry first: (id, blob key)."""
        ...

    async def forget_expired_files(self, file_ids: list[str], now: int) -> int:
        """Delete the rows of these files if they are expired at ``now``; returns how many."""
        ...


class BatchStore(Protocol):
    """Batches: as clients see them, and as they move through their lifecycle."""

    async def create_batch(self, batch: Batch) -> bool:
        """Insert a batch unless its key is revoked (False then, and nothing is inserted).

        The key's row stays share-locked until the insert commits, so a revocation either
        comes first and is seen here, or waits and then finds this batch to cancel."""
        ...

    async def unfinished_batches(self, owner: str) -> list[str]:
        """The ids of the batches of ``owner`` that have not ended, oldest first."""
        ...

    async def get_batch(self, owner: str | None, batch_id: str) -> Batch | None: ...
    async def list_batches(
        self, owner: str, *, limit: int, after: str | None, before: str | None = None
    ) -> Page[Batch]:
        """A key's batches, newest first; ``after`` pages to older ones, ``before`` to newer
        ones (``has_more`` then tells whether there are newer still)."""
        ...

    async def find_batches(
        self, filters: BatchFilter, *, limit: int, after: str | None
    ) -> Page[Batch]:
        """Batches of every key matching ``filters``, newest first; ``after`` (the last id of
        the previous page) pages to older ones. Served from indexes, on any number of rows."""
        ...

    async def cancel_batch(self, batch_id: str, *, expected: BatchStatus, now: int) -> bool:
        """Start cancelling: lines that have not started are cancelled at once."""
        ...

    async def delete_batch(self, batch_id: str) -> list[str]:
        """Delete a batch with its lines and result files; returns the blobs to delete."""
        ...

    async def set_batch_status(
        self,
        batch_id: str,
        *,
        expected: Iterable[BatchStatus],
        status: BatchStatus,
        **values: Any,
    ) -> bool:
        """Move a batch to ``status`` if it is still in one of ``expected`` (compare-and-set)."""
        ...

    async def expire_batch(self, batch_id: str, now: int) -> bool:
        """The completion window ended: lines that have not started expire."""
        ...

    async def claim_batch(self, batch_id: str, worker: str, now: float, lease: float) -> bool:
        """Take a batch for validation or finalization, unless another worker holds it."""
        ...

    async def batches_needing_work(self, now: int) -> list[tuple[str, BatchStatus]]:
        """Batches a worker should validate, expire or finalize."""
        ...

    async def end_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        lines: ItemState | None,
        values: dict[str, Any],
    ) -> bool:
        """End a batch at once, without result files (a worker gave up on it): its
        unfinished lines end as ``lines`` (or are removed, when None), its counts are
        taken from its lines, and ``values`` (timestamps, errors) are written with it."""
        ...

    async def finish_as(self, batch_id: str) -> BatchStatus | None: ...
    async def finish_batch(
        self,
        batch_id: str,
        *,
        expected: BatchStatus,
        status: BatchStatus,
        now: int,
        outputs: Sequence[tuple[StoredFile, str]],
        counts: RequestCounts,
        usage: Usage,
        values: dict[str, Any],
    ) -> bool:
        """Record a batch's result files, final counts and terminal status in one go."""
        ...


class LineStore(Protocol):
    """A batch's lines: stored at validation, leased by workers, their results recorded."""

    async def clear_items(self, batch_id: str) -> None: ...
    async def insert_items(
        self, batch_id: str, items: Sequence[NewItem], native_providers: Iterable[str] = ()
    ) -> None:
        """Store validated lines; lines of ``native_providers`` may go to their native batch API."""
        ...

    async def claim_items(
        self,
        worker: str,
        provider: str,
        limit: int,
        now: float,
        lease: float,
        *,
        execute: bool = True,
        model: str | None = None,
        endpoint: str | None = None,
    ) -> list[BatchItem]:
        """Lease up to ``limit`` runnable lines for ``provider``; counts the attempt.

        ``execute`` picks lines the gateway runs itself (True) or lines bound for the
        provider's native batch API (False), optionally of one ``model`` and ``endpoint``."""
        ...

    async def extend_leases(self, worker: str, until: float) -> None: ...
    async def release_expired_leases(self, now: float, max_attempts: int | None = None) -> int:
        """Give back the lines of workers that stopped renewing their leases.

        A line that has already been claimed ``max_attempts`` times fails instead
        (``worker_lost``): a line that takes its worker down with it must not do so forever."""
        ...

    async def release_worker(self, worker: str, unstarted: Iterable[str] = ()) -> int:
        """A worker stopping cleanly hands back what it holds at once, rather than letting
        its leases run out: the lines it had claimed, and the batches it was working on.
        Lines in ``unstarted`` were claimed but never sent: their attempt is taken back."""
        ...

    async def fail_unrecorded(self, worker: str, item_id: str, reason: str, now: float) -> bool:
        """Fail a held line whose result the database would not take (no log, no price)."""
        ...

    async def record_outcomes(
        self, worker: str, records: Sequence[LineRecord], now: float
    ) -> list[LineRecord]:
        """Write what became of leased lines, with their prices and request-log rows, in
        one transaction.

        A line is only written while this worker still holds its lease, so a worker that
        lost a lease can never overwrite (or double count, or double bill) another's result.
        Returns the records written."""
        ...

    async def leased_items(
        self, worker: str, item_ids: Sequence[str], *, bodies: bool
    ) -> dict[str, BatchItem]:
        """The lines of ``item_ids`` that ``worker`` holds, as claimed (request bodies only
        when asked for: they can be large)."""
        ...

    async def line_counts(self) -> dict[str, int]:
        """How many batch lines are in each state, over every batch (for metrics)."""
        ...

    async def stopped_batches(self, batch_ids: Iterable[str]) -> dict[str, ItemState]:
        """Of these batches, those whose unstarted lines must not run now, and how those
        lines end (cancelled, or expired)."""
        ...

    async def has_items(self, batch_id: str) -> bool: ...
    async def has_active_items(self, batch_id: str) -> bool: ...
    async def has_work(self) -> bool:
        """Is any batch still doing something (for drain mode)?"""
        ...

    async def next_retry_at(self, now: float) -> float | None:
        """When the earliest line now waiting for a retry may run."""
        ...

    async def item_summary(self, batch_id: str) -> tuple[RequestCounts, Usage]:
        """Final counts and token usage of a batch, from its lines."""
        ...

    async def settle_unfinished(self, batch_id: str, state: ItemState, now: float) -> None:
        """Lines of an ending batch that never started end as ``state`` (cancelled/expired)."""
        ...

    async def batch_figures(self, batch_ids: Sequence[str]) -> dict[str, BatchFigures]:
        """What the lines of each of these batches add up to so far (one query for all);
        a batch without lines is left out."""
        ...

    async def list_lines(
        self, batch_id: str, filters: LineFilter, *, limit: int, after_line: int | None
    ) -> Page[LineView]:
        """A batch's lines in input order from just after ``after_line``."""
        ...

    def item_results(self, batch_id: str) -> AsyncIterator[ItemResult]:
        """Every finished line of a batch in input order, a page at a time."""
        ...

    async def healthy(self) -> bool:
        """Can the database be reached at all? (Tells a bad row from a database outage.)"""
        ...


class UpstreamBatchStore(Protocol):
    """Batches submitted to providers' own batch APIs, and the lines they carry."""

    async def groups_waiting(self, provider: str, now: float) -> list[tuple[str, str]]:
        """(endpoint, model) of lines of ``provider`` waiting for a native batch."""
        ...

    async def create(
        self, upstream_id: str, *, provider: str, endpoint: str, model: str, now: float, poll: float
    ) -> None: ...
    async def claim_lines(
        self, row: UpstreamBatchRow, limit: int, max_bytes: int, now: float
    ) -> list[BatchItem]:
        """Claim up to ``limit`` lines, and no more than ``max_bytes`` of them, for ``row``
        (deleted again when there is nothing to claim)."""
        ...

    async def lines(self, row: UpstreamBatchRow) -> list[BatchItem]:
        """The lines an upstream batch carries (to write its input file again)."""
        ...

    async def update(self, upstream_id: str, **values: Any) -> None: ...
    async def due(self, worker: str, now: float, lease: float) -> list[UpstreamBatchRow]:
        """Upstream batches to prepare or poll now, leased to ``worker``."""
        ...

    async def next_due(self) -> float | None: ...
    async def stopping_batches(self, row: UpstreamBatchRow) -> set[str]:
        """Client batches with lines in ``row`` that are being cancelled."""
        ...

    async def carries_only(self, row: UpstreamBatchRow, batch_ids: set[str]) -> bool:
        """Are all the still-leased lines of ``row`` from ``batch_ids``?"""
        ...

    async def release(self, row: UpstreamBatchRow, *, execute: bool, now: float) -> None:
        """Hand the still-leased lines back (to run them as calls, when ``execute``)."""
        ...

    async def batch_states(self, item_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """For items: the status of their client batch and how it finishes."""
        ...


class Store(KeyStore, FileStore, BatchStore, LineStore, Protocol):
    """Every store over one database (what the gateway and the worker are given)."""


# -- file contents --------------------------------------------------------------------------


class BlobWriter(Protocol):
    """An open blob being written."""

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> int:
        """Make the blob visible under its key; returns its size in bytes."""
        ...

    async def abort(self) -> None:
        """Throw away what was written."""
        ...


class BlobStore(Protocol):
    """Where file contents live."""

    def writer(self, key: str) -> BlobWriter: ...

    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes, a chunk at a time."""
        ...

    async def delete(self, key: str) -> None: ...


# -- request logs and counters ------------------------------------------------------------


class RequestLogs(Protocol):
    """The request log: one row per upstream call, read back for analytics and budgets."""

    async def insert(
        self, logs: Sequence[RequestLog], *, usage_only: Sequence[RequestLog] = ()
    ) -> None:
        """Store ``logs`` in one statement (their ``id`` is ignored: the database assigns it),
        and add them and ``usage_only`` (calls that keep no log row) to their hours' usage."""
        ...

    async def query(
        self,
        filters: LogFilter,
        *,
        limit: int,
        before_id: int | None,
        bodies: bool = True,
    ) -> Page[RequestLog]:
        """Logs matching ``filters``, newest first; ``before_id`` (the last id of the previous
        page) pages to older ones. ``bodies=False`` leaves the bodies unread."""
        ...

    async def get(self, log_id: int) -> RequestLog | None:
        """One log with its bodies (where they were kept)."""
        ...

    async def for_items(self, item_ids: Sequence[str]) -> dict[str, RequestLog]:
        """The logs of these batch lines, by line id (bodies left unread)."""
        ...

    async def usage(self, query: UsageQuery) -> UsageReport:
        """Calls, tokens, cost and errors per time bucket, kind of call and (optionally) key,
        model or provider, oldest bucket first."""
        ...

    async def spent(self, key_id: str, since_ms: int | None) -> float:
        """What ``key_id`` has cost since ``since_ms`` (epoch ms), or ever when None."""
        ...

    async def spent_by_key(self, since_ms: int | None) -> dict[str, float]:
        """What every key that spent anything has cost since ``since_ms``, or ever."""
        ...

    async def delete_older_than(self, cutoff_ms: int, *, chunk: int = ...) -> int:
        """Delete the logs from before ``cutoff_ms``, ``chunk`` rows per transaction; returns
        how many went."""
        ...


class RateLimiter(Protocol):
    """Rolling-window counters, shared by everything that charges the same subject."""

    async def acquire(
        self, subject: str, charges: Sequence[tuple[Limit, int]], *, share: float = 1.0
    ) -> Decision:
        """Charge every ``(limit, amount)`` of ``subject``, or none of them.

        ``subject`` names whose windows these are (``key:key_abc``, ``provider:openai``); each
        ``(subject, unit, seconds)`` is one window. A charge with ``share`` below 1 may only
        fill a window up to ``floor(limit * share)``. A charge larger than that passes when its
        window is empty, so that it is not held back forever. Raises ``ValueError`` for a
        ``share`` outside ``(0, 1]`` or a negative amount.
        """
        ...

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """The call really used ``tokens``: correct every ``tokens`` charge of the ticket in
        the bucket it was charged in (which may go negative). Buckets that already left their
        window are not touched."""
        ...

    async def close(self) -> None: ...


HolderKind = Literal["batch", "interactive"]


class ConcurrencyPool(Protocol):
    """Concurrency limits shared by processes: each *holder* (a process's part of a pool)
    renews its grant; see ``batchway.core.concurrency`` for the rule every pool applies."""

    async def renew(
        self,
        pool: str,
        holder: str,
        *,
        want: int,
        busy: int,
        limit: int,
        ttl_seconds: float,
        kind: HolderKind = "interactive",
        cap: int | None = None,
        spare: int = 0,
    ) -> int:
        """Record that ``holder`` wants ``want`` calls and has ``busy`` in flight; return
        how many it may have in flight now. ``want == busy == spare == 0`` hands everything back.
        Batch holders together hold at most ``cap`` and make way for interactive ones;
        an interactive holder may get up to ``spare`` more out of ``limit - cap``."""
        ...

    async def holders(self, pool: str) -> dict[str, int]:
        """What each live holder of ``pool`` holds (``max(grant, busy)``)."""
        ...

    async def close(self) -> None: ...


class Wakeups(Protocol):
    """Word between processes that batch work is waiting (a batch was created, validated
    or cancelled; lines were handed back), so that idle workers look at once instead of at
    their next poll. Polling stays: a lost word only costs a poll interval."""

    def announce(self) -> None:
        """Tell every listener, in this process and others; never blocks or raises."""
        ...

    async def listen(self, on_wake: Callable[[], None]) -> None:
        """Call ``on_wake`` on each announcement until cancelled."""
        ...

    async def close(self) -> None: ...


class LineBudgets(Protocol):
    """Whether the key that owns a batch has used up its budget."""

    async def exhausted(self, key_id: str) -> bool: ...
    def spend(self, key_id: str, model: str, provider: str, usage: Usage) -> None: ...


class PrincipalLookup(Protocol):
    """A key's principal by its id (what budgets need to know of a key)."""

    async def principal_by_id(self, key_id: str) -> Principal | None: ...


class LinePricing(Protocol):
    """What prices a line; ``Accounting`` is one."""

    record_bodies: bool

    def price(
        self, model: str, provider: str, usage: Usage, native: bool
    ) -> tuple[float, str | None]:
        """The cost of a line in USD, and the upstream model it ran on."""
        ...


class LineAccounting(LinePricing, Protocol):
    """Prices lines, and hears of the request logs once they are committed."""

    def logged(self, logs: Sequence[RequestLog]) -> None:
        """Called once the logs are committed (for metrics)."""
        ...


# -- upstreams -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamResponse:
    """A successful (2xx) upstream answer, body untouched."""

    status: int
    body: bytes
    request_id: str | None = None


class Provider(Protocol):
    """An upstream that can run one request of an OpenAI-style endpoint.

    ``send`` returns only 2xx answers; every failure is raised as an
    ``UpstreamError`` subclass carrying the upstream status and body when there was one.
    """

    name: str
    max_concurrency: int
    # the provider's own batch API, when batches may use it (None: lines run as calls)
    native: NativeBatchAPI | None

    async def send(self, endpoint: str, body: bytes) -> UpstreamResponse:
        """POST ``body`` (JSON bytes) to ``endpoint`` (e.g. ``/v1/chat/completions``)."""
        ...

    def stream(self, endpoint: str, body: bytes) -> AsyncIterator[bytes]:
        """Run a streaming request; yields Server-Sent Events in the endpoint's dialect.

        An upstream that refuses the request raises ``UpstreamError`` before the first
        chunk, so the caller can still answer with an error status.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Providers(Protocol):
    """The configured providers, by name."""

    def __getitem__(self, name: str) -> Provider: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class NativeStatus:
    """An upstream batch as last seen."""

    id: str
    status: str
    terminal: bool
    cancelling: bool
    # the batch failed as a whole, with no results (e.g. a quota refused at validation)
    failure: str | None = None
    raw: Any = None


class NativeBatchAPI(Protocol):
    """What native batch mode needs of a provider's batch API."""

    endpoints: frozenset[Endpoint]
    max_lines: int
    max_bytes: int
    fallback: bool  # run lines as calls when the provider refuses a batch
    poll_seconds: tuple[float, float]
    can_find: bool  # can an upstream batch be found again by our reference

    async def prepare(
        self, ref: str, endpoint: str, lines: list[BatchItem]
    ) -> tuple[str | None, list[ItemOutcome]]:
        """Upload what the batch needs (if anything); returns an upstream file id and the
        failures of lines that cannot be sent."""
        ...

    async def create(
        self, ref: str, endpoint: str, file_id: str | None, lines: list[BatchItem]
    ) -> NativeStatus: ...

    async def find(self, ref: str) -> NativeStatus | None: ...

    async def retrieve(self, upstream_id: str) -> NativeStatus: ...

    async def cancel(self, upstream_id: str) -> NativeStatus: ...

    def results(self, status: NativeStatus, endpoint: str) -> AsyncIterator[ItemOutcome]:
        """The outcomes of the lines the upstream ran (never-run lines are left out)."""
        ...
