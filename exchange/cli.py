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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from connectors.errors import ConnectorError
from exchange.cli_audit import audit_app, citizen_report_command, staff_app
from exchange.cli_common import JsonOption, err, out
from exchange.cli_common import date_option as _date_option
from exchange.cli_common import emit_json as _emit_json
from exchange.cli_common import home as _home
from exchange.cli_common import options as _options
from exchange.cli_common import table as _table
from exchange.cli_ledger import ledger_app, witness_app
from exchange.cli_service import serve, token_app
from exchange.errors import ExchangeError, InvalidArgument
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


# ---- the steward path ---------------------------------------------------------------------

dept_app = typer.Typer(help="Departments and their signing keys.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets and their schema versions.", no_args_is_help=True)
schema_app = typer.Typer(help="Schema compatibility checks.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="Rows a publication quarantined, with reasons.", no_args_is_help=True
)
app.add_typer(dept_app, name="dept")
app.add_typer(dataset_app, name="dataset")
app.add_typer(schema_app, name="schema")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(token_app, name="token")
app.command()(serve)
app.add_typer(ledger_app, name="ledger")
app.add_typer(witness_app, name="witness")
app.add_typer(audit_app, name="audit")
app.add_typer(staff_app, name="staff")
app.command("citizen-report")(citizen_report_command)


@contextmanager
def _store() -> Iterator[Any]:
    from exchange.store import ExchangeStore

    home = _home().require()
    store = ExchangeStore(home.exchange_db)
    try:
        yield store
    finally:
        store.close()


