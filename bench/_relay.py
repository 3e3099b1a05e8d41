"""The floor for a Python gateway on the gateway's own stack: a bare relay.

A raw ASGI app on uvicorn (httptools, uvloop, no access log, as ``batchway serve`` runs it)
that POSTs every request body, as it came, to one upstream URL through one pooled aiohttp
session and answers with the upstream's status, content type and body. No routing, no
auth, no parsing, no accounting, no log row: what is left of a proxied request when the
gateway does nothing of its own. ``bench/proxy.py --floor`` runs it as a third arm.

    .venv/bin/python bench/_relay.py --port P --upstream http://127.0.0.1:U/v1/chat/completions
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn


def relay_app(upstream: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if session is not None:
                await session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), skip_auto_headers=("User-Agent",)
            )
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        async with session.post(
            upstream, data=b"".join(chunks), headers={"content-type": "application/json"}
        ) as answer:
            body = await answer.read()
            status = answer.status
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        relay_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
