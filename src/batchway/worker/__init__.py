"""The batch worker: validates inputs, runs lines on providers, writes result files."""

from __future__ import annotations

from batchway.worker.runner import Worker

__all__ = ["Worker"]
