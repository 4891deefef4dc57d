"""The daily audit: the e-supervision scan over the ledger, and the day's report.

`scan` runs every e-supervision rule (`exchange.supervision`: time, process, content,
discretion, risk control; thresholds in `schemas/supervision.json`) over the home's whole
ledger and keeps the alerts whose last ask fell on the run's day (Beijing date), as JSON;
the yellow and red cards are in the task log too. `report` writes the self-contained
HTML audit report (charts and the tables behind them) for auditors to open offline.

Both land in the run's `reports` param, else `ONCEONLY_REPORTS`, else `reports/` in the
home: `alerts-<date>.json` and `audit-<date>.html`. The report reads the exchange's
database, so it takes the one-writer pool like every other task that opens it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

WRITER_POOL = "onceonly_exchange_writer"
START = datetime(2026, 1, 1, tzinfo=UTC)

log = logging.getLogger("onceonly.audit")


def _reports_folder(params: dict[str, Any]) -> str:
    import os

    from exchange.home import Home

    chosen = params.get("reports") or os.environ.get("ONCEONLY_REPORTS")
    return str(chosen or Home.locate().require().root / "reports")


@dag(
    dag_id="audit_daily",
    description="E-supervision scan of the ledger and the day's audit report",
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["onceonly", "audit"],
    params={
        "reports": Param(
            None,
            type=["null", "string"],
            description="Folder for alerts-<date>.json and audit-<date>.html; empty: "
            "ONCEONLY_REPORTS, else reports/ in the home.",
        )
    },
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def audit_daily() -> None:
    @task(pool=WRITER_POOL)
    def scan() -> dict[str, Any]:
        """Every rule over the ledger; the day's alerts as JSON; the cards in the log."""
        import json
        from pathlib import Path

        from exchange.home import Home
        from exchange.supervision import AlertSummary, alerts

        context = get_current_context()
        # `alerts(since=…)` takes a Beijing date: the day the run covers, in UTC+8.
        beijing = timezone(timedelta(hours=8))
        day = (context["logical_date"] or datetime.now(UTC)).astimezone(beijing).date()
        home = Home.locate().require()
        found = alerts(home, since=day)
        folder = Path(_reports_folder(dict(context["params"])))
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"alerts-{day.isoformat()}.json"
        out.write_text(json.dumps([a.to_dict() for a in found], ensure_ascii=False, indent=2))
        for alert in found:
            log.warning("%s card, %s: %s (%s)", alert.card, alert.kind, alert.message, alert.rule)
        summary = AlertSummary.of(found)
        return {
            "alerts": str(out),
            "yellow": summary.total("yellow"),
            "red": summary.total("red"),
            "day": day.isoformat(),
        }

    @task(pool=WRITER_POOL)
    def report(scanned: dict[str, Any]) -> dict[str, Any]:
        """The self-contained HTML audit report of the ledger as it stands."""
        from pathlib import Path

        from exchange.home import Home
        from exchange.report import home_report

        context = get_current_context()
        folder = Path(_reports_folder(dict(context["params"])))
        path, data = home_report(Home.locate().require(), folder / f"audit-{scanned['day']}.html")
        log.info("audit report %s: %d asks, %d alerts", path, data.asks, len(data.alerts))
        return {"report": str(path), "asks": data.asks, "alerts": len(data.alerts)}

    report(scan())


audit_daily()
