"""Serve any ASGI app with uvicorn, in a background thread or in the foreground.

`serve_in_thread` is what test fixtures use: it binds a loopback socket itself (port 0 picks a
free port), runs uvicorn on its own event loop in a daemon thread, returns only once the server
accepts connections (a threading.Event set from uvicorn's startup, no sleeps), and stops the
server when the ``with`` block ends. `serve_forever` runs the same setup in the calling thread
until SIGINT/SIGTERM.

Both use the fastest stack available (httptools and uvloop), no access log and ``warning``
logging. The app's lifespan runs by default (``lifespan="on"``: a failing startup is an
error, not silently skipped); pass ``lifespan="off"`` for apps that do not speak it.

uvicorn waits for in-flight requests before it stops, so an app that holds requests open on
purpose (long polls, a fake upstream that never answers) can implement `ShutdownAware`: its
``on_server_stopping()`` is called as soon as shutdown begins, before uvicorn waits. Requests
still running after ``shutdown_timeout`` seconds are cancelled by uvicorn.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import uvicorn

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "ServerHandle",
    "ShutdownAware",
    "serve_forever",
    "serve_in_thread",
]

# ASGI types, as in starlette/types.py.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STARTUP_TIMEOUT = 30.0
_Lifespan = Literal["on", "off", "auto"]


@runtime_checkable
class ShutdownAware(Protocol):
    """An ASGI app that wants to hear that its server is stopping.

    ``on_server_stopping`` runs on the server's event loop thread when shutdown begins, before
    uvicorn waits for in-flight requests; it must not block.
    """

    def on_server_stopping(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHandle:
    """Where a running server listens: ``url`` ends in ``/v1``, ``base_url`` does not."""

    host: str
    port: int
    base_url: str
    url: str


class _Server(uvicorn.Server):
    """uvicorn's server plus a started callback and the `ShutdownAware` notice."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        if isinstance(app, ShutdownAware):
            app.on_server_stopping()
        await super().shutdown(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _handle(sock: socket.socket, host: str) -> ServerHandle:
    port: int = sock.getsockname()[1]
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    base_url = f"http://{netloc}"
    return ServerHandle(host=host, port=port, base_url=base_url, url=f"{base_url}/v1")


def _config(
    app: ASGIApp,
    shutdown_timeout: int,
    lifespan: _Lifespan,
    *,
    own_logging: bool,
    access_log: bool = False,
) -> uvicorn.Config:
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    has_httptools = importlib.util.find_spec("httptools") is not None
    kwargs: dict[str, Any] = {}
    if not own_logging:
        # Leave the host process's logging alone (pytest's caplog, the gateway's setup).
        kwargs["log_config"] = None
    return uvicorn.Config(
        app,
        http="httptools" if has_httptools else "h11",
        loop="uvloop" if has_uvloop else "asyncio",
        lifespan=lifespan,
        access_log=access_log,
        log_level="info" if access_log else "warning",
        timeout_graceful_shutdown=shutdown_timeout,
        **kwargs,
    )


@contextmanager
def serve_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: int = 5,
    lifespan: _Lifespan = "on",
) -> Iterator[ServerHandle]:
    """Serve ``app`` from a daemon thread for the duration of the ``with`` block.

    Raises RuntimeError if the server (or the app's lifespan startup) fails to start.
    """
    sock = _bind(host, port)
    handle = _handle(sock, host)
    ready = threading.Event()
    server = _Server(
        _config(app, shutdown_timeout, lifespan, own_logging=False), on_started=ready.set
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn reports a failed startup with SystemExit
            failure.append(exc)
        finally:
            ready.set()
            sock.close()

    thread = threading.Thread(target=run, name=f"uvicorn-{handle.port}", daemon=True)
    thread.start()
    ready.wait(_STARTUP_TIMEOUT)
    if not server.started:
        server.should_exit = True
        thread.join(_STARTUP_TIMEOUT)
        cause = failure[0] if failure else None
        raise RuntimeError(f"server on {handle.base_url} failed to start") from cause
    try:
        yield handle
    finally:
        server.should_exit = True
        thread.join()


def serve_forever(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    shutdown_timeout: int = 5,
    lifespan: _Lifespan = "on",
    on_ready: Callable[[ServerHandle], object] | None = None,
    own_logging: bool = True,
    access_log: bool = False,
) -> None:
    """Serve ``app`` in the calling thread until SIGINT or SIGTERM.

    ``on_ready`` is called with the bound address once the server accepts connections.
    ``own_logging=False`` leaves logging to the caller's setup (uvicorn's records go to the
    root logger); ``access_log`` logs a line per request.
    """
    sock = _bind(host, port)
    handle = _handle(sock, host)

    def started() -> None:
        if on_ready is not None:
            on_ready(handle)

    config = _config(
        app, shutdown_timeout, lifespan, own_logging=own_logging, access_log=access_log
    )
    server = _Server(config, on_started=started)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
