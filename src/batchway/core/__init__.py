"""The domain: batches, lines, states, validation, routing and retries. No I/O here."""

from __future__ import annotations