@dept_app.command("add")
def dept_add(
    code: Annotated[str, typer.Argument(help="Department code, e.g. public_security.")],
    name: Annotated[str, typer.Option("--name", help="The department's name, e.g. 公安.")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The department's Ed25519 public key (PEM or base64). "
            "Without it, a key pair is made and its private half kept in the home.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Register a department and the key that must sign its publications."""
    from exchange import registry
    from exchange.keys import generate_key, load_public_key, raw_public

    with _store() as store:
        home = _home()
        if public_key is None:
            raw = raw_public(generate_key(home.department_keys / f"{code}.pem"))
        else:
            raw = load_public_key(public_key)
        added = registry.add_department(store, code, name, raw)
    if as_json:
        _emit_json(added)
    else:
        out.print(f"registered department {escape(code)} ({escape(name)}), key {added['key_id']}")


@dept_app.command("list")
def dept_list(as_json: JsonOption = False) -> None:
    """List registered departments."""
    from exchange import registry

    with _store() as store:
        rows = registry.departments(store)
    if as_json:
        _emit_json(rows)
    else:
        out.print(_table("Departments", rows, ["code", "name", "key_id", "registered_at"]))


@dataset_app.command("register")
def dataset_register(
    schema: Annotated[
        Path, typer.Argument(help="A contract file, schemas/datasets/<dataset>/<version>.json.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Register a dataset, or its next schema version (checked for compatibility first)."""
    from exchange import registry
    from exchange.contracts import load_contract_file

    contract = load_contract_file(schema)
    with _store() as store:
        done = registry.register_schema(store, contract)
    if as_json:
        _emit_json(
            {
                "dataset": done.dataset,
                "version": done.version,
                "created": done.created_dataset,
                "unchanged": done.unchanged,
            }
        )
        return
    what = "already registered" if done.unchanged else "registered"
    out.print(f"{what}: {escape(done.dataset)} {escape(done.version)}")


@dataset_app.command("list")
def dataset_list(as_json: JsonOption = False) -> None:
    """List datasets with their latest schema and current publication."""
    from exchange import registry

    with _store() as store:
        rows = registry.datasets(store)
    if as_json:
        _emit_json(rows)
        return
    columns = ["dataset", "department", "latest_version", "publication", "rows", "quarantined"]
    out.print(_table("Datasets", rows, columns))


@dataset_app.command("show")
def dataset_show(
    name: Annotated[str, typer.Argument(help="The dataset.")], as_json: JsonOption = False
) -> None:
    """Show a dataset's schema versions and publications."""
    from exchange import registry

    with _store() as store:
        detail = registry.dataset_detail(store, name)
    if as_json:
        _emit_json(detail)
        return
    out.print(
        f"{escape(name)}: owned by {detail['department']}, compatibility {detail['compatibility']}"
    )
    out.print(_table("Schema versions", detail["versions"], ["version", "sha256", "registered_at"]))
    columns = ["id", "version", "rows_read", "rows_accepted", "rows_quarantined", "published_at"]
    out.print(_table("Publications", detail["publications"], columns))


@schema_app.command("check")
def schema_check(
    new: Annotated[Path, typer.Argument(help="The proposed contract file.")],
    against: Annotated[
        str, typer.Option("--against", help="The registered dataset to check against.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Check a proposed schema version against a dataset's registered versions."""
    from exchange import registry
    from exchange.compat import IncompatibleSchema
    from exchange.contracts import load_contract_file

    contract = load_contract_file(new)
    if contract.dataset != against:
        raise InvalidArgument(f"{new} is a contract for {contract.dataset}, not {against}")
    with _store() as store:
        report = registry.check_schema(store, contract)
    if as_json:
        _emit_json(report.to_dict())
    elif report.compatible:
        out.print(
            f"compatible: {escape(contract.dataset)} {escape(contract.version)} ({report.mode})"
        )
    if not report.compatible:
        raise IncompatibleSchema(report)


def _progress(as_json: bool) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description:<20}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[speed]:>10,.0f} rows/s"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=err, disable=as_json)


def _tracker(bar: Any, dataset: str) -> Callable[[int], None]:
    """A progress callback showing rows read and rows per second for one dataset."""
    task = bar.add_task(dataset, total=None, rows=0, speed=0.0)
    started = time.perf_counter()

    def report(rows: int) -> None:
        bar.update(task, rows=rows, speed=rows / max(time.perf_counter() - started, 1e-9))

    return report


def _publication_rows(results: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "dataset": package.dataset,
            "publication": publication.id,
            "read": publication.rows["read"],
            "accepted": publication.rows["accepted"],
            "quarantined": publication.rows["quarantined"],
            "unchanged": publication.unchanged,
            "reasons": package.manifest["violations"],
            "quarantine": str(publication.package / "quarantine.parquet"),
        }
        for package, publication in results
    ]


def _print_publications(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Publications")
    numeric = ("pub", "read", "accepted", "quarantined")
    for column in ("dataset", *numeric, "reasons"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for row in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in dict(row["reasons"]).items()) or "-"
        pub = f"{row['publication']}" + (" (unchanged)" if row["unchanged"] else "")
        counts = (f"{row[c]:,}" for c in ("read", "accepted", "quarantined"))
        table.add_row(str(row["dataset"]), pub, *counts, escape(reasons))
    out.print(table)
    read = sum(int(r["read"]) for r in rows)
    kept = sum(int(r["accepted"]) for r in rows)
    out.print(
        f"{read:,} rows read = {kept:,} accepted + {read - kept:,} quarantined. "
        "Reasons per row: onceonly quarantine show <publication>"
    )


@app.command()
def publish(
    sources: Annotated[
        list[Path], typer.Argument(help="Source configuration files (connectors/sources/*.toml).")
    ],
    city: Annotated[
        Path | None,
        typer.Option("--city", help="Where the departments' exports are ({city} in configs)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Read, validate, sign and publish department sources into the exchange."""
    from connectors import load_source
    from exchange.publish import publish as publish_source

    configs = [load_source(path) for path in sources]
    results = []
    with _store() as store, _progress(as_json) as bar:
        for config in configs:
            track = _tracker(bar, config.dataset)
            results.append(publish_source(store, _home(), config, city=city, progress=track))
    rows = _publication_rows(results)
    if as_json:
        _emit_json(rows)
    else:
        _print_publications(rows)


@app.command()
def demo(
    city: Annotated[Path, typer.Option("--city", help="Folder for the synthetic city.")] = Path(
        "city"
    ),
    persons: Annotated[int, typer.Option("--persons", help="People in the city.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="The city's random seed.")] = 7,
    dirty_rate: Annotated[
        float, typer.Option("--dirty-rate", help="Share of rows given a known fault.")
    ] = 0.01,
    as_json: JsonOption = False,
) -> None:
    """The main job: a synthetic city's departments publish into the local exchange."""
    from exchange.demo import run

    home = _home()
    with _progress(as_json) as bar:
        result = run(
            home,
            city,
            persons=persons,
            seed=seed,
            dirty_rate=dirty_rate,
            on_publication=lambda dataset: _tracker(bar, dataset),
        )
    rows = _publication_rows(result.publications)
    from exchange.demo import ask_catalogue

    asked = ask_catalogue(home)
    from exchange.demo import audit_summary

    audited = audit_summary(home, home.root / "audit-report.html")
    ask_rows = [
        {
            "certificate": a.certificate,
            "fact": a.fact,
            "asked by": f"{a.asked_by} ({a.service_matter})",
            "answer": a.outcome
            if a.outcome == "refused"
            else json.dumps(a.answer, ensure_ascii=False),
            "ledger": a.ledger_index,
        }
        for a in asked.asks
    ]
    if as_json:
        _emit_json(
            {
                "city": result.city.to_dict(),
                "publications": rows,
                "asks": [a.__dict__ for a in asked.asks],
                "checkpoint": asked.checkpoint,
                "ledger_verified": asked.verified,
                "alerts": [a.to_dict() for a in audited.alerts],
                "audit_report": str(audited.report),
            }
        )
        return
    summary = result.city
    planted = sum(summary.faults_by_kind.values())
    out.print(
        f"Synthetic city in {escape(str(city))}: {summary.persons:,} people in "
        f"{summary.households:,} households, {planted:,} planted faults "
        f"(ground truth: {escape(str(city / 'faults.jsonl'))})."
    )
    out.print(f"Exchange home: {escape(str(home.root))}")
    _print_publications(rows)
    out.print()
    out.print(
        "Caseworkers ask facts instead of sending the citizen for certificates; "
        "every ask, answered or refused, is a ledger entry first:"
    )
    out.print(
        _table(
            "Certificates replaced by ledgered answers",
            ask_rows,
            ["certificate", "fact", "asked by", "answer", "ledger"],
        )
    )
    verdict = "[green]verified[/green]" if asked.verified else "[red]FAILED[/red]"
    out.print(
        f"Ledger: {asked.ledger_size:,} entries; checkpoint signed by the exchange and "
        f"cosigned by the audit office's witness; full verification {verdict}."
    )
    for problem in asked.problems:
        out.print(f"  {escape(problem)}")
    out.print()
    out.print("E-supervision over the ledger, after a few planted anomalies:")
    for plant in audited.planted:
        out.print(f"  planted: {escape(plant)}")
    counts = audited.counts
    out.print(
        _table(
            "Alerts by kind and card",
            [{"kind": k, "yellow": counts[(k, "yellow")], "red": counts[(k, "red")]}
             for k in ("time", "process", "content", "discretion", "risk")],
            ["kind", "yellow", "red"],
        )
    )  # fmt: skip
    out.print(
        f"Audit report ({audited.certificates_replaced:,} certificates replaced, "
        f"{audited.trips_saved:,} trips saved): {escape(str(audited.report))}"
    )
    out.print(
        "Try: onceonly ask person.alive --param person_id=<ID> --as caseworker:hrss/you "
        "--purpose RS-YL-01 --case RS-2026-000001"
    )
    out.print(
        "The service and its web console: onceonly token issue --as caseworker:hrss/you; "
        "onceonly serve; then open http://127.0.0.1:8000/console and sign in with the token "
        "(or `onceonly serve --demo` on a fresh home prints demo tokens)."
    )


@quarantine_app.command("show")
def quarantine_show(
    publication: Annotated[int, typer.Argument(help="The publication id (onceonly dataset show).")],
    limit: Annotated[int, typer.Option("--limit", help="How many rows to list.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Show the rows a publication quarantined: source row, field, rule and reason."""
    import pyarrow.parquet as pq

    from exchange.package import QUARANTINE

    with _store() as store:
        found = store.one("SELECT * FROM publications WHERE id = ?", [publication])
    if found is None:
        raise InvalidArgument(f"no publication {publication}")
    table = pq.read_table(Path(found["package_dir"]) / QUARANTINE)
    counts = table.group_by("keyword").aggregate([("row", "count_distinct")]).to_pylist()
    by_reason = {str(c["keyword"]): int(c["row_count_distinct"]) for c in counts}
    rows = table.slice(0, limit).to_pylist()
    if as_json:
        _emit_json(
            {
                "publication": publication,
                "dataset": found["dataset"],
                "rows_quarantined": found["rows_quarantined"],
                "rows_by_reason": by_reason,
                "violations": rows,
            }
        )
        return
    out.print(
        f"publication {publication} ({escape(found['dataset'])}): "
        f"{found['rows_quarantined']:,} of {found['rows_read']:,} rows quarantined"
    )
    out.print("by rule: " + escape(", ".join(f"{k} {v:,}" for k, v in sorted(by_reason.items()))))
    out.print(_table(f"First {len(rows)} violations", rows, ["row", "field", "keyword", "message"]))


# --- caseworkers: facts instead of certificates -----------------------------------------

facts_app = typer.Typer(help="The declared facts a caseworker may ask.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")

PrincipalOption = Annotated[
    str, typer.Option("--as", help="Who asks: caseworker:<department>/<user>.")
]
PurposeOption = Annotated[
    str, typer.Option("--purpose", help="Service-matter code from the department's power list.")
]
CaseOption = Annotated[str, typer.Option("--case", help="Case reference, e.g. RS-2026-000123.")]
AsOfOption = Annotated[
    int | None,
    typer.Option("--as-of", help="Answer from the data as it stood after this publication id."),
]


@facts_app.command("list")
def facts_list(as_json: JsonOption = False) -> None:
    """Every declared fact, with the certificates it replaces."""
    from exchange.catalogue import certificates_spared
    from exchange.facts import all_facts

    rows = [
        {
            "fact": fact.ref,
            "result": fact.result_type,
            "parameters": ", ".join(p.name for p in fact.parameters),
            "replaces": ", ".join(c.name for c in certificates_spared(fact.id)),
            "title": fact.title,
        }
        for fact in all_facts()
    ]
    if as_json:
        _emit_json(rows)
        return
    out.print(_table("Facts", rows, ["fact", "result", "parameters", "replaces"]))


@facts_app.command("show")
def facts_show(
    fact: Annotated[str, typer.Argument(help="Fact id, optionally id@version.")],
    as_json: JsonOption = False,
) -> None:
    """A fact's contract: parameters, result, datasets read, query."""
    from exchange.facts import load_fact

    found = load_fact(fact)
    described = found.describe() | {"query": found.query}
    if as_json:
        _emit_json(described)
        return
    out.print(f"[bold]{escape(found.ref)}[/bold] {escape(found.title)}")
    out.print(escape(found.question))
    _emit_json(described)


def _print_answer(answer: Any) -> None:
    out.print(
        f"[green]answered[/green] {escape(answer.fact)}@{escape(answer.version)}: "
        f"[bold]{escape(json.dumps(answer.result, ensure_ascii=False))}[/bold]"
    )
    out.print(
        f"ledger entry {answer.ledger_index}; relied on publications "
        f"{', '.join(str(p) for p in answer.relied_on)}"
    )
    out.print("receipt (signed by the exchange):")
    out.file.flush()
    sys.stdout.write(answer.receipt)  # verbatim: a signed note must not be re-wrapped
    out.print(f"offline proof once checkpointed: onceonly receipt {answer.ledger_index}")


@app.command()
def ask(
    fact: Annotated[str, typer.Argument(help="The fact to ask (see `onceonly facts list`).")],
    principal: PrincipalOption,
    purpose: PurposeOption,
    case: CaseOption,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A parameter, name=value (repeat).")
    ] = None,
    as_of: AsOfOption = None,
    embargo_until: Annotated[
        str | None,
        typer.Option(
            "--embargo-until", help="Covert investigations: hide from the citizen until YYYY-MM-DD."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask one fact for one case: policy, query, ledger entry, then a signed minimal answer."""
    from exchange.ask import Exchange
    from exchange.facts import load_fact, parse_param_args

    params = parse_param_args(load_fact(fact), param or [])
    embargo = _date_option("--embargo-until", embargo_until)
    with Exchange.open(_home()) as exchange:
        answer = exchange.ask(
            fact,
            params,
            principal=principal,
            service_matter=purpose,
            case_ref=case,
            as_of=as_of,
            embargo_until=embargo,
        )
    if as_json:
        _emit_json(answer.to_dict())
        return
    _print_answer(answer)


@app.command("ask-batch")
def ask_batch(
    fact: Annotated[str, typer.Argument(help="The fact to ask for every row.")],
    params: Annotated[
        Path,
        typer.Option(
            "--params", help="CSV (UTF-8, header row) or Parquet: one column per parameter."
        ),
    ],
    principal: PrincipalOption,
    purpose: PurposeOption,
    case: CaseOption,
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the answers (.parquet or .csv).")
    ],
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a whole caseload in one query: one ledger entry per subject, one durable commit."""
    from exchange.ask import Exchange
    from exchange.batchio import read_params, write_answers

    table = read_params(params)
    started = time.perf_counter()
    with Exchange.open(_home()) as exchange:
        answers = exchange.ask_batch(
            fact, table, principal=principal, service_matter=purpose, case_ref=case, as_of=as_of
        )
    seconds = time.perf_counter() - started
    write_answers(answers, out_file)
    outcomes = answers.column("outcome").to_pylist()
    summary = {
        "fact": fact,
        "rows": answers.num_rows,
        "answered": outcomes.count("answered"),
        "refused": outcomes.count("refused"),
        "first_ledger_index": answers.column("ledger_index")[0].as_py()
        if answers.num_rows
        else None,
        "seconds": round(seconds, 3),
        "out": str(out_file),
    }
    if as_json:
        _emit_json(summary)
        return
    out.print(_table("Batch", [summary], list(summary)))


@app.command()
def receipt(
    index: Annotated[int, typer.Argument(help="The ledger index printed with the answer.")],
) -> None:
    """The offline-verifiable c2sp.org/tlog-proof of an answer's ledger entry."""
    from exchange.ledgerlink import open_log

    with open_log(_home().require()) as log:
        sys.stdout.write(log.prove(index))


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
        details = getattr(problem, "diagnostics", None)
        return _fail(str(problem), details() if callable(details) else None)
    except OSError as problem:
        where = f" {problem.filename}" if problem.filename else ""
        return _fail(f"{problem.strerror or problem}:{where}")
    except Exception as problem:  # a bug: still one line, the traceback behind --debug
        return _fail(f"internal error ({type(problem).__name__}: {problem}); rerun with --debug")
    return 0


def _fail(message: str, details: str | None = None) -> int:
    """One line saying what failed; an error with `diagnostics()` adds its details below."""
    if _options.debug or os.environ.get("ONCEONLY_DEBUG") == "1":
        traceback.print_exc()
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    for line in (details or "").splitlines():
        err.print(f"  {escape(line)}", soft_wrap=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
