"""``batchway batches``: drive the batches of a running gateway from the command line.

Every command is a client of a remote gateway (``--url``, ``--api-key``, or the environment
variables ``BATCHWAY_URL`` and ``BATCHWAY_API_KEY``), like any SDK: ``batch_…`` ids go to
the OpenAI routes, ``msgbatch_…`` ids (message batches and inline batches) to the Message
Batches routes. Ids and tables go to stdout, progress and messages to stderr. Failures are
one red line and an exit code (``ExitCode``); docs/cli.md lists them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from batchway.cli.batch_view import BatchView, ExitCode, Outcome, timestamp
from batchway.cli.input_file import (
    InlineRequests,
    check_input,
    check_writable,
    first_url,
    parse_metadata,
    writing,
)
from batchway.cli.watch import follow
from batchway.errors import ClientError, GatewayRefused, UsageError

if TYPE_CHECKING:
    from batchway.cli.remote import Remote

__all__ = ["DEFAULT_URL", "batches_app"]

DEFAULT_URL = "http://127.0.0.1:8080"
_SHOWN_ERRORS = 20  # problems of a refused input file listed after a wait
_WIDEST = 1_000  # columns a table may take before it is measured

batches_app = typer.Typer(
    help="Submit, follow and fetch batches on a running gateway (over HTTP).",
    no_args_is_help=True,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[str, typer.Option("--url", envvar="BATCHWAY_URL", help="The gateway's URL.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="BATCHWAY_API_KEY", help="A gateway key.", show_default=False),
]
IdArgument = Annotated[str, typer.Argument(metavar="ID", help="A batch_… or msgbatch_… id.")]
OutputOption = Annotated[
    Path | None,
    typer.Option(help="Write the results here once the batch has ended.", show_default=False),
]
ErrorsOption = Annotated[
    Path | None,
    typer.Option(
        "--errors",
        help="Write the requests that failed here once the batch has ended.",
        show_default=False,
    ),
]


def _connect(url: str, api_key: str | None) -> Remote:
    from batchway.cli.remote import Remote  # the openai SDK loads for these commands only

    if not api_key:
        raise UsageError("no API key: give --api-key or set BATCHWAY_API_KEY")
    return Remote(url, api_key)


def _exit_code(exc: ClientError) -> ExitCode:
    if isinstance(exc, UsageError):
        return ExitCode.USAGE
    if isinstance(exc, GatewayRefused) and not exc.retryable:
        return ExitCode.USAGE  # a 4xx: the call was wrong, asking again will not help
    return ExitCode.UNREACHABLE


@contextmanager
def _reporting() -> Iterator[None]:
    """Failures as one red line and an exit code; never a traceback."""
    try:
        yield
    except ClientError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(_exit_code(exc)) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(ExitCode.INTERRUPTED) from None


# -- after a batch has ended ------------------------------------------------------------------


def _counts(view: BatchView) -> str:
    return f"{view.total} requests, {view.succeeded} succeeded, {view.failed} failed"


def _reason(view: BatchView) -> str:
    if view.outcome is Outcome.FAILED:
        if not view.errors:
            return f"batch {view.id} failed"
        more = len(view.errors) - 1
        others = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        return f"batch {view.id} failed: {view.errors[0]}{others}"
    if view.outcome is Outcome.EXPIRED:
        return f"batch {view.id} expired before every request ran ({_counts(view)})"
    return f"batch {view.id} was cancelled ({_counts(view)})"


def _finish(remote: Remote, view: BatchView, output: Path | None, errors: Path | None) -> NoReturn:
    """Report how the batch ended, download what was asked, exit with the outcome's code."""
    assert view.outcome is not None
    colour = "green" if view.outcome is Outcome.COMPLETED else "red"
    err.print(f"batch {view.id} [{colour}]{view.outcome}[/{colour}]: {_counts(view)}")
    for problem in view.errors[:_SHOWN_ERRORS]:
        err.print(f"  {escape(problem)}")
    if len(view.errors) > _SHOWN_ERRORS:
        err.print(f"  … and {len(view.errors) - _SHOWN_ERRORS} more")
    if view.outcome is not Outcome.FAILED:  # a failed batch ran nothing: no results
        for path, failures in ((output, False), (errors, True)):
            if path is not None:
                with writing(path) as sink:
                    lines = remote.download(view, sink, errors=failures)
                err.print(f"wrote {path} ({lines} lines)")
    if view.outcome is not Outcome.COMPLETED:
        err.print(f"[red]error:[/red] {escape(_reason(view))}")
    raise typer.Exit(view.outcome.exit_code)


