"""The upstream endpoints a request or a batch line may name.

``Endpoint`` is a ``StrEnum``: its members compare equal to (and serialise as) the paths
clients write, so a stored or received string can be checked with ``Endpoint.parse`` and
used wherever a path is expected.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BATCH_ENDPOINTS", "PROXIED_ENDPOINTS", "Endpoint"]


class Endpoint(StrEnum):
    CHAT = "/v1/chat/completions"
    EMBEDDINGS = "/v1/embeddings"
    COMPLETIONS = "/v1/completions"
    RESPONSES = "/v1/responses"
    MESSAGES = "/v1/messages"  # Anthropic's Messages API

    @classmethod
    def parse(cls, path: str) -> Endpoint | None:
        """The endpoint ``path`` names, in OpenAI's form or Azure's unprefixed one
        (``/chat/completions``); None for any other path."""
        if not path.startswith("/v1/"):
            path = "/v1" + path
        try:
            return cls(path)
        except ValueError:
            return None


# the endpoints a batch line may use, in the order error messages list them
BATCH_ENDPOINTS = (
    Endpoint.CHAT,
    Endpoint.EMBEDDINGS,
    Endpoint.COMPLETIONS,
    Endpoint.RESPONSES,
    Endpoint.MESSAGES,
)
# the OpenAI-dialect routes the gateway proxies synchronously
PROXIED_ENDPOINTS = (Endpoint.CHAT, Endpoint.EMBEDDINGS, Endpoint.COMPLETIONS, Endpoint.RESPONSES)
