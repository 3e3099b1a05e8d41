"""`GatewayApp`: the synchronous calls' exact paths answered before Starlette's router, with
the same error envelopes; every other request through Starlette."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from batchway.api.errors import handle_gateway_error, handle_http_error, handle_unexpected
from batchway.api.hot_routes import GatewayApp, hot_table
from batchway.errors import InvalidRequest


async def chat(request: Request) -> Response:
    body = await request.json()
    if body.get("fail") == "gateway":
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if body.get("fail") == "bug":
        raise RuntimeError("a bug")
    return JSONResponse({"answered_by": "chat", "router": "endpoint" in request.scope})


async def models(request: Request) -> Response:
    return JSONResponse({"router": "endpoint" in request.scope})


async def batch(request: Request) -> Response:
    return JSONResponse({"batch": request.path_params["batch_id"]})


ROUTES = [
    Route("/v1/chat/completions", chat, methods=["POST"]),
    Route("/v1/batches/{batch_id}", batch, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
]


def client() -> httpx.AsyncClient:
    app = GatewayApp(
        hot=hot_table(ROUTES),
        routes=ROUTES,
        exception_handlers={
            InvalidRequest: handle_gateway_error,
            Exception: handle_unexpected,
            404: handle_http_error,
        },
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def test_the_table_holds_the_post_routes_of_fixed_paths() -> None:
    assert hot_table(ROUTES) == {"/v1/chat/completions": chat}


async def test_a_hot_path_skips_the_router() -> None:
    async with client() as http:
        reply = await http.post("/v1/chat/completions", json={})
        assert reply.json() == {"answered_by": "chat", "router": False}


async def test_errors_on_a_hot_path_keep_their_envelopes() -> None:
    async with client() as http:
        refused = await http.post("/v1/chat/completions", json={"fail": "gateway"})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "model"
        assert refused.headers["x-request-id"]
        broken = await http.post("/v1/chat/completions", json={"fail": "bug"})
        assert broken.status_code == 500
        assert broken.json()["error"]["type"] == "server_error"


async def test_every_other_request_goes_through_starlette() -> None:
    async with client() as http:
        assert (await http.post("/v1/batches/b1")).json() == {"batch": "b1"}
        assert (await http.get("/v1/models")).json()["router"] is True
        missing = await http.post("/v1/nothing", json={})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "invalid_request_error"
