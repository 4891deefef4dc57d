"""The ledger's housekeeping: a signed, witness-cosigned checkpoint every few minutes.

`checkpoint` opens the home's ledger (`ONCEONLY_HOME`) with its witness and signs a
checkpoint of the log as it is: the exchange's log key signs it, then the witness (the
audit office's key, in the embedded defaults) cosigns it once it has checked that the new
tree extends the last one it cosigned. Receipts for answers can only be given for entries
a checkpoint covers, so this keeps them at most a few minutes away.

`export_tiles` then brings the static C2SP tlog-tiles export up to that checkpoint, for
third parties to fetch and check without access to the exchange: the folder is the run's
`tiles` param, else `ONCEONLY_TILES`, else `tiles/` in the home. The export is
incremental: tiles already there are compared and kept.

The ledger store has one writer at a time, shared with the publications' ingest: both
tasks take the same one-slot pool.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

WRITER_POOL = "onceonly_exchange_writer"  # the same pool as the publications' ingest
START = datetime(2026, 1, 1, tzinfo=UTC)

log = logging.getLogger("onceonly.ledger")


@dag(
    dag_id="ledger_checkpoint",
    description="Sign a ledger checkpoint, cosigned by the home's witness",
    schedule=timedelta(minutes=5),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["onceonly", "ledger"],
    params={
        "tiles": Param(
            None,
            type=["null", "string"],
            description="Folder of the tlog-tiles export; empty: ONCEONLY_TILES, else "
            "tiles/ in the home.",
        )
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def ledger_checkpoint() -> None:
    @task(pool=WRITER_POOL)
    def checkpoint() -> dict[str, Any]:
        """Sign and cosign a checkpoint; return its origin, size and root hash."""
        from exchange.home import Home
        from exchange.ledgerlink import open_log

        home = Home.locate().require()
        with open_log(home) as ledger:
            note = ledger.checkpoint()
        origin, size, root = note.split("\n")[:3]
        log.info("checkpoint of %s entries, cosigned:\n%s", size, note)
        return {"origin": origin, "size": int(size), "root": root}

    @task(pool=WRITER_POOL)
    def export_tiles(signed: dict[str, Any]) -> dict[str, Any]:
        """Export the ledger up to its latest checkpoint (this one, or a later one)."""
        from exchange.home import Home
        from exchange.ledgerlink import export_tiles as export

        home = Home.locate().require()
        chosen = get_current_context()["params"].get("tiles") or os.environ.get("ONCEONLY_TILES")
        out = Path(chosen).expanduser().absolute() if chosen else home.root / "tiles"
        result = export(home, out)
        log.info(
            "tiles of %s entries in %s: %d files written, %d already there, %d removed",
            result.size,
            out,
            len(result.written),
            result.unchanged,
            len(result.removed),
        )
        return {"out": str(out), "size": result.size, "written": len(result.written)}

    export_tiles(checkpoint())


ledger_checkpoint()
