"""What a provider kind is: the ``kind:`` of a ``providers:`` entry, how an entry of that kind
is checked and how its provider is built.

Each provider module declares its ``KIND`` below its provider class, and
`batchway.providers.registry` lists them all, so that a new kind is one module and one entry
there. The config checks entries with ``ProviderKind.check`` as it is loaded (see
``batchway.config.load_config``); the registry checks again as it builds providers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from batchway.config import ProviderConfig
from batchway.core.ports import Provider

__all__ = ["ProviderKind"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderKind:
    """One kind of provider."""

    name: str  # as the config writes it: ``kind: azure``
    build: Callable[[str, ProviderConfig], Provider]  # (provider name, its entry)
    needs_base_url: bool = False  # True: no default endpoint, the entry must give one
    # fills in what an entry implies before it is checked (Azure: base_url from resource)
    complete: Callable[[ProviderConfig], ProviderConfig] | None = None
    simulated: bool = False  # answers are made up in-process: labelled fakes, free

    def check(self, config: ProviderConfig) -> ProviderConfig:
        """The entry as this kind's provider takes it; ValueError says what it lacks."""
        if self.complete is not None:
            config = self.complete(config)
        if self.needs_base_url and not config.base_url:
            raise ValueError(f"an {self.name} provider needs a base_url")
        return config
