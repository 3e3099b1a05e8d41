"""The ASGI application: routes, error rendering, and the lifespan that owns all I/O."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchway.api.admin import admin_routes
from batchway.api.admin_logs import log_routes
from batchway.api.anthropic.messages import messages_routes
from batchway.api.anthropic.routes import anthropic_routes
from batchway.api.azure.routes import azure_routes
from batchway.api.errors import handle_gateway_error, handle_http_error, handle_unexpected
from batchway.api.hot_routes import GatewayApp, hot_table
from batchway.api.metrics import metrics_routes
from batchway.api.openai.proxy import proxy_routes
from batchway.api.openai.routes import openai_routes
from batchway.api.openapi import openapi_routes
from batchway.collector import set_for_serving
from batchway.config import Config
from batchway.console import Sessions, console_routes
from batchway.errors import GatewayError
from batchway.gateway import Gateway, open_gateway

__all__ = ["create_app"]

log = logging.getLogger("batchway.api")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(config: Config, *, run_worker: bool | None = None) -> Starlette:
    """The gateway app. The batch worker runs inside it unless ``run_worker`` is False
    (or the config's ``worker.enabled`` is, when ``run_worker`` is None)."""
    with_worker = config.worker.enabled if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_gateway(config) as gateway:
            app.state.gateway = gateway
            app.state.loop = asyncio.get_running_loop()  # tests and the demo reach in here
            with set_for_serving():
                task = asyncio.create_task(_run_worker(gateway)) if with_worker else None
                try:
                    yield
                finally:
                    if task is not None:
                        await _stop_worker(gateway, task)

    synchronous = [*proxy_routes("/v1"), *messages_routes()]
    unprefixed = proxy_routes("")
    app = GatewayApp(
        # the synchronous calls skip the router (see `batchway.api.hot_routes`)
        hot=hot_table([*synchronous, *unprefixed]),
        routes=[
            # the synchronous routes first: the router tries routes in order
            *synchronous,
            Route("/healthz", healthz, methods=["GET"]),
            *anthropic_routes(),
            *openai_routes("/v1"),
            *openai_routes(""),
            *unprefixed,
            *azure_routes(),
            *admin_routes(),
            *log_routes(),
            *metrics_routes(),
            *openapi_routes(),
            *console_routes(config),
        ],
        exception_handlers={
            GatewayError: handle_gateway_error,
            HTTPException: handle_http_error,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.console_sessions = Sessions(config.console, config.admin_key)
    return app


async def _stop_worker(gateway: Gateway, task: asyncio.Task[None]) -> None:
    """Stop the worker gracefully: calls in flight finish and are recorded (within the
    grace period), then it hands back what it holds."""
    gateway.worker.stop()
    grace = gateway.config.worker.shutdown_grace_seconds
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace + 10):  # the worker keeps to the grace itself
            await asyncio.shield(task)
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _run_worker(gateway: Gateway) -> None:
    try:
        await gateway.worker.run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the batch worker stopped", extra={"action": "worker_crashed"})
        raise
