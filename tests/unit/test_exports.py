"""Every public module's ``__all__`` names only things the module really has, once each.

See encode/httpx:tests/test_exported_members.py.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import batchway

SKIPPED = "batchway.store.migrations"  # Alembic scripts: importing env.py runs a migration


def _public_module_names() -> list[str]:
    names = ["batchway"]
    for info in pkgutil.walk_packages(batchway.__path__, prefix="batchway."):
        if info.name == SKIPPED or info.name.startswith(SKIPPED + "."):
            continue
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


MODULES = _public_module_names()
PACKAGES = {name for name in MODULES if hasattr(importlib.import_module(name), "__path__")}
# packages that only hold a docstring export nothing and need no __all__
EXPORTING = [name for name in MODULES if hasattr(importlib.import_module(name), "__all__")]


def test_the_walk_finds_the_package_tree() -> None:
    expected = {
        "batchway.config",
        "batchway.errors",
        "batchway.core.validation",
        "batchway.core.states",
        "batchway.providers.simulated",
        "batchway.dialects.openai.wire",
        "batchway.store.sql",
        "batchway.worker.runner",
        "batchway.testing",
    }
    assert expected <= set(MODULES)
    assert not any(name.startswith(SKIPPED) for name in MODULES)
    assert not any("._" in name for name in MODULES)
    assert "batchway.testing" in EXPORTING


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("name", EXPORTING)
def test_all_names_exist_and_are_unique(name: str) -> None:
    module = _module(name)
    exported = module.__all__

    assert isinstance(exported, list | tuple)
    assert all(isinstance(item, str) for item in exported)
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == [], f"{name}.__all__ names what it does not define"
    duplicates = sorted({item for item in exported if exported.count(item) > 1})
    assert duplicates == [], f"{name}.__all__ repeats names"
    assert not [item for item in exported if item.startswith("_")]


@pytest.mark.parametrize("name", sorted(set(MODULES) - PACKAGES))
def test_every_public_module_declares_all(name: str) -> None:
    assert hasattr(_module(name), "__all__"), f"{name} has no __all__"
