"""`onceonly ledger …` and `onceonly witness …`: the ledger's commands, a thin edge.

Each command calls one function of `exchange.ledgerlink` (or `ledger`) and prints the
result; signed notes and receipts are printed byte for byte, never through Rich, so
they can be piped into a file and verified elsewhere. Errors propagate to
`exchange.cli.main`, which prints one line and exits 1.

`exchange.cli` imports this module to register the apps; both take the consoles, the
global options and JSON output from `exchange.cli_common`.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from exchange.cli_common import JsonOption, out
from exchange.cli_common import emit_json as _emit_json
from exchange.cli_common import home as _home

ledger_app = typer.Typer(
    help="The access ledger: checkpoints, receipts, proofs, audit, tiles.", no_args_is_help=True
)
witness_app = typer.Typer(
    help="The witness: cosign checkpoints that extend what it cosigned before.",
    no_args_is_help=True,
)

IndexOption = Annotated[int, typer.Option("--index", min=0, help="The entry's index in the log.")]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _verbatim(text: str) -> None:
    """Print a note or receipt exactly: no wrapping, no markup, its own final newline."""
    sys.stdout.write(text)
    sys.stdout.flush()


@ledger_app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Sign a checkpoint of the ledger as it is, cosigned by the home's witness; print it."""
    from exchange import ledgerlink

    _verbatim(ledgerlink.checkpoint(_home()))


@ledger_app.command("vkey")
def ledger_vkey(as_json: JsonOption = False) -> None:
    """Print the log's verifier key and the witness's cosignature verifier key."""
    from exchange import ledgerlink

    home = _home().require()
    keys = {
        "log": ledgerlink.log_verifier(home).verifier_key(),
        "witness": ledgerlink.witness_verifier(home).verifier_key(),
    }
    if as_json:
        _emit_json(keys)
        return
    for label, vkey in keys.items():
        sys.stdout.write(f"{label + ':':<9}{vkey}\n")


@ledger_app.command("prove")
def ledger_prove(index: IndexOption) -> None:
    """Print the c2sp.org/tlog-proof receipt of an entry, verifiable offline."""
    from exchange import ledgerlink

    _verbatim(ledgerlink.prove(_home(), index))


@ledger_app.command("consistency")
def ledger_consistency(
    size1: Annotated[int, typer.Option("--from", min=0, help="The older tree size.")],
    size2: Annotated[
        int | None,
        typer.Option("--to", min=0, help="The newer tree size (default: the latest checkpoint's)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the consistency proof between two tree sizes (what a witness needs)."""
    from exchange import ledgerlink

    proof = ledgerlink.consistency(_home(), size1, size2).to_json()
    if as_json:
        _emit_json(proof)
        return
    out.print(f"size {proof['size1']} root {proof['root1']}", soft_wrap=True)
    out.print(f"size {proof['size2']} root {proof['root2']}", soft_wrap=True)
    out.print(f"proof ({len(proof['proof'])} hashes):")
    for line in proof["proof"]:
        out.print(f"  {line}")


@ledger_app.command("verify")
def ledger_verify(as_json: JsonOption = False) -> None:
    """Audit the whole ledger: every entry rehashed, the tree rebuilt, every checkpoint matched."""
    from exchange import ledgerlink

    report = ledgerlink.audit(_home())
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "root": _b64(report.root),
                "problem_count": report.problem_count,
                "first_bad_index": report.first_bad_index,
                "problems": [{"index": p.index, "what": p.what} for p in report.problems],
            }
        )
    elif report.ok:
        out.print(
            f"OK: {report.entries:,} entries, {report.checkpoints:,} checkpoint(s), "
            f"root {_b64(report.root)}",
            soft_wrap=True,
        )
    else:
        for line in report.lines():
            out.print(escape(line), soft_wrap=True)
    # Exit 1 with one line naming the first bad index (also after the JSON).
    report.raise_if_bad()


@ledger_app.command("verify-receipt")
def ledger_verify_receipt(
    receipt: Annotated[Path, typer.Argument(help="The receipt file (`onceonly ledger prove`).")],
    entry: Annotated[
        Path | None,
        typer.Option(
            "--entry",
            help="The entry's bytes, raw or in base64 (`ledger show --raw`); "
            "default: read from the local ledger.",
        ),
    ] = None,
    vkeys: Annotated[
        list[str] | None,
        typer.Option(
            "--vkey",
            help="A verifier key (repeatable): the log's, and any witness whose "
            "cosignature must be there; default: the home's log key.",
        ),
    ] = None,
) -> None:
    """Verify a receipt offline: the entry is in the tree the log's key signed."""
    from exchange import ledgerlink
    from ledger.log import parse_receipt

    text = receipt.read_bytes().decode("utf-8", errors="replace")
    log_keys, witness_keys = ledgerlink.parse_verifier_keys(vkeys or [])
    if not log_keys:
        log_keys = [ledgerlink.log_verifier(_home().require())]
    if entry is not None:
        data = ledgerlink.read_entry_file(entry.read_bytes())
    else:
        _, data = ledgerlink.entry(_home(), parse_receipt(text).index)
    checkpoint = ledgerlink.check_receipt(text, data, log_keys, witness_keys)
    cosigned = "".join(f", cosigned by {w.name}" for w in witness_keys)
    out.print(
        f"receipt verifies: entry {parse_receipt(text).index} in tree of size "
        f"{checkpoint.size}{escape(cosigned)}",
        soft_wrap=True,
    )


@ledger_app.command("show")
def ledger_show(
    index: IndexOption,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the entry's canonical bytes in base64.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one ledger entry, decoded (or its exact bytes, so anyone can hash them)."""
    import dataclasses

    from exchange import ledgerlink
    from ledger.merkle import leaf_hash

    decoded, data = ledgerlink.entry(_home(), index)
    if raw:
        sys.stdout.write(_b64(data) + "\n")
        return
    fields: dict[str, Any] = {"index": index, "leaf_hash": leaf_hash(data).hex()}
    fields |= dataclasses.asdict(decoded)
    if as_json:
        _emit_json(fields)
        return
    table = Table(title=f"Ledger entry {index}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")  # hashes whole, never cut with an ellipsis
    for name, value in fields.items():
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, tuple | list):
            value = ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in value)
        if value not in (None, "", ()):
            table.add_row(name, escape(str(value)))
    out.print(table)


