"""The batch engine (see `engine.BatchEngine`): intake, lifecycle, finalization."""

from batchway.core.engine.engine import BatchEngine, Step
from batchway.core.engine.finalize import RenderResult

__all__ = ["BatchEngine", "RenderResult", "Step"]
