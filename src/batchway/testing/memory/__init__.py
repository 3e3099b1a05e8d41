"""In-memory fakes of the ports in ``batchway.core.ports``: plain Python, no SQL, no HTTP.

What they are for: unit tests of the engine (services, the worker, the finalizer) that
run without SQL or HTTP: no database, disk or upstream server, fast and deterministic, and
never sleeping. Each fake implements its port as the real implementation does, and
``tests/contract`` holds both to the same behaviour: every contract test runs on the real
implementations (SQLite and PostgreSQL, the disk, Redis, the fake upstream and the fake
batch API on loopback ports) and on these fakes, so a fake cannot drift from what it
stands for (``pytest tests/contract -k memory`` runs the fakes' side alone).

- `MemoryStore` (``Store``: keys, files within quotas, batches, lines), with
  `MemoryUpstreamBatches` (``UpstreamBatchStore``) and `MemoryRequestLogs`
  (``RequestLogs``) on its tables, as the SQL ones share one database;
- `MemoryBlobStore` (``BlobStore``);
- `MemoryProvider` (``Provider``), answering by model name as the fake upstream does, and
  `MemoryNativeBatchAPI` (``NativeBatchAPI``), an OpenAI-style batch API moved by polls;
- ``RateLimiter`` needs no fake: `MemoryRateLimiter` is the gateway's own in-process one.

A write the schema would refuse (a repeated key hash, file id, batch line or logged line)
raises `UniqueViolation`, where the SQL store raises SQLAlchemy's ``IntegrityError``.
"""

from __future__ import annotations

from batchway.core.ratelimit import MemoryRateLimiter
from batchway.testing.memory._tables import UniqueViolation
from batchway.testing.memory.blobs import MemoryBlobStore
from batchway.testing.memory.logs import MemoryRequestLogs
from batchway.testing.memory.native import MemoryNativeBatchAPI
from batchway.testing.memory.provider import MemoryCall, MemoryProvider
from batchway.testing.memory.store import MemoryStore
from batchway.testing.memory.upstream import MemoryUpstreamBatches

__all__ = [
    "MemoryBlobStore",
    "MemoryCall",
    "MemoryNativeBatchAPI",
    "MemoryProvider",
    "MemoryRateLimiter",
    "MemoryRequestLogs",
    "MemoryStore",
    "MemoryUpstreamBatches",
    "UniqueViolation",
]
