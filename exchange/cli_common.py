"""What every `onceonly` command module shares: the consoles, the global options, the
home they name, JSON output, tables and date options.

It imports no command module, so `exchange.cli` and its sub-command modules
(`cli_ledger`, `cli_audit`, `cli_service`) all import it directly, and they read the
one `options` object the root callback fills in.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from exchange.errors import InvalidArgument
from exchange.home import Home

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@dataclass
class Options:
    """Global options, set by the root callback before any command runs."""

    debug: bool = False
    home: Path | None = None


options = Options()


def home() -> Home:
    """The home the command works on: `--home`, else `ONCEONLY_HOME`, else `./.onceonly`."""
    return Home.locate(options.home)


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=plain) + "\n")


def plain(value: object) -> object:
    """JSON for what the database hands back: times as ISO 8601, bytes as hex."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    shown = Table(title=title)
    for column in columns:
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float)
        shown.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(
                "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)
            )
        shown.add_row(*(escape(c) for c in cells))
    return shown


def date_option(name: str, value: str | None) -> dt.date | None:
    """An option's YYYY-MM-DD value as a date (None when not given)."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"{name} takes a date, YYYY-MM-DD, got {value!r}") from None
