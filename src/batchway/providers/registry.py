"""The providers of a config, built once and shared by the API and the worker."""

from __future__ import annotations

from collections.abc import Iterator

from batchway.config import Config, ProviderConfig
from batchway.errors import ConfigError
from batchway.providers.anthropic import AnthropicProvider
from batchway.providers.azure_openai import AzureOpenAIProvider
from batchway.providers.base import Provider
from batchway.providers.openai import OpenAIProvider
from batchway.providers.openai_compatible import OpenAICompatibleProvider
from batchway.providers.simulated import SimulatedProvider

__all__ = ["ProviderRegistry", "build_provider"]


def build_provider(name: str, config: ProviderConfig) -> Provider:
    """The provider object for one ``providers:`` entry."""
    if config.kind == "openai-compatible":
        return OpenAICompatibleProvider(name, config)
    if config.kind == "openai":
        return OpenAIProvider(name, config)
    if config.kind == "azure":
        return AzureOpenAIProvider(name, config)
    if config.kind == "anthropic":
        return AnthropicProvider(name, config)
    if config.kind == "simulated":
        return SimulatedProvider(name, config)
    raise ConfigError(f"provider {name!r}: unknown kind {config.kind!r}")


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
