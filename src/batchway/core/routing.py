"""Routing: which provider serves a public model name, and under which upstream name.

In a batch, a public name with the ``-batch`` suffix (``gpt-4o-mini-batch``) names the model
without it, unless the suffixed name is configured itself: clients of batch-only services
write model names that way. Synchronous routes never strip the suffix.

A router may also know other names (aliases) of public models: the composition root gives it
the deployment names of the Azure dialect. A batch line may name its model by an alias, in
any dialect; an alias never shadows a public name (the config refuses that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batchway.config import Config

__all__ = ["BATCH_SUFFIX", "Route", "Router"]

BATCH_SUFFIX = "-batch"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One way to serve a public model: a provider and its own name for the model."""

    provider: str
    model: str
    weight: float = 1.0


class Router:
    """Resolves public model names from the config (held in memory: no I/O per request)."""

    def __init__(self, config: Config, aliases: Mapping[str, str] | None = None) -> None:
        self._routes = {
            name: tuple(
                Route(provider=r.provider, model=r.model, weight=r.weight)
                for r in config.routes(name)
            )
            for name in config.models
        }
        self._upstream_names = {
            (name, route.provider): route.model
            for name, routes in self._routes.items()
            for route in routes
        }
        # only aliases of configured models, and never one that is a public name itself
        self._aliases = {
            alias: model
            for alias, model in (aliases or {}).items()
            if model in self._routes and alias not in self._routes
        }

    @property
    def public_models(self) -> list[str]:
        return sorted(self._routes)

    def routes(self, public_model: str) -> tuple[Route, ...]:
        """The routes of a model, first choice first; empty when the model is unknown."""
        return self._routes.get(public_model, ())

    def public_model(self, name: str) -> str | None:
        """The public model ``name`` names: itself when configured, else the model it is an
        alias of; None when it is neither."""
        if name in self._routes:
            return name
        return self._aliases.get(name)

    def batch_model(self, name: str) -> str | None:
        """The public model a batch line's ``model`` names: as ``public_model`` says, else
        the name less a ``-batch`` suffix when that is configured; None otherwise."""
        public = self.public_model(name)
        if public is not None:
            return public
        base = name.removesuffix(BATCH_SUFFIX)
        if base != name and base in self._routes:
            return base
        return None

    def route(self, public_model: str) -> Route | None:
        """The first-choice route of a model, or None when it is unknown."""
        routes = self._routes.get(public_model)
        return routes[0] if routes else None

    def upstream_model(self, public_model: str, provider: str) -> str | None:
        """The provider's own name for a public model (None if it has no such route)."""
        return self._upstream_names.get((public_model, provider))
