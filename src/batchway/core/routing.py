"""Routing: which provider serves a public model name, and under which upstream name."""

from __future__ import annotations

from dataclasses import dataclass

from batchway.config import Config

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One way to serve a public model: a provider and its own name for the model."""

    provider: str
    model: str
    weight: float = 1.0


class Router:
    """Resolves public model names from the config (held in memory: no I/O per request)."""

    def __init__(self, config: Config) -> None:
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

    @property
    def public_models(self) -> list[str]:
        return sorted(self._routes)

    def routes(self, public_model: str) -> tuple[Route, ...]:
        """The routes of a model, first choice first; empty when the model is unknown."""
        return self._routes.get(public_model, ())

    def route(self, public_model: str) -> Route | None:
        """The first-choice route of a model, or None when it is unknown."""
        routes = self._routes.get(public_model)
        return routes[0] if routes else None

    def upstream_model(self, public_model: str, provider: str) -> str | None:
        """The provider's own name for a public model (None if it has no such route)."""
        return self._upstream_names.get((public_model, provider))
