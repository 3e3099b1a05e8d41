"""The provider kinds the config may name, and the providers of a config, built once and
shared by the API and the worker.

``KINDS`` is the one table of kinds: a kind is its module's ``KIND`` and an entry here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from batchway.config import Config, ProviderConfig
from batchway.core.ports import Provider
from batchway.errors import ConfigError
from batchway.providers import anthropic, azure_openai, openai, openai_compatible, simulated
from batchway.providers.kind import ProviderKind

__all__ = ["KINDS", "ProviderRegistry", "build_provider", "simulated_providers"]

# in the order the config's error for an unknown kind lists them
KINDS: Mapping[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        openai_compatible.KIND,
        openai.KIND,
        azure_openai.KIND,
        anthropic.KIND,
        simulated.KIND,
    )
}


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The provider object for one ``providers:`` entry (checked by its kind again, for a
    config that was not loaded with ``load_config``)."""
    kind = KINDS.get(config.kind)
    if kind is None:
        raise ConfigError(f"provider {name!r}: unknown kind {config.kind!r}")
    try:
        checked = kind.check(config)
    except ValueError as exc:
        raise ConfigError(f"provider {name!r}: {exc}") from exc
    return kind.build(name, checked)


def simulated_providers(config: Config) -> list[str]:
    """The names of the providers whose answers are made up (as their costs would be)."""
    return [
        name
        for name, entry in config.providers.items()
        if (kind := KINDS.get(entry.kind)) is not None and kind.simulated
    ]


class ProviderRegistry:
    """Provider objects by name."""

    def __init__(self, config: Config) -> None:
        self._providers = {name: build_provider(name, pc) for name, pc in config.providers.items()}

    def __getitem__(self, name: str) -> Provider:
        return self._providers[name]

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
