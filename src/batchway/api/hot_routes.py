"""The synchronous calls, answered without Starlette's middleware stack and router.

A proxied call is the gateway's hot path, and most of what Starlette does on the way to
its handler (two middleware layers each wrapping ``send``, the router trying routes in
turn, a second exception-handling wrapper around the endpoint) serves routes that need it.
`GatewayApp` looks the exact path of a ``POST`` up in a table of the synchronous routes
first and calls the handler straight away, rendering its errors with the same handlers
the rest of the app uses; every other request goes through Starlette as before. The routes
stay registered with Starlette too, so a path the table does not hold exactly (a trailing
slash, a root path) still reaches them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from batchway.api.errors import handle_gateway_error, handle_http_error, handle_unexpected
from batchway.errors import GatewayError

__all__ = ["GatewayApp", "hot_table"]

Handler = Callable[[Request], Awaitable[Response]]


def hot_table(routes: Iterable[BaseRoute]) -> dict[str, Handler]:
    """The ``POST`` routes of fixed paths among ``routes``, by path."""
    table: dict[str, Handler] = {}
    for route in routes:
        if isinstance(route, Route) and route.methods == {"POST"} and not route.param_convertors:
            table.setdefault(route.path, route.endpoint)
    return table


class GatewayApp(Starlette):
    """Starlette, with ``hot`` routes (path → handler) answered before its middleware."""

    def __init__(self, *, hot: Mapping[str, Handler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot = dict(hot)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self._hot.get(scope["path"])
            if handler is not None:
                scope["app"] = self
                await _answer(handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _answer(handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await handler(request)
    except GatewayError as exc:
        response = await handle_gateway_error(request, exc)
    except HTTPException as exc:
        response = await handle_http_error(request, exc)
    except Exception as exc:
        response = await handle_unexpected(request, exc)
    # a response fails only once started (a stream) or when its client is gone: nothing
    # more can be said on it, and the server closes the connection
    await response(scope, receive, send)
