"""The ``batchway`` command: serve, worker, migrate, keys, usage, logs, batches, demo,
fake-upstream."""

from __future__ import annotations

import asyncio
import math
import os
import signal
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from batchway.cli.analytics import logs_command, usage_command
from batchway.cli.batches import batches_app
from batchway.cli.common import ConfigOption, console
from batchway.cli.common import load_settings as _config
from batchway.cli.common import with_gateway as _with_gateway
from batchway.cli.log_output import LogFormat, LogLevel, setup_logging
from batchway.collector import set_for_serving
from batchway.core.files import human_size
from batchway.errors import GatewayError, NotFound

if TYPE_CHECKING:  # loaded by the commands that open a gateway, so the others start fast
    from batchway.gateway import Gateway

__all__ = ["app"]

app = typer.Typer(
    help="batchway: an LLM gateway for batch and long-running work.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage gateway keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(batches_app, name="batches")


class BudgetPeriodOption(StrEnum):
    day = "day"
    month = "month"


LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", help="The lowest level logged.", case_sensitive=False)
]
LogFormatOption = Annotated[
    LogFormat, typer.Option("--log-format", help="text lines, or one JSON object a line.")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"batchway {version('batchway')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """batchway: an LLM gateway for batch and long-running work."""


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run batches elsewhere.")
    ] = False,
    log_level: LogLevelOption = LogLevel.info,
    log_format: LogFormatOption = LogFormat.text,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log a line per request (costs some speed).")
    ] = False,
) -> None:
    """Run the gateway (and, unless --no-worker, its batch worker)."""
    from batchway.api.app import create_app
    from batchway.providers.registry import simulated_providers
    from batchway.server import serve_forever

    settings = _config(config)
    setup_logging(log_level, log_format)
    if settings.admin_key is None:
        console.print("[yellow]No admin_key configured: the /admin API is disabled.[/yellow]")
    if simulated_providers(settings):
        console.print("[yellow]A simulated provider is configured: its answers are fake.[/yellow]")
    serve_forever(
        create_app(settings, run_worker=False if no_worker else None),
        host,
        port,
        shutdown_timeout=math.ceil(settings.worker.shutdown_grace_seconds),
        on_ready=lambda handle: console.print(f"batchway listening on {handle.base_url}"),
        own_logging=False,
        access_log=access_log,
    )


@app.command()
def worker(
    config: ConfigOption = None,
    log_level: LogLevelOption = LogLevel.info,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run only the batch worker (for more batch throughput on other machines).

    SIGTERM or Ctrl-C stops it gracefully: calls in flight finish and are recorded."""
    setup_logging(log_level, log_format)

    async def run(gateway: Gateway) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, gateway.worker.stop)
        with set_for_serving():
            await gateway.worker.run()

    _with_gateway(_config(config), run)


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Bring the database schema up to date (serve does this on start too)."""

    async def nothing(_: Gateway) -> None:
        return None

    _with_gateway(_config(config), nothing)
    console.print("database is up to date")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key's owner.")],
    config: ConfigOption = None,
    model: Annotated[
        list[str] | None, typer.Option(help="A model the key may use (repeat); default: all.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    rph: Annotated[int | None, typer.Option(help="Requests per hour.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    tph: Annotated[int | None, typer.Option(help="Tokens per hour.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Spending limit in USD.")] = None,
    budget_period: Annotated[
        BudgetPeriodOption | None, typer.Option(help="Reset the budget every day or month.")
    ] = None,
    max_storage_bytes: Annotated[
        int | None,
        typer.Option(min=1, help="Bytes the key's files may take (default: the config's)."),
    ] = None,
    max_files: Annotated[
        int | None,
        typer.Option(min=1, help="Files the key may hold at once (default: the config's)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print the key alone (for scripts).")
    ] = False,
) -> None:
    """Create a gateway key; the key is printed once and never stored."""
    try:
        key, secret = _with_gateway(
            _config(config),
            lambda gateway: gateway.keys.create(
                name=name,
                models=model,
                rpm=rpm,
                rph=rph,
                tpm=tpm,
                tph=tph,
                budget_usd=budget_usd,
                budget_period=budget_period.value if budget_period is not None else None,
                max_storage_bytes=max_storage_bytes,
                max_files=max_files,
            ),
        )
    except GatewayError as exc:  # a limit out of range
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    if quiet:
        print(secret)
    else:
        console.print(f"id:  {key.id}\nkey: [bold]{secret}[/bold]")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List gateway keys."""
    keys = _with_gateway(_config(config), lambda gateway: gateway.keys.list())
    table = Table(
        "id", "name", "models", "rpm", "rph", "tpm", "tph", "budget_usd", "storage", "revoked"
    )
    table.columns[0].no_wrap = True  # the id is what `keys update` and `revoke` take
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            ", ".join(key.models) if key.models is not None else "all",
            str(key.rpm or ""),
            str(key.rph or ""),
            str(key.tpm or ""),
            str(key.tph or ""),
            f"{key.budget_usd} / {key.budget_period}"
            if key.budget_period and key.budget_usd is not None
            else str(key.budget_usd or ""),
            " / ".join(
                part
                for part in (
                    human_size(key.max_storage_bytes) if key.max_storage_bytes else "",
                    f"{key.max_files} files" if key.max_files else "",
                )
                if part
            ),
            "yes" if key.revoked else "",
        )
    console.print(table)


