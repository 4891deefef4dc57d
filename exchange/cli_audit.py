"""`onceonly audit …`, `onceonly staff …` and `onceonly citizen-report`: the auditor and
citizen path, a thin edge over `exchange.audit`, `exchange.supervision`,
`exchange.citizen` and `exchange.report`.

Errors propagate to `exchange.cli.main`, which prints one line and exits 1; a failed
audit prints its findings, then fails the same way (`AuditFailed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from exchange.cli_common import JsonOption, date_option, out
from exchange.cli_common import emit_json as _emit_json
from exchange.cli_common import home as _home
from exchange.errors import ExchangeError, InvalidArgument

audit_app = typer.Typer(
    help="The auditor's tools: verify everything, e-supervision alerts, the HTML report.",
    no_args_is_help=True,
)
staff_app = typer.Typer(
    help="The staff register: which resident is behind a principal (for the risk rule).",
    no_args_is_help=True,
)


class AuditFailed(ExchangeError):
    """`audit verify` found something wrong (the findings are printed before)."""


@audit_app.command("verify")
def audit_verify(
    every: Annotated[
        bool, typer.Option("--all", help="Re-derive every answered ask, not a sample.")
    ] = False,
    sample: Annotated[
        int,
        typer.Option(
            "--sample", min=0, help="How many answered asks to re-derive (a random draw)."
        ),
    ] = 200,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the sample's draw, to repeat an earlier audit."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the ledger, every publication package, and re-derive past answers."""
    from exchange.audit import verify_home

    report = verify_home(_home(), sample=None if every else sample, seed=seed)
    if as_json:
        _emit_json(report.to_dict())
    else:
        for line in report.lines():
            out.print(escape(line), soft_wrap=True)
    if not report.ok:
        raise AuditFailed(
            f"audit found {len(report.findings)} problem(s); first: {report.findings[0]}"
        )


@audit_app.command("alerts")
def audit_alerts(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only alerts whose last ask is on or after YYYY-MM-DD."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the e-supervision rules over the ledger: yellow cards and red cards."""
    from exchange.supervision import AlertSummary, alerts

    found = alerts(_home().require(), since=date_option("--since", since))
    if as_json:
        _emit_json([a.to_dict() for a in found])
        return
    table = Table(title=f"E-supervision alerts ({len(found)})")
    for column in ("card", "kind", "rule", "principals", "entries", "message"):
        table.add_column(column, overflow="fold")
    for a in found:
        shown = ", ".join(str(i) for i in a.indexes[:6]) + (" …" if len(a.indexes) > 6 else "")
        colour = "red" if a.card == "red" else "yellow"
        table.add_row(
            f"[{colour}]{a.card}[/{colour}]",
            a.kind,
            a.rule,
            escape(", ".join(a.principals)),
            escape(shown),
            escape(a.message),
        )
    out.print(table)
    summary = AlertSummary.of(found)
    out.print(
        f"{summary.total('yellow')} yellow card(s), {summary.total('red')} red card(s)",
        soft_wrap=True,
    )


@audit_app.command("report")
def audit_report(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the self-contained HTML report.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Write the audit report: one HTML file with charts and the tables behind them."""
    from exchange.report import home_report

    path, data = home_report(_home().require(), out_file)
    summary = {
        "out": str(path),
        "entries": data.entries,
        "asks": data.asks,
        "certificates_replaced": data.certificates_replaced,
        "trips_saved": data.trips_saved,
        "alerts": len(data.alerts),
    }
    if as_json:
        _emit_json(summary)
        return
    out.print(
        f"wrote {escape(str(path))}: {data.asks:,} asks, {data.certificates_replaced:,} "
        f"certificates replaced, {len(data.alerts)} alert(s)",
        soft_wrap=True,
    )


@staff_app.command("add")
def staff_add(
    principal: Annotated[str, typer.Argument(help="The principal, e.g. caseworker:hrss/zhang.")],
    resident_id: Annotated[
        str, typer.Option("--resident-id", help="The resident ID of the person behind it.")
    ],
) -> None:
    """Register the resident behind a principal (kept in the home, 0600; never in alerts)."""
    from exchange.supervision import add_staff

    add_staff(_home(), principal, resident_id.strip())
    out.print(f"registered {escape(principal)} in the staff register", soft_wrap=True)


@staff_app.command("remove")
def staff_remove(
    principal: Annotated[str, typer.Argument(help="The principal to take off the register.")],
) -> None:
    """Remove a principal from the staff register."""
    from exchange.supervision import remove_staff

    if not remove_staff(_home(), principal):
        raise InvalidArgument(f"{principal} is not in the staff register")
    out.print(f"removed {escape(principal)} from the staff register", soft_wrap=True)


@staff_app.command("list")
def staff_list(as_json: JsonOption = False) -> None:
    """List the registered principals (not their resident IDs: those stay in the file)."""
    from exchange.supervision import load_staff

    principals = sorted(load_staff(_home().require()))
    if as_json:
        _emit_json(principals)
        return
    for principal in principals:
        out.print(escape(principal), soft_wrap=True)
    if not principals:
        out.print("the staff register is empty (onceonly staff add)")


def citizen_report_command(
    resident_id: Annotated[str, typer.Argument(help="The citizen's resident ID number.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The report as it stood at the end of YYYY-MM-DD (Beijing)."),
    ] = None,
    auditor: Annotated[
        bool,
        typer.Option("--auditor", help="The auditor's view: embargoed asks and principals too."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Who asked the exchange about a citizen, why, and which certificates it spared them."""
    from exchange.citizen import citizen_report, end_of_local_day

    day = date_option("--as-of", as_of)
    now = end_of_local_day(day) if day is not None else None
    report = citizen_report(_home(), resident_id, now=now, auditor=auditor)
    if as_json:
        _emit_json(report.to_dict())
        return
    title = f"Asks about you, as of {report.as_of}" + (" (auditor's view)" if auditor else "")
    table = Table(title=title)
    columns = ["when (Beijing)", "department", "service matter", "fact", "outcome",
               "certificate spared", "case"]  # fmt: skip
    if auditor:
        columns += ["principal", "embargo until"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for e in report.entries:
        outcome = e.outcome + (f": {e.reason}" if e.reason else "")
        pairs = zip(e.certificates, e.visits_spared, strict=True)
        spared = "; ".join(f"{c} (a visit to {v})" for c, v in pairs)
        row = [e.local_time, e.department_name, f"{e.service_matter} {e.service_matter_title}",
               e.fact_title, outcome, spared, e.case_ref]  # fmt: skip
        if auditor:
            row += [e.principal, e.embargo_until]
        table.add_row(*(escape(str(v)) for v in row))
    out.print(table)
    out.print(
        f"{len(report.entries)} ask(s); {report.trips_spared} trip(s) to an office spared"
        + (f"; {report.embargoed} under embargo" if auditor else ""),
        soft_wrap=True,
    )
