"""The OpenAI dialect: Files and Batches."""

from __future__ import annotations
