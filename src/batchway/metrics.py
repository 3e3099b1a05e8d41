"""Prometheus metrics of one gateway, in a registry of its own.

Several gateways can run in one process (the tests start many), so `Metrics` never touches
prometheus_client's global registry. `Metrics.request` runs on the hot path of every proxied
call: it keeps the labelled children it has made in a dict keyed by their label values, so a
call costs one dict lookup and a few increments instead of a ``.labels()`` call per series.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from batchway.core.states import ItemState

__all__ = ["LATENCY_BUCKETS", "Metrics"]

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
"""Upper bounds of the latency histogram, in seconds: a cached answer to a long generation."""

_BATCH_LINE_STATES: Final = tuple(state.value for state in ItemState)

# The children that one (kind, model, provider, status) request touches.
_RequestSeries = tuple[Counter, Counter, Counter, Counter, Histogram]


class Metrics:
    """The gateway's counters, histogram and gauge, and their exposition.

    Label values are whatever the caller passes: keep them to a bounded set (configured model
    and provider names, status classes), as every distinct tuple is a new series.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lines_counted_at = -math.inf  # time.monotonic() of the last set_batch_lines
        self._requests = Counter(
            "batchway_requests",
            "Requests handled, by outcome.",
            ("kind", "model", "provider", "status"),
            registry=self.registry,
        )
        self._tokens = Counter(
            "batchway_tokens",
            "Tokens reported by upstreams.",
            ("kind", "model", "provider", "direction"),
            registry=self.registry,
        )
        self._cost = Counter(
            "batchway_cost_usd",
            "Estimated cost of upstream calls, in US dollars.",
            ("kind", "model", "provider"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "batchway_request_latency_seconds",
            "Time from receiving a request to its answer.",
            ("kind", "provider"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "batchway_upstream_errors",
            "Failed upstream calls, by HTTP status or failure kind.",
            ("provider", "code"),
            registry=self.registry,
        )
        self._rate_limited = Counter(
            "batchway_rate_limited",
            "Requests held back by a gateway rate limit.",
            ("scope",),
            registry=self.registry,
        )
        self._batch_lines = Gauge(
            "batchway_batch_lines",
            "Batch lines in each state.",
            ("state",),
            registry=self.registry,
        )
        self._request_series: dict[tuple[str, str, str, str], _RequestSeries] = {}
        self._error_series: dict[tuple[str, str], Counter] = {}
        self._limited_series: dict[str, Counter] = {}
        self._line_series = {s: self._batch_lines.labels(state=s) for s in _BATCH_LINE_STATES}

    def request(
        self,
        kind: str,
        model: str,
        provider: str,
        status: str,
        latency_seconds: float | None,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
    ) -> None:
        """Count one finished request; ``latency_seconds`` None leaves the histogram alone."""
        key = (kind, model, provider, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._new_request_series(key)
        requests, tokens_in, tokens_out, cost, latency = series
        requests.inc()
        # Skipping zeros saves a lock round trip; the series exist from the first call anyway.
        if input_tokens:
            tokens_in.inc(input_tokens)
        if output_tokens:
            tokens_out.inc(output_tokens)
        if cost_usd:
            cost.inc(cost_usd)
        if latency_seconds is not None:
            latency.observe(latency_seconds)

    def _new_request_series(self, key: tuple[str, str, str, str]) -> _RequestSeries:
        kind, model, provider, status = key
        series = (
            self._requests.labels(kind, model, provider, status),
            self._tokens.labels(kind, model, provider, "input"),
            self._tokens.labels(kind, model, provider, "output"),
            self._cost.labels(kind, model, provider),
            self._latency.labels(kind, provider),
        )
        # Two threads may race here; .labels() returns the same children, so either wins.
        self._request_series[key] = series
        return series

    def upstream_error(self, provider: str, code: str) -> None:
        """Count one failed upstream call; ``code`` is a status ("429") or a kind ("timeout")."""
        key = (provider, code)
        counter = self._error_series.get(key)
        if counter is None:
            counter = self._error_series[key] = self._upstream_errors.labels(provider, code)
        counter.inc()

    def rate_limited(self, subject_kind: str) -> None:
        """Count one request refused by a gateway limit on a ``"key"`` or a ``"provider"``."""
        counter = self._limited_series.get(subject_kind)
        if counter is None:
            counter = self._limited_series[subject_kind] = self._rate_limited.labels(subject_kind)
        counter.inc()

    def set_batch_lines(self, counts: Mapping[str, int]) -> None:
        """Set the line count of every known state, 0 for those missing from ``counts``.

        Unknown states are ignored, so a stray value cannot add a series.
        """
        for state, gauge in self._line_series.items():
            gauge.set(counts.get(state, 0))
        self._lines_counted_at = time.monotonic()

    def batch_lines_older_than(self, seconds: float) -> bool:
        """Whether the batch-line counts were set longer ago than ``seconds`` (or never)."""
        return time.monotonic() - self._lines_counted_at > seconds

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
