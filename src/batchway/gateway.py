"""The composition root: builds the store, providers, services and worker from a config."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchway.config import Config
from batchway.core.accounting import Accounting
from batchway.core.admin import AdminService
from batchway.core.batches import BatchService
from batchway.core.budgets import BatchCostCheck, Budgets, OwnerBudgets
from batchway.core.call_pricing import CallPricing
from batchway.core.concurrency import InteractiveSlots, provider_limits
from batchway.core.files import FileService
from batchway.core.housekeeping import Housekeeping
from batchway.core.keys import KeyService
from batchway.core.overview import Overview
from batchway.core.ports import BlobStore, RateLimiter
from batchway.core.pricing import PriceTable
from batchway.core.proxy import SyncProxy
from batchway.core.quotas import Quotas
from batchway.core.routing import Router
from batchway.core.tokens import text_counter
from batchway.metrics import Metrics
from batchway.providers.registry import ProviderRegistry, simulated_providers
from batchway.store.blobs import open_blob_store
from batchway.store.logs import SqlRequestLogs
from batchway.store.migrate import migrate
from batchway.store.ratelimits import open_concurrency_pool, open_rate_limiter
from batchway.store.sql import SqlStore, create_engine
from batchway.store.upstream import SqlUpstreamBatches
from batchway.store.wakeups import open_wakeups
from batchway.worker.runner import Worker

__all__ = ["Gateway", "open_gateway"]


@dataclass(slots=True)
class Gateway:
    """Everything a running gateway holds, built once per process."""

    config: Config
    store: SqlStore
    blobs: BlobStore
    providers: ProviderRegistry
    router: Router
    keys: KeyService
    files: FileService
    batches: BatchService
    admin: AdminService
    housekeeping: Housekeeping
    worker: Worker
    logs: SqlRequestLogs
    accounting: Accounting
    quotas: Quotas
    limiter: RateLimiter
    metrics: Metrics
    proxy: SyncProxy
    overview: Overview


@asynccontextmanager
async def open_gateway(config: Config) -> AsyncIterator[Gateway]:
    """Open the database (migrating it), blob store and provider pools; close them after."""
    engine = create_engine(config.async_database_url, config.database_pool)
    await migrate(engine)
    store = SqlStore(engine)
    blobs = open_blob_store(config.files, config.s3)
    providers = ProviderRegistry(config)
    # Azure deployment names may stand for public models in batch lines too
    router = Router(config, aliases=config.azure.deployments)
    keys = KeyService(store, config.admin_key)
    logs = SqlRequestLogs(store)
    metrics = Metrics()
    budgets = Budgets(logs)
    pricing = CallPricing(PriceTable(config.prices), router, simulated_providers(config))
    accounting = Accounting(
        pricing=pricing,
        budgets=budgets,
        metrics=metrics,
        sink=logs,
        settings=config.logs,
    )
    limiter = open_rate_limiter(config.rate_limits)
    quotas = Quotas(limiter, config)
    wakeups = open_wakeups(config)
    concurrency = open_concurrency_pool(config.rate_limits)
    worker = Worker(
        config=config,
        store=store,
        upstream=SqlUpstreamBatches(store),
        blobs=blobs,
        providers=providers,
        router=router,
        accounting=accounting,
        quotas=quotas,
        budgets=OwnerBudgets(budgets, keys, pricing),
        wakeups=wakeups,
        concurrency=concurrency,
    )
    files = FileService(store, blobs, config.limits)
    batches = BatchService(
        store,
        store,
        config.limits,
        file_service=files,
        router=router,
        wake_worker=wakeups.announce,
        cost_check=BatchCostCheck(budgets, pricing, router),
    )
    housekeeping = Housekeeping(files, config.file_expiry)
    interactive = None
    if concurrency is not None:
        interactive = InteractiveSlots(
            concurrency,
            provider_limits(config, providers),
            f"{worker.id}/sync",
            headroom=config.rate_limits.concurrency_headroom,
            ttl_seconds=config.rate_limits.concurrency_lease_seconds,
        )
    await asyncio.to_thread(text_counter)  # a local tiktoken encoding loads once, now
    log_writer = asyncio.create_task(accounting.run(), name="request-logs")
    file_sweeper = asyncio.create_task(housekeeping.run(), name="file-expiry")
    try:
        yield Gateway(
            config=config,
            store=store,
            blobs=blobs,
            providers=providers,
            router=router,
            keys=keys,
            files=files,
            batches=batches,
            admin=AdminService(keys, batches),
            housekeeping=housekeeping,
            worker=worker,
            logs=logs,
            accounting=accounting,
            quotas=quotas,
            limiter=limiter,
            metrics=metrics,
            proxy=SyncProxy(
                router=router,
                providers=providers,
                quotas=quotas,
                accounting=accounting,
                metrics=metrics,
                slots=interactive,
            ),
            overview=Overview(
                batches=batches,
                batch_store=store,
                lines=store,
                keys=store,
                logs=logs,
                pricing=pricing,
            ),
        )
    finally:
        for task in (log_writer, file_sweeper):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # logged by flush
            await accounting.flush()
        if interactive is not None:
            await interactive.close()
        await limiter.close()
        await wakeups.close()
        if concurrency is not None:
            await concurrency.close()
        await providers.close()
        await store.close()
