"""The SQL schema, in SQLAlchemy Core. Alembic migrations must match it (a test checks)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    true,
)

__all__ = [
    "api_keys",
    "batch_items",
    "batches",
    "files",
    "metadata",
    "request_logs",
    "upstream_batches",
    "usage_hourly",
]

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("models", JSON, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("tph", Integer, nullable=True),
    Column("budget_period", String(16), nullable=True),  # None: the budget never resets
    # the key's own storage quota; NULL: the config's limits.max_*_per_key
    Column("max_storage_bytes", BigInteger, nullable=True),
    Column("max_files", Integer, nullable=True),
    Column("rph", Integer, nullable=True),  # requests per rolling hour
)

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(40), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("status", String(20), nullable=False),
    Column("blob_key", Text, nullable=False),
    # orders listings: created_at has whole seconds only
    Column("sort_key", BigInteger, nullable=False),
    Index("ix_files_owner_sort", "owner", "sort_key"),
    Index("ix_files_expires_at", "expires_at"),  # the expiry sweep
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("model", Text, nullable=True),
    Column("metadata", JSON, nullable=True),
    Column("output_expires_after", Integer, nullable=True),
    Column("in_progress_at", BigInteger, nullable=True),
    Column("finalizing_at", BigInteger, nullable=True),
    Column("completed_at", BigInteger, nullable=True),
    Column("failed_at", BigInteger, nullable=True),
    Column("expired_at", BigInteger, nullable=True),
    Column("cancelling_at", BigInteger, nullable=True),
    Column("cancelled_at", BigInteger, nullable=True),
    Column("output_file_id", String(64), nullable=True),
    Column("error_file_id", String(64), nullable=True),
    Column("errors", JSON, nullable=True),
    # which terminal status the finalizer moves a ``finalizing`` batch to
    Column("finish_as", String(20), nullable=True),
    # a worker validating or finalizing the batch holds it under a lease
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    # what its lines add up to, kept up to date as they change (store/figures.py) and
    # written again when it ends; the counts of a running batch's API object come from
    # its lines
    Column("total", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("cancelled", Integer, nullable=False, default=0),
    Column("expired", Integer, nullable=False, default=0),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("reasoning_tokens", BigInteger, nullable=False, default=0),
    Column("sort_key", BigInteger, nullable=False),
    # the wire shape the batch's own routes answer in (Batch.shape); NULL for most batches
    Column("shape", String(32), nullable=True),
    # so that listings never add up a batch's lines: what they cost, and the models and
    # providers they go to (NULL until it has lines)
    Column("cost_usd", Float, nullable=False, default=0.0, server_default="0"),
    Column("models", JSON, nullable=True),
    Column("providers", JSON, nullable=True),
    Index("ix_batches_owner_sort", "owner", "sort_key"),
    # the workers' status scans, and a status's batches in listing order (the console)
    Index("ix_batches_status_sort", "status", "sort_key"),
)

batch_items = Table(
    "batch_items",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("batch_id", String(64), nullable=False),
    Column("line", Integer, nullable=False),
    Column("custom_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("provider", String(100), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("response", LargeBinary, nullable=True),
    Column("request_id", String(100), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("reasoning_tokens", Integer, nullable=False, default=0),
    Column("finished_at", Float, nullable=True),
    # False while the line may still go to its provider's native batch API
    Column("execute_only", Boolean, nullable=False, default=True, server_default=true()),
    Column("upstream_batch_id", String(64), nullable=True),
    Column("cost_usd", Float, nullable=False, default=0.0, server_default="0"),
    Index("ux_batch_items_batch_line", "batch_id", "line", unique=True),
    Index("ix_batch_items_claim", "state", "provider", "not_before"),
    # a batch's lines per state (live counts), and in input order (the console's pages)
    Index("ix_batch_items_batch_state_line", "batch_id", "state", "line"),
    # is there a line of this model in the batch? (the console's batches of a model)
    Index("ix_batch_items_batch_model", "batch_id", "model"),
    Index("ix_batch_items_lease", "state", "lease_expires_at"),
    sqlite_autoincrement=True,  # ids of deleted lines are never handed out again
)

# a batch submitted to a provider's native batch API, carrying lines of one provider,
# endpoint and model (possibly from several client batches)
upstream_batches = Table(
    "upstream_batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("lines", Integer, nullable=False, default=0),
    Column("upstream_file_id", String(200), nullable=True),
    Column("upstream_batch_id", String(200), nullable=True),
    Column("upstream_status", String(32), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("next_poll_at", Float, nullable=False),
    Column("poll_interval", Float, nullable=False),
    Column("failures", Integer, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Index("ix_upstream_batches_due", "state", "next_poll_at"),
)

# one row per upstream call outcome: a synchronous request, or a batch line that finished
request_logs = Table(
    "request_logs",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("created_at_ms", BigInteger, nullable=False),  # when it finished, epoch ms
    Column("kind", String(12), nullable=False),  # "batch" or "interactive"
    Column("key_id", String(64), nullable=False),
    Column("model", Text, nullable=False),  # the public model name
    Column("provider", String(100), nullable=False),
    Column("upstream_model", Text, nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("batch_id", String(64), nullable=True),
    Column("custom_id", Text, nullable=True),
    # the batch line it records: unique, so a line is never counted twice
    Column("item_id", BigInteger, nullable=True, unique=True),
    Column("status", String(20), nullable=False),  # succeeded, failed, budget_exceeded…
    Column("status_code", Integer, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=True),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("retries", Integer, nullable=False, default=0),
    Column("request_id", String(100), nullable=True),
    Column("request_body", LargeBinary, nullable=True),  # only when logs.record_bodies
    Column("response_body", LargeBinary, nullable=True),
    Index("ix_request_logs_time", "created_at_ms"),
    # a key's spending since a time, read from the index alone (budgets)
    Index("ix_request_logs_key_spend", "key_id", "created_at_ms", "cost_usd"),
    # newest-first pages of one key, model or batch (the console), and the newest log of
    # each in one probe
    Index("ix_request_logs_key_id", "key_id", "id"),
    Index("ix_request_logs_model_id", "model", "id"),
    Index("ix_request_logs_batch_id", "batch_id", "id"),
    sqlite_autoincrement=True,
)

# the request logs added up per hour, key, model, provider and kind of call, kept in the
# transaction that writes (or deletes) the logs: usage over weeks reads these
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("hour_ms", BigInteger, nullable=False),  # the hour's start, epoch ms
    Column("key_id", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("provider", String(100), nullable=False),
    Column("kind", String(12), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),  # calls that did not succeed
    Column("input_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    # hour first: a period's hours are one range of the table
    PrimaryKeyConstraint("hour_ms", "kind", "model", "provider", "key_id"),
    # what a key has spent (budgets, the console's keys): its own hours, read from the index
    Index("ix_usage_hourly_key_spend", "key_id", "hour_ms", "cost_usd"),
    sqlite_with_rowid=False,
)
