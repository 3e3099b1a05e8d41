"""The Anthropic dialect: Message Batches."""

from __future__ import annotations
