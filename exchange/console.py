"""The web console: one page per kind of user, server-rendered, no build step.

- caseworkers pick a certificate from the catalogue, fill in the fact's parameters, and
  get the answer with its ledger index and the exchange-signed receipt to download;
- stewards see datasets, their department's publications and quarantined rows;
- auditors see the ledger's size, the latest cosigned checkpoint and a full verification,
  the e-supervision alerts and the audit report's charts (inline SVG drawn by
  `exchange.report`), download the full report, and ask for a citizen's report (a POST
  form: a resident ID never goes into a URL).

The token from `onceonly token issue` is the login: it is kept in an HttpOnly,
SameSite=Strict cookie (Secure when served over HTTPS), so other sites cannot make the
browser use it. Every form post must also come from the console's own origin: a browser
says where a request comes from (``Sec-Fetch-Site``, ``Origin``), and a post from another
site is refused before anything happens — the login form included, which no cookie
guards (another site could otherwise sign a caseworker in as someone else). Every value
shown is HTML-escaped; every action goes through the same library calls as the API.
"""

import datetime as dt
import html
import json
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.home import Home
from exchange.policy import Principal

if TYPE_CHECKING:
    from exchange.report import ReportData

COOKIE = "onceonly_token"

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#12355b;color:#fff;padding:.8rem 1.5rem;display:flex;
justify-content:space-between}
header a,header button{color:#fff;background:none;border:0;font:inherit;cursor:pointer}
main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
section{background:#fff;border-radius:6px;padding:1rem 1.5rem;margin-bottom:1rem;
box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #e3e6ea;vertical-align:top}
label{display:block;margin:.6rem 0 .2rem;font-weight:600}
input,select{padding:.4rem;width:100%;max-width:28rem;box-sizing:border-box}
button.primary{margin-top:1rem;padding:.5rem 1.2rem;background:#12355b;color:#fff;border:0;
border-radius:4px;cursor:pointer}
pre{background:#f0f2f5;padding:.6rem;overflow-x:auto;font-size:.8rem}
.answer{font-size:1.6rem;font-weight:700}.refused{color:#b3261e}.ok{color:#1e7b34}
.muted{color:#5b6472;font-size:.9rem}
.yellow{color:#8a6d00;font-weight:600}.red{color:#b3261e;font-weight:600}
section svg{max-width:100%;height:auto}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, who: Principal | None = None, style: str = "") -> HTMLResponse:
    account = ""
    if who is not None:
        account = (
            f'<form method="post" action="/console/logout">{_e(who.text)} · '
            '<button type="submit">sign out</button></form>'
        )
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)} — onceonly</title><style>{_STYLE}{style}</style></head><body>"
        f"<header><strong>onceonly · {_e(title)}</strong>{account}</header>"
        f"<main>{body}</main></body></html>"
    )


def same_origin(request: Request) -> None:
    """Refuse a form posted by a page of another site (cross-site request forgery).

    Browsers send ``Sec-Fetch-Site`` (and ``Origin`` on posts); a request without
    either is not a browser's cross-site form (curl, a test client) and passes.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise StarletteHTTPException(403, f"a console form posted from a {site} page")
    origin = request.headers.get("origin")
    # Host and port only: behind a TLS proxy the scheme seen here is not the page's.
    if origin is not None and urllib.parse.urlsplit(origin).netloc != request.headers.get(
        "host", ""
    ):
        raise StarletteHTTPException(403, "a console form posted from another origin")


def add_console(
    app: FastAPI,
    home: Home,
    exchange: Callable[[], Any],
    tokens: Callable[[], Any],
    clock: Callable[[], dt.datetime],
) -> None:
    """Mount the console's pages on ``app``."""

    def current(request: Request) -> Principal | None:
        token = request.cookies.get(COOKIE, "")
        found: Principal | None = tokens().authenticate(token) if token else None
        return found

    @app.get("/console", response_class=HTMLResponse, include_in_schema=False)
    def console_home(request: Request) -> Response:
        who = current(request)
        if who is not None:
            return RedirectResponse(f"/console/{who.role}", status_code=303)
        body = (
            "<section><h2>Sign in</h2><p class='muted'>Paste the API token you were issued "
            "(<code>onceonly token issue --as caseworker:&lt;department&gt;/&lt;you&gt;</code>)."
            "</p><form method='post' action='/console/login'>"
            "<label for='token'>Token</label><input id='token' name='token' type='password' "
            "autocomplete='off' required><button class='primary' id='sign-in' type='submit'>"
            "Sign in</button>"
            "</form></section>"
        )
        return _page("console", body)

    @app.post("/console/login", dependencies=[Depends(same_origin)], include_in_schema=False)
    def login(request: Request, token: str = Form(max_length=200)) -> Response:
        who = tokens().authenticate(token.strip())
        if who is None:
            return _page("console", "<section><p class='refused'>That token is not valid.</p>"
                         "<a href='/console'>Try again</a></section>")  # fmt: skip
        response = RedirectResponse(f"/console/{who.role}", status_code=303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/console/logout", dependencies=[Depends(same_origin)], include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/console", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def require(request: Request, role: str) -> Principal | Response:
        who = current(request)
        if who is None:
            return RedirectResponse("/console", status_code=303)
        if who.role != role:
            return _page("forbidden", f"<section><p class='refused'>This page is for {role}s."
                         "</p></section>", who)  # fmt: skip
        return who

    # --- caseworker ------------------------------------------------------------------

    @app.get("/console/caseworker", response_class=HTMLResponse, include_in_schema=False)
    def caseworker(request: Request, certificate: str = "") -> Response:
        from exchange.catalogue import load_catalogue
        from exchange.facts import load_fact

        who = require(request, "caseworker")
        if not isinstance(who, Principal):
            return who
        policy = exchange().policy
        catalogue = load_catalogue()
        options = "".join(
            f"<option value='{_e(c.id)}'{' selected' if c.id == certificate else ''}>"
            f"{_e(c.name)} — {_e(c.english)}</option>"
            for c in catalogue
        )
        body = (
            "<section><h2>Replace a certificate</h2>"
            "<form method='get' action='/console/caseworker'>"
            f"<label for='certificate'>Certificate the citizen was asked for</label>"
            f"<select id='certificate' name='certificate'>{options}</select>"
            "<button class='primary' id='choose' type='submit'>Choose</button></form></section>"
        )
        chosen = next((c for c in catalogue if c.id == certificate), None)
        if chosen is not None:
            fact = load_fact(chosen.facts[0])
            matters = policy.service_matters(who.department, fact.id)
            titles = policy.power_lists.get(who.department, {})
            fields = "".join(_field(p) for p in fact.parameters)
            matter_options = "".join(
                f"<option value='{_e(m)}'>{_e(m)} {_e(titles.get(m, ''))}</option>" for m in matters
            )
            if not matters:
                matter_options = "<option value=''>(no grant for your department)</option>"
            body += (
                f"<section><h2>{_e(chosen.name)}</h2>"
                f"<p>Instead: <strong>{_e(fact.title)}</strong></p>"
                f"<p class='muted'>{_e(fact.question)} Spares a visit to {_e(chosen.issuer)}.</p>"
                "<form method='post' action='/console/caseworker/ask'>"
                f"<input type='hidden' name='fact' value='{_e(fact.id)}'>"
                f"<input type='hidden' name='certificate' value='{_e(chosen.id)}'>{fields}"
                "<label for='service_matter'>Service matter (purpose)</label>"
                f"<select id='service_matter' name='service_matter'>{matter_options}</select>"
                "<label for='case_ref'>Case reference</label>"
                "<input id='case_ref' name='case_ref' placeholder='RS-2026-000123' required>"
                "<button class='primary' id='ask' type='submit'>Ask</button></form></section>"
            )
        return _page("caseworker", body, who)

    @app.post(
        "/console/caseworker/ask",
        dependencies=[Depends(same_origin)],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def caseworker_ask(request: Request) -> Response:
        from exchange.ask import AskFailed, AskRefused
        from exchange.facts import load_fact

        who = require(request, "caseworker")
        if not isinstance(who, Principal):
            return who
        form = await request.form()
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        fact = load_fact(values.get("fact", ""))
        params = {p.name: values.get(f"param_{p.name}", "") for p in fact.parameters}
        try:
            answer = exchange().ask(
                fact.id, params, principal=who.text,
                service_matter=values.get("service_matter", ""),
                case_ref=values.get("case_ref", ""), now=clock(),
            )  # fmt: skip
        except (AskRefused, AskFailed) as problem:
            body = (
                f"<section><h2>{_e(fact.title)}</h2><p class='answer refused' id='outcome'>"
                f"Refused: {_e(problem.reason)}</p><p>The refusal is ledger entry "
                f"{problem.index}.</p><a href='/console/caseworker'>Ask again</a></section>"
            )
            return _page("caseworker", body, who)
        receipt = urllib.parse.quote(answer.receipt)
        shown = json.dumps(answer.result, ensure_ascii=False)
        body = (
            f"<section><h2>{_e(fact.title)}</h2>"
            f"<p class='answer ok' id='answer'>{_e(shown)}</p>"
            f"<table><tr><th>fact</th><td>{_e(answer.fact)}@{_e(answer.version)}</td></tr>"
            f"<tr><th>ledger entry</th><td id='ledger-index'>{answer.ledger_index}</td></tr>"
            f"<tr><th>publications relied on</th><td>{_e(', '.join(map(str, answer.relied_on)))}"
            f"</td></tr><tr><th>time</th><td>{_e(answer.time)}</td></tr></table>"
            f"<h3>Receipt signed by the exchange</h3><pre>{_e(answer.receipt)}</pre>"
            f"<a id='download' download='answer-{answer.ledger_index}.receipt.txt' "
            f"href='data:text/plain;charset=utf-8,{_e(receipt)}'>Download the receipt</a> · "
            "<a href='/console/caseworker'>Ask another</a>"
            "<p class='muted'>Once a checkpoint covers the entry, its offline proof is at "
            f"<code>/v1/receipts/{answer.ledger_index}</code>.</p></section>"
        )
        return _page("caseworker", body, who)

    # --- steward ---------------------------------------------------------------------

    @app.get("/console/steward", response_class=HTMLResponse, include_in_schema=False)
    def steward(request: Request) -> Response:
        who = require(request, "steward")
        if not isinstance(who, Principal):
            return who
        store = exchange().store
        datasets = store.rows(
            "SELECT d.name, d.department, d.compatibility, string_agg(v.version, ', ') AS versions "
            "FROM datasets d LEFT JOIN schema_versions v ON v.dataset = d.name "
            "GROUP BY ALL ORDER BY d.name"
        )
        pubs = store.rows(
            "SELECT id, dataset, version, rows_read, rows_accepted, rows_quarantined, "
            "published_at FROM publications WHERE department = ? ORDER BY id DESC",
            [who.department],
        )
        body = "<section><h2>Datasets</h2>" + _table(datasets) + "</section>"
        body += (
            "<section><h2>Your department's publications</h2>"
            + _table(pubs, link=("id", "/console/steward/quarantine/{}"))
            + "</section>"
        )
        return _page("steward", body, who)

    @app.get("/console/steward/quarantine/{publication_id}", response_class=HTMLResponse,
             include_in_schema=False)  # fmt: skip
    def steward_quarantine(request: Request, publication_id: int) -> Response:
        import pyarrow.parquet as pq

        from exchange.package import QUARANTINE

        who = require(request, "steward")
        if not isinstance(who, Principal):
            return who
        found = exchange().store.one("SELECT * FROM publications WHERE id = ?", [publication_id])
        if found is None or found["department"] != who.department:
            return _page("steward", "<section><p>No such publication.</p></section>", who)
        rows = pq.read_table(f"{found['package_dir']}/{QUARANTINE}").slice(0, 200).to_pylist()
        body = (
            f"<section><h2>Quarantine of publication {publication_id} ({_e(found['dataset'])})"
            f"</h2><p>{found['rows_quarantined']:,} of {found['rows_read']:,} rows quarantined; "
            "the first 200 violations:</p>" + _table(rows) + "</section>"
        )
        return _page("steward", body, who)

    # --- auditor ---------------------------------------------------------------------

    def report_data() -> "ReportData":
        from exchange.report import home_report_data

        with exchange().store.reader() as store:  # a snapshot; the writer goes on
            return home_report_data(home, now=clock(), store=store)

    @app.get("/console/auditor", response_class=HTMLResponse, include_in_schema=False)
    def auditor(request: Request) -> Response:
        from exchange.ledgerlink import log_verifier, witness_verifier

        who = require(request, "auditor")
        if not isinstance(who, Principal):
            return who
        log = exchange().log
        report = log.verify(verifiers=[log_verifier(home), witness_verifier(home)])
        verdict = "<span class='ok'>verified</span>"
        if not report.ok:
            problems = _e("\n".join(report.lines()))
            verdict = f"<span class='refused'>FAILED</span><pre>{problems}</pre>"
        checkpoint = log.latest_checkpoint() or "(no checkpoint yet)"
        body = (
            f"<section><h2>Ledger</h2><p>{log.size:,} entries · full verification: {verdict}</p>"
            f"<h3>Latest checkpoint (signed and cosigned)</h3><pre>{_e(checkpoint)}</pre></section>"
        )
        from exchange.report import CHART_STYLE

        body += _audit_sections(report_data()) + _CITIZEN_FORM
        return _page("auditor", body, who, style=CHART_STYLE)

    @app.get("/console/auditor/report", include_in_schema=False)
    def auditor_report(request: Request) -> Response:
        from exchange.report import build_report

        who = require(request, "auditor")
        if not isinstance(who, Principal):
            return who
        data = report_data()
        name = f"onceonly-audit-report-{data.generated_at[:10]}.html"
        return HTMLResponse(
            build_report(data), headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    @app.post(
        "/console/auditor/citizen-report",
        dependencies=[Depends(same_origin)],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    def auditor_citizen_report(
        request: Request,
        resident_id: str = Form(max_length=64),
        as_of: str = Form(default="", max_length=10),
    ) -> Response:
        from exchange.citizen import citizen_report, end_of_local_day
        from exchange.errors import InvalidArgument

        who = require(request, "auditor")
        if not isinstance(who, Principal):
            return who
        try:
            day = dt.date.fromisoformat(as_of) if as_of else None
        except ValueError:
            day = None
        if as_of and (day is None or day.year < 1970):
            problem = "the date must be YYYY-MM-DD, 1970 or later"
            return _page("auditor", _citizen_problem(problem), who)
        now = end_of_local_day(day) if day is not None else clock()
        try:
            with exchange().store.reader() as store:
                report = citizen_report(home, resident_id, now=now, auditor=True, store=store)
        except InvalidArgument as problem:
            return _page("auditor", _citizen_problem(str(problem)), who)
        rows = [
            {
                "ledger entry": e.index,
                "when (Beijing)": e.local_time,
                "department": e.department_name,
                "principal": e.principal,
                "service matter": f"{e.service_matter} {e.service_matter_title}",
                "fact": e.fact_title,
                "outcome": e.outcome + (f": {e.reason}" if e.reason else ""),
                "certificate spared": "; ".join(e.certificates),
                "case": e.case_ref,
                "embargo until": e.embargo_until,
            }
            for e in report.entries
        ]
        body = (
            "<section><h2>Citizen report (auditor's view)</h2>"
            f"<p id='citizen-summary'>{len(report.entries)} ask(s) as of {_e(report.as_of)}; "
            f"{report.trips_spared} trip(s) to an office spared; {report.embargoed} under "
            "embargo (hidden from the citizen's own view).</p>"
            + _table(rows)
            + "<p><a href='/console/auditor'>Back to the auditor's page</a></p></section>"
            + _CITIZEN_FORM
        )
        return _page("auditor", body, who)


_CITIZEN_FORM = (
    "<section><h2>Citizen report</h2><p class='muted'>Every ask about one resident, in the "
    "auditor's view (embargoed asks and principals included). The ID number is sent in the "
    "form's body, never in a link.</p>"
    "<form method='post' action='/console/auditor/citizen-report'>"
    "<label for='resident_id'>Resident ID number</label><input id='resident_id' "
    "name='resident_id' required maxlength='18' pattern='[0-9]{17}[0-9X]' autocomplete='off'>"
    "<label for='as_of'>As of (local date; empty: now)</label>"
    "<input id='as_of' name='as_of' type='date'>"
    "<button class='primary' id='citizen-report' type='submit'>Show the report</button>"
    "</form></section>"
)


def _citizen_problem(message: str) -> str:
    return f"<section><p class='refused' id='citizen-problem'>{_e(message)}</p></section>" + (
        _CITIZEN_FORM
    )


def _audit_sections(data: "ReportData") -> str:
    """The e-supervision alerts and the audit report's charts, from `home_report_data`."""
    from exchange.report import charts

    rows = "".join(
        f"<tr><td class='{_e(a.card)}'>{_e(a.card)}</td><td>{_e(a.kind)}</td>"
        f"<td>{_e(a.rule)}</td><td>{_e(a.message)}</td><td>{_e(', '.join(a.principals))}</td>"
        f"<td>{_e(a.first_time)}"
        + (f" – {_e(a.last_time)}" if a.last_time != a.first_time else "")
        + f"</td><td>{len(a.indexes):,}</td></tr>"
        for a in data.alerts
    )
    yellow = sum(1 for a in data.alerts if a.card == "yellow")
    alerts = (
        "<table id='alerts'><thead><tr><th>card</th><th>kind</th><th>rule</th><th>message</th>"
        "<th>principals</th><th>time (UTC)</th><th>entries</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if data.alerts
        else "<p class='muted' id='alerts'>no alerts</p>"
    )
    drawn = charts(data)
    return (
        f"<section><h2>E-supervision alerts</h2><p>{yellow} yellow card(s), "
        f"{len(data.alerts) - yellow} red card(s) over {data.entries:,} ledger entries.</p>"
        f"{alerts}</section>"
        "<section id='charts'><h2>Audit report</h2>"
        f"<p>{data.asks:,} asks · {data.certificates_replaced:,} certificates replaced · "
        f"{data.trips_saved:,} citizen trips saved (est.) · "
        "<a id='report-download' href='/console/auditor/report' download>"
        "Download the full report (HTML, charts and tables)</a></p>"
        + "".join(drawn[name] for name in ("asks", "refusals", "certificates", "trips", "alerts"))
        + "</section>"
    )


def _field(parameter: Any) -> str:
    name = f"param_{parameter.name}"
    if parameter.type == "enum":
        options = "".join(f"<option>{_e(v)}</option>" for v in parameter.values)
        control = f"<select id='{name}' name='{name}'>{options}</select>"
    else:
        kind = {"integer": "number", "date": "date"}.get(parameter.type, "text")
        control = f"<input id='{name}' name='{name}' type='{kind}' required>"
    return f"<label for='{name}'>{_e(parameter.title)}</label>{control}"


def _table(rows: list[dict[str, Any]], link: tuple[str, str] | None = None) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = []
        for column in columns:
            value = "" if row[column] is None else row[column]
            text = _e(value)
            if link and column == link[0]:
                text = f"<a href='{_e(link[1].format(value))}'>{text}</a>"
            cells.append(f"<td>{text}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
