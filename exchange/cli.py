"""The `onceonly` command: a thin edge over the library.

Each command parses its options, calls one library function and renders the result, as a
Rich table or, with `--json`, as JSON on stdout. Library errors are caught once, in
`main`: one line on stderr and exit 1 (a traceback only with `--debug`); usage errors
exit 2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.errors import ConnectorError
from exchange.errors import ExchangeError
from exchange.home import HOME_ENV, Home, init_home
from exchange.synth import DEFAULT_TODAY
from ledger.errors import LedgerError

app = typer.Typer(
    name="onceonly",
    help="Exchange broker for sharing data between government departments: "
    "facts instead of certificates, every question on a signed ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@dataclass
class _Options:
    """Global options, set by the root callback before any command runs."""

    debug: bool = False
    home: Path | None = None


_options = _Options()

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"onceonly {version('onceonly')}")
        raise typer.Exit()


@app.callback()
def _root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help=f"The onceonly home (default: ${HOME_ENV} or ./.onceonly)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    _options.debug = debug
    _options.home = home


def _home() -> Home:
    return Home.locate(_options.home)


def _emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@app.command()
def init(as_json: JsonOption = False) -> None:
    """Create the onceonly home: exchange database, ledger folder and keys (files 0600)."""
    home = init_home(_home())
    if as_json:
        _emit_json(home.describe())
        return
    out.print(f"[green]created[/green] onceonly home at {escape(str(home.root))}")
    _print_home(home)


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Show where the home is and what it holds."""
    home = _home().require()
    if as_json:
        _emit_json(home.describe())
        return
    out.print(f"onceonly home at {escape(str(home.root))}")
    _print_home(home)


def _print_home(home: Home) -> None:
    table = Table(box=None)
    for column in ("file", "path", "mode"):
        table.add_column(column)
    files: dict[str, dict[str, object]] = home.describe()["files"]  # type: ignore[assignment]
    for name, info in files.items():
        mode = str(info["mode"]) if info["exists"] else "[dim]not yet created[/dim]"
        table.add_row(name, escape(str(info["path"])), mode)
    out.print(table)


@app.command()
def synth(
    persons: Annotated[int, typer.Option("--persons", help="How many people live in the city.")],
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write the departments' sources to.")
    ],
    dirty_rate: Annotated[
        float, typer.Option("--dirty-rate", help="Share of rows given a known fault (0 to 0.2).")
    ] = 0.0,
    today: Annotated[
        str,
        typer.Option("--today", help="The city's 'today', YYYY-MM-DD (fixed, for determinism)."),
    ] = DEFAULT_TODAY.isoformat(),
    as_json: JsonOption = False,
) -> None:
    """Generate the synthetic city: every department's sources in its native format."""
    from exchange.errors import InvalidArgument
    from exchange.synth.city import generate_city

    try:
        day = dt.date.fromisoformat(today)
    except ValueError:
        raise InvalidArgument(f"--today must be a date as YYYY-MM-DD, got {today!r}") from None
    started = time.perf_counter()
    summary = generate_city(out_dir, persons=persons, seed=seed, dirty_rate=dirty_rate, today=day)
    seconds = time.perf_counter() - started
    if as_json:
        _emit_json({**summary.to_dict(), "out": str(out_dir), "seconds": round(seconds, 3)})
        return
    table = Table(title=f"Synthetic city: {summary.persons:,} persons, seed {seed}")
    for column in ("department", "dataset", "format", "rows", "faults"):
        numeric = column in ("rows", "faults")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for d in summary.datasets:
        fmt = f"{d.format} {d.encoding}" if d.encoding else d.format
        table.add_row(d.department, d.dataset, fmt, f"{d.rows:,}", f"{d.faults:,}")
    out.print(table)
    out.print(
        f"{summary.households:,} households, {summary.alive:,} alive, "
        f"{summary.deceased:,} deceased; today is {summary.today}."
    )
    if summary.faults_by_kind:
        kinds = ", ".join(f"{k} {v:,}" for k, v in summary.faults_by_kind.items())
        out.print(f"Planted faults ({sum(summary.faults_by_kind.values()):,}): {kinds}")
        out.print(f"Ground truth: {escape(str(out_dir / 'faults.jsonl'))}")
    out.print(f"Wrote {escape(str(out_dir))} in {seconds:.1f} s.")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 domain failure, 2 usage)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        # Typer reports usage errors itself (exit 2); domain errors come through to here.
        command.main(args=args, prog_name="onceonly", standalone_mode=True)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except (ExchangeError, ConnectorError, LedgerError) as problem:
        return _fail(str(problem))
    except OSError as problem:
        where = f" {problem.filename}" if problem.filename else ""
        return _fail(f"{problem.strerror or problem}:{where}")
    except Exception as problem:  # a bug: still one line, the traceback behind --debug
        return _fail(f"internal error ({type(problem).__name__}: {problem}); rerun with --debug")
    return 0


def _fail(message: str) -> int:
    if _options.debug or os.environ.get("ONCEONLY_DEBUG") == "1":
        traceback.print_exc()
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
