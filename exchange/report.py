"""The audit report: one self-contained HTML file, readable offline.

`build_report` turns the decoded ledger (`exchange.audit.read_ledger`) and the
e-supervision alerts into one HTML page: no external asset, no script, no network —
every chart is an inline SVG drawn here, each followed by the table behind it. Every
piece of text that comes from data goes through `html.escape`.

What it shows: asks per department per local day; refusals per day and their reasons;
certificates replaced — an answered ask of a fact that replaces a certificate, asked
under one of the service matters the catalogue lists for it; estimated citizen trips
saved, one trip per certificate replaced to its issuing department; alerts by kind and
card, and the alert list. No personal data: departments, service matters, facts,
principals (staff identifiers, as the ledger holds them) and counts only.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from exchange.audit import LedgerFrame
from exchange.supervision import CARDS, KINDS, Alert, SupervisionConfig

if TYPE_CHECKING:
    from exchange.store import ExchangeStore

__all__ = [
    "CHART_STYLE",
    "ReportData",
    "build_report",
    "charts",
    "home_report",
    "home_report_data",
    "report_data",
    "write_report",
]

PALETTE: Final = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
CARD_COLOURS: Final = {"yellow": "#e6b800", "red": "#d62728"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class ReportData:
    """The figures behind the report (also what `--json` callers may want)."""

    generated_at: str
    entries: int
    asks: int
    publications: int
    outcomes: dict[str, int]
    days: list[str]
    departments: list[str]
    asks_by_day: dict[str, dict[str, int]]  # day -> department -> asks
    refusals_by_day: dict[str, dict[str, int]]
    refusal_reasons: list[tuple[str, str, int]]  # department, reason, count
    certificates: list[tuple[str, str, str, int]]  # certificate, fact, issuer, replaced
    trips_by_issuer: dict[str, int]
    alerts: list[Alert]

    @property
    def certificates_replaced(self) -> int:
        return sum(c[3] for c in self.certificates)

    @property
    def trips_saved(self) -> int:
        return sum(self.trips_by_issuer.values())


def report_data(
    frame: LedgerFrame,
    alerts: Sequence[Alert],
    config: SupervisionConfig,
    *,
    department_names: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> ReportData:
    """Aggregate the decoded ledger into the report's figures (DuckDB over the columns)."""
    import duckdb
    import pyarrow as pa

    from exchange.catalogue import load_catalogue

    names = dict(department_names or {})
    catalogue = load_catalogue()
    certificates = pa.table(
        {
            "certificate": [c.title for c in catalogue for f in c.facts for _ in c.service_matters],
            "fact_id": [f for c in catalogue for f in c.facts for _ in c.service_matters],
            "service_matter": [s for c in catalogue for _ in c.facts for s in c.service_matters],
            "issuer": [c.issuer for c in catalogue for _ in c.facts for _ in c.service_matters],
        }
    )
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # stdout may be JSON
    try:
        con.register("entries", frame.entries)
        con.register("certificates", certificates)
        con.execute(
            """
            CREATE TEMP TABLE asks AS
            SELECT idx, department, fact_id, service_matter, reason,
                   CAST(outcome AS VARCHAR) AS outcome,
                   CAST(make_timestamp(CAST(t + $offset AS BIGINT) * 1000000) AS DATE) AS day
            FROM entries WHERE kind = 'ask'
            """,
            {"offset": config.offset},
        )
        outcomes = dict(con.execute("SELECT outcome, count(*) FROM asks GROUP BY 1").fetchall())
        publications = _scalar(
            con, "SELECT count(*) FROM entries WHERE kind = 'publication' AND outcome = 'answered'"
        )
        by_day: dict[str, dict[str, int]] = {}
        refused: dict[str, dict[str, int]] = {}
        for day, department, count, refusals in con.execute(
            "SELECT day, department, count(*), count(*) FILTER (WHERE outcome = 'refused') "
            "FROM asks GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall():
            by_day.setdefault(day.isoformat(), {})[department] = int(count)
            if refusals:
                refused.setdefault(day.isoformat(), {})[department] = int(refusals)
        reasons = [
            (str(d), str(r), int(n))
            for d, r, n in con.execute(
                "SELECT department, reason, count(*) FROM asks WHERE outcome = 'refused' "
                "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
            ).fetchall()
        ]
        replaced = [
            (str(c), str(f), str(i), int(n))
            for c, f, i, n in con.execute(
                """
                SELECT c.certificate, c.fact_id, c.issuer, count(a.idx)
                FROM (SELECT DISTINCT certificate, fact_id, issuer FROM certificates) c
                LEFT JOIN (SELECT a.idx, a.fact_id, k.certificate FROM asks a JOIN certificates k
                           ON k.fact_id = a.fact_id AND k.service_matter = a.service_matter
                           WHERE a.outcome = 'answered') a
                  ON a.certificate = c.certificate AND a.fact_id = c.fact_id
                GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1
                """
            ).fetchall()
        ]
    finally:
        con.close()
    trips: dict[str, int] = {}
    for _, _, issuer, count in replaced:
        label = names.get(issuer, issuer)
        trips[label] = trips.get(label, 0) + count
    departments = sorted({d for per in by_day.values() for d in per})
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return ReportData(
        generated_at=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        entries=frame.size,
        asks=sum(outcomes.values()),
        publications=int(publications),
        outcomes={k: int(outcomes.get(k, 0)) for k in ("answered", "refused", "error")},
        days=sorted(by_day),
        departments=departments,
        asks_by_day=by_day,
        refusals_by_day=refused,
        refusal_reasons=reasons,
        certificates=replaced,
        trips_by_issuer=dict(sorted(trips.items(), key=lambda kv: (-kv[1], kv[0]))),
        alerts=list(alerts),
    )


def _scalar(con: Any, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


# --- SVG charts ---------------------------------------------------------------------------


def _ticks(top: float) -> list[int]:
    """Round axis ticks (steps of 1, 2 or 5 times a power of ten) from 0 up to ``top``."""
    if top <= 0:
        return [0, 1]
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if top / step <= 5:
                return [step * i for i in range(math.ceil(top / step) + 1)]
        power *= 10


def stacked_bars(
    title: str,
    categories: Sequence[str],
    series: Sequence[str],
    values: Mapping[str, Mapping[str, int]],
    *,
    width: int = 900,
    height: int = 300,
    colours: Mapping[str, str] | None = None,
) -> str:
    """A stacked bar chart as inline SVG: one bar per category, one colour per series."""
    colour = {name: PALETTE[s % len(PALETTE)] for s, name in enumerate(series)}
    colour.update(colours or {})
    left, right, top, bottom = 48, 12, 28, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values.get(c, {}).values()) for c in categories]
    ticks = _ticks(max(totals, default=0))
    scale = plot_h / ticks[-1]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height + 22 * ((len(series) + 5) // 6)}" viewBox="0 0 {width} '
        f'{height + 22 * ((len(series) + 5) // 6)}" aria-label="{_e(title)}">',
        f'<text x="{left}" y="18" class="t">{_e(title)}</text>',
    ]
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="a">{tick:,}</text>'
        )
    slot = plot_w / max(len(categories), 1)
    bar = min(48.0, max(1.0, slot * 0.8))  # a few days: bars, not walls
    every = max(1, len(categories) // 15)
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for name in series:
            count = values.get(category, {}).get(name, 0)
            if not count:
                continue
            h = count * scale
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour[name]}"><title>{_e(category)} · {_e(name)}: '
                f"{count:,}</title></rect>"
            )
        if i % every == 0:
            cx, cy = x + bar / 2, top + plot_h + 14
            parts.append(
                f'<text x="{cx:.1f}" y="{cy}" class="a" '
                f'transform="rotate(45 {cx:.1f} {cy})">{_e(category)}</text>'
            )
    for s, name in enumerate(series):
        lx = left + (s % 6) * (plot_w / 6)
        ly = height + 22 * (s // 6)
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" '
            f'fill="{colour[name]}"/>'
            f'<text x="{lx + 16:.1f}" y="{ly}" class="a">{_e(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(
    title: str,
    items: Sequence[tuple[str, int]],
    *,
    width: int = 900,
    colour: str = PALETTE[0],
) -> str:
    """A horizontal bar chart as inline SVG: one labelled bar per item."""
    left, right, top, row = 300, 60, 28, 22
    height = top + row * max(len(items), 1) + 10
    biggest = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{_e(title)}">',
        f'<text x="8" y="18" class="t">{_e(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = (width - left - right) * value / biggest
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="a">{_e(label)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{colour}">'
            f"<title>{_e(label)}: {value:,}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 14}" class="a">{value:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars(
    title: str,
    groups: Sequence[str],
    members: Sequence[str],
    values: Mapping[tuple[str, str], int],
    colours: Mapping[str, str],
    *,
    width: int = 900,
    height: int = 260,
) -> str:
    """Grouped vertical bars as inline SVG: one group per ``groups`` item, a bar per member."""
    left, right, top, bottom = 48, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = _ticks(max(values.values(), default=0))
    scale = plot_h / ticks[-1]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{_e(title)}">',
        f'<text x="{left}" y="18" class="t">{_e(title)}</text>',
    ]
    for tick in ticks:
        y = top + plot_h - tick * scale
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="a">{tick:,}</text>'
        )
    slot = plot_w / max(len(groups), 1)
    bar = min(48.0, slot * 0.7 / max(len(members), 1))
    for g, group in enumerate(groups):
        x0 = left + g * slot + slot * 0.15
        for m, member in enumerate(members):
            count = values.get((group, member), 0)
            h = count * scale
            x = x0 + m * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{colours.get(member, PALETTE[m])}">'
                f"<title>{_e(group)} · {_e(member)}: {count:,}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + slot * 0.35:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'class="a">{_e(group)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# --- the page -------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{_e(v)}</td>" for v in row
        )
        + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CHART_STYLE: Final = (
    "svg .t{font-size:14px;font-weight:600}svg .a{font-size:11px;fill:#444}svg .g{stroke:#e5e5e5}"
)
_STYLE: Final = (
    """
body{font-family:system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",sans-serif;
margin:2rem auto;max-width:960px;color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{border:1px solid #ddd;border-radius:6px;
padding:.6rem .9rem;min-width:9rem}.card b{display:block;font-size:1.4rem}
.yellow{color:#8a6d00;font-weight:600}.red{color:#d62728;font-weight:600}
.wide{overflow-x:auto}.wide td:last-child{min-width:18rem}
details{margin:.5rem 0}small{color:#666}
"""
    + CHART_STYLE
)


