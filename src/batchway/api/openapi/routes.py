"""``GET /openapi.json`` and ``GET /docs``: the document and its reference page, rendered
once when the app is made and answered as the same bytes every time."""

from __future__ import annotations

import orjson
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from batchway.api.openapi.document import openapi_document
from batchway.api.openapi.page import reference_page

__all__ = ["openapi_routes"]

# the page holds no script and loads nothing from elsewhere
_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class _Prerendered:
    """An ASGI endpoint that answers every request with the same bytes."""

    def __init__(self, body: bytes, content_type: str, **headers: str) -> None:
        self.body = body
        raw = {"content-type": content_type, "content-length": str(len(body)), **headers}
        self._start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in raw.items()],
        }
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self._start)
        await send(self._body)


def openapi_routes() -> list[Route]:
    """The two routes, their answers rendered now."""
    document = openapi_document()
    spec = _Prerendered(orjson.dumps(document), "application/json")
    page = _Prerendered(
        reference_page(document).encode(),
        "text/html; charset=utf-8",
        **{"content-security-policy": _PAGE_POLICY, "x-content-type-options": "nosniff"},
    )
    return [
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/docs", page, methods=["GET"]),
    ]