@contextmanager
def _detaching(batch_id: str) -> Iterator[None]:
    """Ctrl-C stops the watching, not the batch: say how to pick it up again."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(
            f"stopped watching; batch {batch_id} keeps running on the gateway. "
            f"Re-attach with: batchway batches watch {batch_id}"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None


# -- commands ---------------------------------------------------------------------------------


def _submit_file(
    remote: Remote, file: Path, endpoint: str | None, window: str | None, pairs: list[str] | None
) -> BatchView:
    endpoint = endpoint or first_url(file)
    metadata = parse_metadata(pairs)
    file_id, size = remote.upload(file)
    err.print(f"uploaded {escape(str(file))} as {file_id} ({size} bytes)")
    try:
        return remote.create_batch(
            file_id, endpoint=endpoint, window=window or "24h", metadata=metadata
        )
    except ClientError:
        remote.delete_file(file_id)  # no batch, so no use for the upload
        raise


def _submit_inline(
    remote: Remote, file: Path, endpoint: str | None, window: str | None, pairs: list[str] | None
) -> BatchView:
    if endpoint or window or pairs:
        raise UsageError(
            "--endpoint, --window and --metadata do not apply to --inline "
            "(an inline batch's endpoint is /v1/messages)"
        )
    requests = InlineRequests(file)
    try:
        view = remote.create_inline(requests.body())
    except GatewayRefused as exc:
        raise requests.explain(exc) from exc
    err.print(f"sent {len(requests.lines)} requests from {escape(str(file))}")
    return view


@batches_app.command()
def submit(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL: batch request lines ({custom_id, method, url, body}), "
            "or {custom_id, params} lines with --inline.",
            show_default=False,
        ),
    ],
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="The batch endpoint (default: the url of the first line, "
            "else /v1/chat/completions).",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="The completion window (default: 24h).", show_default=False)
    ] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(help="A key=value pair to keep with the batch (repeat).", show_default=False),
    ] = None,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline", help="Send the requests in the body (POST /v1/batches), no upload."
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the batch until it ends (Ctrl-C: stop watching).")
    ] = False,
    output: OutputOption = None,
    errors: ErrorsOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Upload a JSONL file and start a batch on it; print the batch id."""
    with _reporting():
        check_input(file)
        if (output or errors) and not wait:
            raise UsageError("--output and --errors need --wait")
        check_writable(output)
        check_writable(errors)
        with _connect(url, api_key) as remote:
            start = _submit_inline if inline else _submit_file
            view = start(remote, file, endpoint, window, metadata)
            with _detaching(view.id):
                out.print(view.id)  # at once, alone on stdout: `ID=$(batchway batches submit …)`
                if not wait:
                    err.print(f"follow it with: batchway batches watch {view.id}")
                    return
                ended = follow(remote, view.id, err)
            _finish(remote, ended, output, errors)


@batches_app.command()
def watch(
    batch_id: IdArgument,
    output: OutputOption = None,
    errors: ErrorsOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Follow a batch until it ends, then download its results (re-attach after Ctrl-C)."""
    with _reporting():
        check_writable(output)
        check_writable(errors)
        with _connect(url, api_key) as remote:
            with _detaching(batch_id):
                view = follow(remote, batch_id, err)
            _finish(remote, view, output, errors)


@batches_app.command("list")
def list_batches(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    every: Annotated[bool, typer.Option("--all", help="Every batch, page after page.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """List the key's batches, newest first (message and inline batches too)."""
    with _reporting(), _connect(url, api_key) as remote:
        views, more = remote.list_batches(limit=limit, every=every)
    if not views:
        err.print("no batches")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, overflow="fold")  # what the other commands take
    for header in ("status", "done", "failed", "created (UTC)"):
        table.add_column(header, no_wrap=True, overflow="fold")
    for view in views:
        table.add_row(
            view.id,
            view.status,
            f"{view.done}/{view.total}",
            str(view.failed),
            timestamp(view.created_at).removesuffix(" UTC"),
        )
    _print_whole(table)
    if more:
        err.print("more batches are older: --limit N or --all")


def _print_whole(table: Table) -> None:
    """Print ``table`` at its natural width, even wider than the terminal (which then wraps
    its lines): fitted to a narrow terminal, Rich would shrink the columns and cut ids."""
    natural = Measurement.get(out, out.options.update_width(_WIDEST), table).maximum
    if natural <= out.width:
        out.print(table)
        return
    wide = Console(
        file=out.file,
        width=natural,
        highlight=False,
        force_terminal=out.is_terminal,
        color_system=out.color_system,  # type: ignore[arg-type]  # a name Console accepts
    )
    wide.print(table)


@batches_app.command()
def get(batch_id: IdArgument, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Show a batch: status, counts, files, times and why its input was refused."""
    with _reporting(), _connect(url, api_key) as remote:
        view = remote.get(batch_id)
    width = max(len(label) for label, _ in view.rows)
    for label, value in (("id", view.id), *view.rows):
        # one line each, never wrapped: ids and URLs stay whole for copying
        out.print(f"[bold]{label:<{width}}[/bold]  {escape(value)}", soft_wrap=True)
    if view.errors:
        out.print("[bold]errors[/bold]")
        for problem in view.errors:
            out.print(f"  {escape(problem)}", soft_wrap=True)


@batches_app.command()
def cancel(batch_id: IdArgument, url: UrlOption = DEFAULT_URL, api_key: KeyOption = None) -> None:
    """Cancel a batch: requests not started are cancelled, those in flight finish."""
    with _reporting(), _connect(url, api_key) as remote:
        view = remote.cancel(batch_id)
    out.print(f"{view.id} {view.status}")


def _to_stdout(remote: Remote, view: BatchView, *, errors: bool) -> None:
    try:
        remote.download(view, sys.stdout.buffer, errors=errors)
        sys.stdout.buffer.flush()
    except BrokenPipeError:  # the reader has gone (`| head`): nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@batches_app.command()
def results(
    batch_id: IdArgument,
    errors: Annotated[
        bool, typer.Option("--errors", help="The requests that failed, not the results.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here, not to stdout.", show_default=False),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Print (or write) an ended batch's results, or with --errors its failed requests."""
    with _reporting():
        check_writable(output)
        with _connect(url, api_key) as remote:
            view = remote.get(batch_id)
            if not view.ended:
                raise UsageError(
                    f"batch {view.id} has not ended yet ({view.status}); "
                    f"follow it with: batchway batches watch {view.id}"
                )
            if view.kind == "openai" and not (
                view.error_file_id if errors else view.output_file_id
            ):
                which = "error" if errors else "output"
                err.print(f"batch {view.id} ({view.outcome}) has no {which} file")
            if output is None:
                _to_stdout(remote, view, errors=errors)
                return
            with writing(output) as sink:
                lines = remote.download(view, sink, errors=errors)
            err.print(f"wrote {output} ({lines} lines)")