def _alert_counts(data: ReportData) -> dict[tuple[str, str], int]:
    counts = {(k, c): 0 for k in KINDS for c in CARDS}
    for alert in data.alerts:
        counts[(alert.kind, alert.card)] += 1
    return counts


def charts(data: ReportData) -> dict[str, str]:
    """The report's charts as inline SVG, by section: asks, refusals, certificates, trips, alerts.

    Their text is styled by `CHART_STYLE` (part of the report's own style).
    """
    # One colour per department in every chart.
    department_colours = {d: PALETTE[n % len(PALETTE)] for n, d in enumerate(data.departments)}
    refusal_days = sorted(data.refusals_by_day)
    refusal_departments = sorted({d for per in data.refusals_by_day.values() for d in per})
    return {
        "asks": stacked_bars(
            "Asks per day, by asking department", data.days, data.departments, data.asks_by_day
        ),
        "refusals": stacked_bars(
            "Refused asks per day, by asking department",
            refusal_days,
            refusal_departments,
            data.refusals_by_day,
            colours=department_colours,
        ),
        "certificates": horizontal_bars(
            "Certificates replaced", [(c[0], c[3]) for c in data.certificates], colour=PALETTE[2]
        ),
        "trips": horizontal_bars(
            "Trips saved, by the office the citizen no longer visits",
            list(data.trips_by_issuer.items()),
            colour=PALETTE[1],
        ),
        "alerts": grouped_bars(
            "Alerts by kind and card", KINDS, CARDS, _alert_counts(data), CARD_COLOURS
        ),
    }


