"""The web console at ``/console``: batches, request logs, usage and keys, rendered by the
gateway itself (Jinja templates, a little JavaScript, a vendored chart library)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from batchway.config import Config
from batchway.console.pages import handlers
from batchway.console.session import Sessions

__all__ = ["Sessions", "console_routes"]


def console_routes(config: Config) -> list[BaseRoute]:
    """The console's routes, or none when the config turns it off."""
    if not config.console.enabled:
        return []
    h = handlers()
    return [
        Route("/console", h["home"], methods=["GET"]),
        Mount(
            "/console",
            routes=[
                Route("/", h["home"], methods=["GET"]),
                Route("/login", h["login_form"], methods=["GET"]),
                Route("/login", h["login"], methods=["POST"]),
                Route("/logout", h["logout"], methods=["POST"]),
                Route("/batches", h["batches"], methods=["GET"]),
                Route("/batches/{batch_id}", h["batch"], methods=["GET"]),
                Route("/batches/{batch_id}/progress", h["batch_progress"], methods=["GET"]),
                Route("/batches/{batch_id}/cancel", h["cancel_batch"], methods=["POST"]),
                Route("/files/{file_id}", h["file_content"], methods=["GET"]),
                Route("/logs", h["logs"], methods=["GET"]),
                Route("/logs/{log_id}", h["log"], methods=["GET"]),
                Route("/usage", h["usage"], methods=["GET"]),
                Route("/keys", h["keys"], methods=["GET"]),
                Route("/keys", h["create_key"], methods=["POST"]),
                Route("/keys/{key_id}", h["key"], methods=["GET"]),
                Route("/keys/{key_id}", h["update_key"], methods=["POST"]),
                Route("/keys/{key_id}/revoke", h["revoke_key"], methods=["POST"]),
                Mount(
                    "/static",
                    app=StaticFiles(packages=[("batchway.console", "static")]),
                    name="console-static",
                ),
            ],
        ),
    ]