_CLEAR = 0  # `keys update --rpm 0` clears a limit


@keys_app.command("update")
def keys_update(
    key_id: str,
    config: ConfigOption = None,
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    rpm: Annotated[int | None, typer.Option(min=0, help="Requests per minute; 0 clears.")] = None,
    rph: Annotated[int | None, typer.Option(min=0, help="Requests per hour; 0 clears.")] = None,
    tpm: Annotated[int | None, typer.Option(min=0, help="Tokens per minute; 0 clears.")] = None,
    tph: Annotated[int | None, typer.Option(min=0, help="Tokens per hour; 0 clears.")] = None,
    budget_usd: Annotated[
        float | None, typer.Option(min=0, help="Spending limit in USD; 0 clears.")
    ] = None,
    budget_period: Annotated[
        BudgetPeriodOption | None, typer.Option(help="Reset the budget every day or month.")
    ] = None,
) -> None:
    """Change a key's name, limits or budget; options left out stay as they are."""
    changes: dict[str, object] = {"name": name} if name is not None else {}
    for column, value in (
        ("rpm", rpm),
        ("rph", rph),
        ("tpm", tpm),
        ("tph", tph),
        ("budget_usd", budget_usd),
    ):
        if value is not None:
            changes[column] = None if value == _CLEAR else value
    if budget_period is not None:
        changes["budget_period"] = budget_period.value
    if not changes:
        console.print("[red]error:[/red] nothing to change: name an option (see --help)")
        raise typer.Exit(2)
    try:
        key = _with_gateway(_config(config), lambda gateway: gateway.keys.update(key_id, changes))
    except GatewayError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    console.print(f"updated {key.id} ({key.name})")


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke a gateway key and cancel its batches that are still running."""
    try:
        cancelled = _with_gateway(_config(config), lambda gateway: gateway.admin.revoke_key(key_id))
    except NotFound as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    console.print(f"revoked {key_id}; {cancelled} running batches cancelling")


@app.command()
def demo(
    file: Annotated[Path, typer.Option(help="A batch input file (JSONL).")] = Path(
        "examples/batch.jsonl"
    ),
    config: ConfigOption = None,
) -> None:
    """Start the gateway, run a batch through it with the OpenAI SDK, and print the results."""
    from batchway.cli.demo import run_demo

    if not file.is_file():
        console.print(f"[red]error:[/red] no such file: {file}")
        raise typer.Exit(2)
    run_demo(_config(config), file, console)


@app.command("fake-upstream")
def fake_upstream(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9100,
    slow_seconds: Annotated[
        float, typer.Option(min=0, help="How long the model fake-slow takes to answer.")
    ] = 0.2,
) -> None:
    """Run the fake OpenAI-compatible upstream that the tests and benchmarks use."""
    from batchway.testing.fake_upstream import main

    main(host, port, slow_seconds=slow_seconds)


app.command("usage")(usage_command)
app.command("logs")(logs_command)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
