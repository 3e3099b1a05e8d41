"""Unit tests of the provider kinds: ``batchway.providers.registry.KINDS`` against the docs,
and how an entry's kind is checked when the config is loaded and when providers are built."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from batchway.config import Config, ProviderConfig, default_config, load_config
from batchway.errors import ConfigError
from batchway.providers import anthropic, azure_openai, openai, openai_compatible, simulated
from batchway.providers.registry import KINDS, build_provider, simulated_providers

DOCS = Path(__file__).resolve().parents[2] / "docs"
# the error for an unknown kind, as it was while the kinds were a Literal in config.py
UNKNOWN_KIND = "Input should be 'openai-compatible', 'openai', 'azure', 'anthropic' or 'simulated'"


def documented_kinds(page: Path) -> list[str]:
    """The kinds in the first column of the page's ``| kind | …`` table."""
    kinds: list[str] = []
    in_table = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("| kind |"):
            in_table = True
        elif in_table and line.startswith("|"):
            match = re.match(r"\| \[?`([a-z-]+)`", line)
            if match:
                kinds.append(match.group(1))
        elif in_table:
            break
    return kinds


@pytest.mark.parametrize("page", ["providers.md", "configuration.md"])
def test_the_registry_has_exactly_the_documented_kinds(page: str) -> None:
    assert documented_kinds(DOCS / page) == list(KINDS)


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_has_its_page(name: str) -> None:
    assert (DOCS / "providers" / f"{name}.md").is_file()


@pytest.mark.parametrize(
    "module",
    [openai_compatible, openai, azure_openai, anthropic, simulated],
    ids=lambda module: module.__name__,
)
def test_each_module_declares_its_kind_under_its_provider_type(module: ModuleType) -> None:
    kind = module.KIND
    assert kind.name == module.PROVIDER_TYPE
    assert KINDS[kind.name] is kind


def write(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "batchway.yaml"
    path.write_text(f"providers:\n  pigeons: {entry}\n", encoding="utf-8")
    return path


def test_a_made_up_kind_is_refused_when_the_config_is_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "{kind: carrier-pigeon}")

    with pytest.raises(ConfigError) as caught:
        load_config(path, kinds=KINDS)

    assert caught.value.message == f"invalid config {path}: providers.pigeons.kind: {UNKNOWN_KIND}"


@pytest.mark.parametrize("value", ["5", "[azure]", "''", "OpenAI"])
def test_a_kind_that_is_not_a_kind_name_gets_the_same_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(UNKNOWN_KIND)):
        load_config(write(tmp_path, f"{{kind: {value}}}"), kinds=KINDS)


@pytest.mark.parametrize("kind", ["openai-compatible", "azure"])
def test_a_kind_without_a_default_endpoint_needs_a_base_url(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, f"{{kind: {kind}}}")

    with pytest.raises(ConfigError) as caught:
        load_config(path, kinds=KINDS)

    assert caught.value.message == (
        f"invalid config {path}: providers.pigeons: "
        f"Value error, an {kind} provider needs a base_url"
    )


@pytest.mark.parametrize("kind", ["openai", "anthropic", "simulated"])
def test_kinds_with_an_endpoint_of_their_own_need_no_base_url(tmp_path: Path, kind: str) -> None:
    config = load_config(write(tmp_path, f"{{kind: {kind}}}"), kinds=KINDS)

    assert config.providers["pigeons"].base_url is None


def test_an_azure_resource_stands_for_its_endpoint(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "{kind: azure, resource: my-res}"), kinds=KINDS)

    assert config.providers["pigeons"].base_url == "https://my-res.openai.azure.com"


def test_an_azure_base_url_wins_over_its_resource(tmp_path: Path) -> None:
    entry = "{kind: azure, resource: my-res, base_url: 'https://proxy.invalid'}"
    config = load_config(write(tmp_path, entry), kinds=KINDS)

    assert config.providers["pigeons"].base_url == "https://proxy.invalid"


def test_the_default_config_names_known_kinds_only() -> None:
    assert {entry.kind for entry in default_config().providers.values()} <= set(KINDS)


# -- a config built without load_config: the registry checks as it builds ----------------------


def test_building_a_provider_of_a_made_up_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="provider 'pigeons': unknown kind 'carrier-pigeon'"):
        build_provider("pigeons", ProviderConfig(kind="carrier-pigeon"))


def test_building_a_provider_without_the_base_url_it_needs_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match="provider 'up': an openai-compatible provider needs a base_url"
    ):
        build_provider("up", ProviderConfig(kind="openai-compatible"))


async def test_building_an_azure_provider_takes_its_endpoint_from_the_resource() -> None:
    provider = build_provider("az", ProviderConfig(kind="azure", resource="my-res"))
    try:
        assert isinstance(provider, azure_openai.AzureOpenAIProvider)
    finally:
        await provider.close()


@pytest.mark.parametrize(
    ("kind", "provider_class"),
    [
        ("openai-compatible", openai_compatible.OpenAICompatibleProvider),
        ("openai", openai.OpenAIProvider),
        ("azure", azure_openai.AzureOpenAIProvider),
        ("anthropic", anthropic.AnthropicProvider),
        ("simulated", simulated.SimulatedProvider),
    ],
)
async def test_each_kind_builds_its_provider(kind: str, provider_class: type) -> None:
    entry = ProviderConfig(kind=kind, base_url="http://upstream.invalid/v1")
    provider = build_provider("p", entry)
    try:
        assert type(provider) is provider_class
        assert provider.name == "p"
    finally:
        await provider.close()


def test_simulated_providers_are_named_by_their_kind() -> None:
    config = Config.model_validate(
        {
            "providers": {
                "sim": {"kind": "simulated"},
                "up": {"kind": "openai-compatible", "base_url": "http://upstream.invalid/v1"},
                "also-sim": {"kind": "simulated"},
            }
        }
    )

    assert simulated_providers(config) == ["sim", "also-sim"]
