"""The HTTP surface: one module per wire dialect, plus the admin API."""

from __future__ import annotations