@ledger_app.command("export-tiles")
def ledger_export_tiles(
    out_dir: Annotated[
        Path, typer.Option("--out", help="The folder to export to (served as static files).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Export the ledger up to its latest checkpoint as C2SP tlog-tiles (incremental)."""
    from exchange import ledgerlink

    result = ledgerlink.export_tiles(_home(), out_dir)
    if as_json:
        _emit_json(
            {
                "out": str(out_dir),
                "size": result.size,
                "written": list(result.written),
                "unchanged": result.unchanged,
                "removed": list(result.removed),
            }
        )
        return
    for path in result.written:
        out.print(f"wrote {escape(path)}", soft_wrap=True)
    for path in result.removed:
        out.print(f"removed {escape(path)} (superseded by its full tile)", soft_wrap=True)
    out.print(
        f"{escape(str(out_dir))}: tree of {result.size:,} entries; {len(result.written):,} "
        f"files written, {result.unchanged:,} already there, {len(result.removed):,} removed",
        soft_wrap=True,
    )


@witness_app.command("cosign")
def witness_cosign(
    checkpoint: Annotated[Path, typer.Argument(help="The signed checkpoint file to cosign.")],
    proof: Annotated[
        Path | None,
        typer.Option(
            "--proof",
            help="Consistency proof from the last checkpoint this witness cosigned "
            "(`ledger consistency --from <size> --json`); omit only for the first.",
        ),
    ] = None,
    log_vkeys: Annotated[
        list[str] | None,
        typer.Option(
            "--log-vkey",
            help="The log's verifier key (repeatable); default: this home's log key.",
        ),
    ] = None,
) -> None:
    """Cosign a checkpoint if it extends the last one cosigned; print the cosigned note."""
    from exchange import ledgerlink

    note = checkpoint.read_bytes().decode("utf-8", errors="replace")
    consistency = None
    if proof is not None:
        consistency = ledgerlink.ConsistencyProof.from_json(ledgerlink.load_json_file(proof))
    log_keys, _ = ledgerlink.parse_verifier_keys(log_vkeys or [])
    _verbatim(ledgerlink.witness_cosign(_home(), note, consistency, log_verifiers=log_keys))


@witness_app.command("status")
def witness_status(
    origin: Annotated[
        str | None, typer.Option("--origin", help="The log (default: this home's ledger).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show which log the witness follows and the last checkpoint it cosigned."""
    from exchange import ledgerlink

    status = ledgerlink.witness_status(_home(), origin)
    latest = status.latest
    data = {
        "witness": status.name,
        "vkey": status.vkey,
        "origin": status.origin,
        "size": None if latest is None else latest.size,
        "root": None if latest is None else _b64(latest.root),
    }
    if as_json:
        _emit_json(data)
        return
    out.print(f"witness {escape(status.name)} ({escape(status.vkey)})", soft_wrap=True)
    if latest is None:
        out.print(f"has not cosigned a checkpoint of {escape(status.origin)} yet", soft_wrap=True)
    else:
        out.print(
            f"last cosigned {escape(status.origin)} at size {latest.size:,}, "
            f"root {_b64(latest.root)}",
            soft_wrap=True,
        )
