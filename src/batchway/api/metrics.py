"""``GET /metrics``: the gateway's Prometheus exposition."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchway.errors import NotFound
from batchway.metrics import Metrics

__all__ = ["metrics_routes"]

_LINE_COUNT_SECONDS = 10.0


async def get_metrics(request: Request) -> Response:
    # No auth, as usual for Prometheus scrapers: restrict /metrics at the network level.
    gateway = request.app.state.gateway
    if not gateway.config.metrics:
        raise NotFound("Metrics are disabled in this gateway's configuration.")
    exposition: Metrics = gateway.metrics
    # counting lines scans them: several scrapers (or a fast one) share one count a while
    if exposition.batch_lines_older_than(_LINE_COUNT_SECONDS):
        exposition.set_batch_lines(await gateway.store.line_counts())
    body, content_type = exposition.render()
    return Response(body, headers={"content-type": content_type})


def metrics_routes() -> list[Route]:
    return [Route("/metrics", get_metrics, methods=["GET"])]
