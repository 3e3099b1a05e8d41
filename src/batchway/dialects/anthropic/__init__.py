"""Anthropic's Message Batches wire shapes and results lines."""
