"""The Azure OpenAI dialect: Files, Batches and the deployment routes under ``/openai``."""

from __future__ import annotations
