"""Upstream providers: how to call each kind of LLM service."""

from __future__ import annotations