def build_report(data: ReportData, *, title: str = "onceonly audit report") -> str:
    """The report as one HTML document (UTF-8, no external references)."""
    summary = [
        ("ledger entries", data.entries),
        ("asks", data.asks),
        ("answered", data.outcomes["answered"]),
        ("refused", data.outcomes["refused"]),
        ("errors", data.outcomes["error"]),
        ("publications", data.publications),
        ("certificates replaced", data.certificates_replaced),
        ("citizen trips saved (est.)", data.trips_saved),
        ("yellow cards", sum(1 for a in data.alerts if a.card == "yellow")),
        ("red cards", sum(1 for a in data.alerts if a.card == "red")),
    ]
    cards = "".join(f'<div class="card"><b>{v:,}</b>{_e(k)}</div>' for k, v in summary)
    day_rows = [
        [day, *[data.asks_by_day[day].get(d, 0) for d in data.departments],
         sum(data.asks_by_day[day].values())]
        for day in data.days
    ]  # fmt: skip
    drawn = charts(data)
    alert_counts = _alert_counts(data)
    alert_rows = [
        [
            alert.rule,
            alert.kind,
            alert.card,
            ", ".join(alert.principals),
            ", ".join(alert.departments),
            f"{alert.first_time} – {alert.last_time}",
            len(alert.indexes),
            ", ".join(str(i) for i in alert.indexes[:8]) + (" …" if len(alert.indexes) > 8 else ""),
            alert.message,
        ]
        for alert in data.alerts
    ]
    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p><small>Generated {_e(data.generated_at)} from the signed ledger. Days are local "
        "(Beijing) dates. No personal data: citizens appear in the ledger only as keyed tags, "
        "and this report counts them, never names them.</small></p>",
        f'<div class="cards">{cards}</div>',
        "<h2>Asks per department per day</h2>",
        drawn["asks"],
        _details(
            "Table: asks per department per day",
            _table(["day", *data.departments, "total"], day_rows),
        ),
        "<h2>Refusals</h2>",
        drawn["refusals"],
        _details(
            "Table: refusals by department and reason",
            _table(["department", "reason", "refusals"], data.refusal_reasons),
        ),
        "<h2>Certificates replaced</h2>",
        "<p>An answered ask of a fact that replaces a certificate, under one of the service "
        "matters the certificate catalogue lists for it, is one certificate the citizen did "
        "not have to fetch.</p>",
        drawn["certificates"],
        _details(
            "Table: certificates replaced",
            _table(["certificate", "fact", "issuer", "replaced"], data.certificates),
        ),
        "<h2>Citizen trips saved (estimate)</h2>",
        "<p>One trip per certificate replaced, to the department that would have issued it.</p>",
        drawn["trips"],
        _details(
            "Table: trips saved by issuing department",
            _table(["issuing department", "trips saved"], list(data.trips_by_issuer.items())),
        ),
        "<h2>E-supervision alerts</h2>",
        drawn["alerts"],
        _table(
            ["kind", *CARDS],
            [[k, *[alert_counts[(k, c)] for c in CARDS]] for k in KINDS],
        ),
        '<div class="wide">',
        _table(
            [
                "rule",
                "kind",
                "card",
                "principals",
                "departments",
                "time (UTC)",
                "entries",
                "ledger indexes",
                "message",
            ],
            alert_rows,
        ),
        "</div>",
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n{body}\n"
        "</body></html>\n"
    )


