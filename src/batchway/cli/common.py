"""What every ``batchway`` command shares: the console, the ``--config`` option, loading
the config and running work against an open gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from batchway.config import Config, default_config, load_config
from batchway.errors import ConfigError

if TYPE_CHECKING:  # the gateway and providers load only for the commands that open one
    from batchway.gateway import Gateway

__all__ = ["ConfigOption", "console", "load_settings", "with_gateway"]

T = TypeVar("T")

console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="BATCHWAY_CONFIG",
        help="YAML config file (default: SQLite, local files and a simulated provider).",
    ),
]


def load_settings(path: Path | None) -> Config:
    """The config at ``path`` (the default config when None); a bad one exits with 2."""
    from batchway.providers.registry import KINDS

    try:
        return load_config(path, kinds=KINDS) if path is not None else default_config()
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc


def with_gateway(config: Config, work: Callable[[Gateway], Awaitable[T]]) -> T:
    """Open a gateway on ``config`` (migrating its database), run ``work`` on it, close it."""
    from batchway.gateway import open_gateway

    async def run() -> T:
        async with open_gateway(config) as gateway:
            return await work(gateway)

    return asyncio.run(run())
