"""Persistence: SQL rows, file blobs. Backends live behind the Protocols in ``repository``."""

from __future__ import annotations