def _details(summary: str, content: str) -> str:
    return f"<details><summary>{_e(summary)}</summary>{content}</details>"


def write_report(path: Path, data: ReportData) -> Path:
    """Write the report atomically (temp file, then rename); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(build_report(data), encoding="utf-8")
    tmp.replace(path)
    return path


def home_report_data(
    home: Any, *, now: dt.datetime | None = None, store: ExchangeStore | None = None
) -> ReportData:
    """Scan the home's ledger and raise the alerts: the report's figures.

    ``store``: an open exchange store to read published data and department names from
    (the serving process's); default: the home's, opened read-only.
    """
    import contextlib

    from exchange.audit import read_home_ledger
    from exchange.store import ExchangeStore
    from exchange.supervision import alerts, load_config

    config = load_config()
    frame = read_home_ledger(home)
    with contextlib.ExitStack() as owned:
        if store is None:
            store = owned.enter_context(ExchangeStore(home.exchange_db, read_only=True))
        found = alerts(home, config=config, frame=frame, store=store)
        names = {r["code"]: r["name"] for r in store.rows("SELECT code, name FROM departments")}
    return report_data(frame, found, config, department_names=names, now=now)


def home_report(home: Any, out: Path, *, now: dt.datetime | None = None) -> tuple[Path, ReportData]:
    """Scan the home's ledger, raise the alerts and write the report to ``out``."""
    data = home_report_data(home, now=now)
    return write_report(out, data), data
