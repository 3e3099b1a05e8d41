"""The gateway's Prometheus metrics and the ``GET /metrics`` route."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from batchway.api.errors import handle_gateway_error
from batchway.api.metrics import metrics_routes
from batchway.errors import GatewayError
from batchway.metrics import LATENCY_BUCKETS, Metrics

CHAT = {"kind": "chat", "model": "gpt-4o", "provider": "openai"}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_request_counts_requests_tokens_and_cost() -> None:
    metrics = Metrics()
    metrics.request("chat", "gpt-4o", "openai", "200", 0.3, 10, 5, 0.25)
    metrics.request("chat", "gpt-4o", "openai", "200", 0.7, 20, 0, 0.5)
    metrics.request("chat", "gpt-4o", "openai", "502", None, 0, 0, 0.0)

    assert sample(metrics, "batchway_requests_total", **CHAT, status="200") == 2
    assert sample(metrics, "batchway_requests_total", **CHAT, status="502") == 1
    assert sample(metrics, "batchway_tokens_total", **CHAT, direction="input") == 30
    assert sample(metrics, "batchway_tokens_total", **CHAT, direction="output") == 5
    assert sample(metrics, "batchway_cost_usd_total", **CHAT) == 0.75


def test_request_latency_histogram() -> None:
    metrics = Metrics()
    for seconds in (0.004, 0.3, 0.7, 700.0):
        metrics.request("chat", "gpt-4o", "openai", "200", seconds, 1, 1, 0.0)
    metrics.request("chat", "gpt-4o", "openai", "500", None, 0, 0, 0.0)  # not observed

    labels = {"kind": "chat", "provider": "openai"}
    name = "batchway_request_latency_seconds"
    assert sample(metrics, f"{name}_count", **labels) == 4
    assert sample(metrics, f"{name}_sum", **labels) == pytest.approx(701.004)
    assert sample(metrics, f"{name}_bucket", **labels, le="0.005") == 1
    assert sample(metrics, f"{name}_bucket", **labels, le="0.5") == 2
    assert sample(metrics, f"{name}_bucket", **labels, le="1.0") == 3
    assert sample(metrics, f"{name}_bucket", **labels, le="600.0") == 3
    assert sample(metrics, f"{name}_bucket", **labels, le="+Inf") == 4


def test_latency_buckets_span_5ms_to_10_minutes() -> None:
    assert LATENCY_BUCKETS[0] == 0.005
    assert LATENCY_BUCKETS[-1] == 600.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_labels_keep_series_apart() -> None:
    metrics = Metrics()
    metrics.request("chat", "gpt-4o", "openai", "200", 0.1, 1, 1, 0.0)
    metrics.request("embeddings", "gpt-4o", "openai", "200", 0.1, 1, 1, 0.0)
    metrics.request("chat", "gpt-4o", "azure", "200", 0.1, 1, 1, 0.0)

    assert sample(metrics, "batchway_requests_total", **CHAT, status="200") == 1
    latency = "batchway_request_latency_seconds_count"
    assert sample(metrics, latency, kind="chat", provider="azure") == 1


def test_upstream_errors_and_rate_limits() -> None:
    metrics = Metrics()
    metrics.upstream_error("openai", "429")
    metrics.upstream_error("openai", "429")
    metrics.upstream_error("openai", "timeout")
    metrics.rate_limited("key")
    metrics.rate_limited("provider")
    metrics.rate_limited("key")

    errors = "batchway_upstream_errors_total"
    assert sample(metrics, errors, provider="openai", code="429") == 2
    assert sample(metrics, errors, provider="openai", code="timeout") == 1
    assert sample(metrics, errors, provider="openai", code="500") is None
    assert sample(metrics, "batchway_rate_limited_total", scope="key") == 2
    assert sample(metrics, "batchway_rate_limited_total", scope="provider") == 1


def test_set_batch_lines_sets_every_state() -> None:
    metrics = Metrics()
    metrics.set_batch_lines({"pending": 4, "leased": 2, "succeeded": 7})
    metrics.set_batch_lines({"pending": 3, "succeeded": 8, "no-such-state": 9})

    lines = {
        state: sample(metrics, "batchway_batch_lines", state=state)
        for state in ("pending", "leased", "succeeded", "failed", "cancelled", "expired")
    }
    assert lines == {
        "pending": 3,
        "leased": 0,
        "succeeded": 8,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    assert sample(metrics, "batchway_batch_lines", state="no-such-state") is None


def test_instances_do_not_share_values() -> None:
    first, second = Metrics(), Metrics()
    first.request("chat", "gpt-4o", "openai", "200", 0.1, 3, 4, 0.5)
    first.upstream_error("openai", "500")

    assert sample(first, "batchway_requests_total", **CHAT, status="200") == 1
    assert sample(second, "batchway_requests_total", **CHAT, status="200") is None
    assert sample(second, "batchway_upstream_errors_total", provider="openai", code="500") is None


def test_render_exposes_every_metric() -> None:
    metrics = Metrics()
    metrics.request("chat", "gpt-4o", "openai", "200", 0.1, 3, 4, 0.5)
    metrics.upstream_error("openai", "500")
    metrics.rate_limited("key")

    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    text = body.decode()
    for name in (
        "batchway_requests_total",
        "batchway_tokens_total",
        "batchway_cost_usd_total",
        "batchway_request_latency_seconds_bucket",
        "batchway_upstream_errors_total",
        "batchway_rate_limited_total",
        "batchway_batch_lines",
    ):
        assert f"\n{name}{{" in text
    assert 'batchway_batch_lines{state="pending"} 0.0' in text


# -- GET /metrics --------------------------------------------------------------------------------


class LineCounts:
    """The one store call the route makes."""

    async def line_counts(self) -> dict[str, int]:
        return {"pending": 2, "succeeded": 5}


def metrics_app(*, enabled: bool) -> tuple[TestClient, Metrics]:
    metrics = Metrics()
    app = Starlette(
        routes=metrics_routes(), exception_handlers={GatewayError: handle_gateway_error}
    )
    app.state.gateway = SimpleNamespace(
        config=SimpleNamespace(metrics=enabled), metrics=metrics, store=LineCounts()
    )
    return TestClient(app), metrics


def test_metrics_route_serves_the_exposition() -> None:
    client, metrics = metrics_app(enabled=True)
    metrics.request("chat", "gpt-4o", "openai", "200", 0.1, 3, 4, 0.5)

    response = client.get("/metrics")  # no credentials: scrapers do not send any

    assert response.status_code == 200
    assert response.headers["content-type"] == metrics.render()[1]
    assert 'batchway_requests_total{kind="chat"' in response.text
    assert 'batchway_batch_lines{state="succeeded"} 5.0' in response.text
    assert 'batchway_batch_lines{state="failed"} 0.0' in response.text


def test_metrics_route_is_404_when_disabled() -> None:
    client, _ = metrics_app(enabled=False)

    response = client.get("/metrics")

    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
