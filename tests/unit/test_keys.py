"""Key settings the store cannot hold are refused with a 400, on creation and on update."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from batchway.core.keys import MAX_KEY_BYTES, MAX_KEY_LIMIT, KeyService
from batchway.errors import InvalidRequest
from batchway.testing.memory import MemoryStore

OUT_OF_RANGE = [
    ("rpm", MAX_KEY_LIMIT + 1),
    ("tpm", 2**63),
    ("tph", 0),
    ("rph", -1),
    ("max_files", MAX_KEY_LIMIT + 1),
    ("max_storage_bytes", MAX_KEY_BYTES + 1),
    ("budget_usd", math.nan),
    ("budget_usd", math.inf),
    ("budget_usd", -0.5),
]


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE)
async def test_a_setting_out_of_range_is_refused_on_creation(name: str, value: float) -> None:
    keys = KeyService(MemoryStore(), admin_key=None)

    with pytest.raises(InvalidRequest) as refused:
        await keys.create(name="k", **{name: value})

    assert refused.value.param == name
    assert await keys.list() == []


@pytest.mark.parametrize(("name", "value"), OUT_OF_RANGE)
async def test_a_setting_out_of_range_is_refused_on_update(name: str, value: float) -> None:
    keys = KeyService(MemoryStore(), admin_key=None)
    key, _ = await keys.create(name="k", rpm=5)

    with pytest.raises(InvalidRequest) as refused:
        await keys.update(key.id, {name: value})

    assert refused.value.param == name
    assert (await keys.list())[0].rpm == 5


async def test_the_largest_settings_and_none_are_taken() -> None:
    keys = KeyService(MemoryStore(), admin_key=None)
    largest = {"rpm": MAX_KEY_LIMIT, "max_storage_bytes": MAX_KEY_BYTES, "budget_usd": 1e300}

    key, _ = await keys.create(name="k", **largest)
    updated = await keys.update(key.id, {"rpm": None, "budget_usd": 0.0})

    assert (key.rpm, key.max_storage_bytes, key.budget_usd) == (
        MAX_KEY_LIMIT,
        MAX_KEY_BYTES,
        1e300,
    )
    assert (updated.rpm, updated.budget_usd) == (None, 0.0)


class _CountingStore(MemoryStore):
    """The memory store, counting key reads by id."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_key(self, key_id: str) -> Any:
        self.reads += 1
        await asyncio.sleep(0)  # the read takes a turn of the loop, as a database's does
        return await super().get_key(key_id)


async def test_many_lines_of_a_key_asking_at_once_read_it_once() -> None:
    store = _CountingStore()
    keys = KeyService(store, admin_key=None)
    key, _ = await keys.create(name="k", budget_usd=5)

    principals = await asyncio.gather(*(keys.principal_by_id(key.id) for _ in range(64)))

    assert store.reads == 1
    assert {p.key_id for p in principals if p is not None} == {key.id}
    assert await keys.principal_by_id("key_missing") is None
