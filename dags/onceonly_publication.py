"""Publication DAGs: one per department source configuration, all made by one factory.

Each DAG takes one source (`connectors/sources/<department>.<dataset>.toml`) along the
steward's path, as `onceonly publish` does, a step per task:

    source  ->  package  ->  ingest  ->  announce
    (config,    (read,       (verify, quality   (the dataset's Asset, when a new
     city)       validate,    gate, publish:     publication became current)
                 sign)        one-slot pool)

Only paths, ids and counts travel between tasks (XCom), never rows. The library is
imported inside the tasks, so parsing this file costs the standard library and
`airflow.sdk` only.

Run time, on the worker that runs the task:
- `ONCEONLY_HOME`: the onceonly home (exchange database, ledger, keys);
- the run's `city` param, else `ONCEONLY_CITY`: the folder of department exports that the
  configs' `{city}` stands for;
- the Airflow connection `onceonly_<department>` (e.g. ``AIRFLOW_CONN_ONCEONLY_HRSS=
  http://:<steward token>@exchange-host:8000``), where the exchange runs as a service:
  `ingest` then uploads the signed package to it, the one writer, instead of opening
  the database itself.

Parse time:
- `ONCEONLY_SOURCES`: the folder of source configurations (default: `connectors/sources`
  of this checkout);
- `ONCEONLY_DEPARTMENT_QUEUES=1`: the tasks that read and sign (`source`, `package`) go
  to a queue named after the department, for a worker inside that department's network;
  `ingest` and `announce` stay on the exchange's default queue.
"""

from __future__ import annotations

import logging
import os
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from airflow.sdk import DAG, Asset, Param, dag, get_current_context, task

SOURCES = Path(
    os.environ.get("ONCEONLY_SOURCES")
    or Path(__file__).resolve().parent.parent / "connectors" / "sources"
)
# DuckDB allows one writing process, and the ledger store one writer: every task that
# writes the home takes the single slot of this pool.
WRITER_POOL = "onceonly_exchange_writer"
DEPARTMENT_QUEUES = os.environ.get("ONCEONLY_DEPARTMENT_QUEUES", "").lower() in {"1", "true"}
START = datetime(2026, 1, 1, tzinfo=UTC)

log = logging.getLogger("onceonly.publication")


def dataset_asset(dataset: str) -> Asset:
    """The Asset a dataset's publications update: downstream DAGs may schedule on it."""
    return Asset(name=f"onceonly.{dataset}", uri=f"x-onceonly://exchange/{dataset}")


def _identity(config: Path) -> tuple[str, str, str]:
    """(department, dataset, description) as the config file names them, cheaply.

    A config that cannot be read here still gets its DAG (named from the file name), and
    its `source` task fails with the full error from `connectors.load_source`.
    """
    department, _, dataset = config.stem.partition(".")
    try:
        data = tomllib.loads(config.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return department, dataset or department, ""
    return (
        str(data.get("department", department)),
        str(data.get("dataset", dataset)),
        str(data.get("description", "")),
    )


def _fail(message: str, problem: BaseException) -> NoReturn:
    """Fail the task for good (no retry: the same input fails the same way)."""
    from airflow.sdk.exceptions import AirflowFailException

    log.error("%s", message)
    raise AirflowFailException(message) from problem


def service_connection_id(department: str) -> str:
    return f"onceonly_{department}"


def _service(department: str) -> tuple[str, str] | None:
    """(service URL, steward token) from the department's connection, if one is set."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        found = Connection.get(service_connection_id(department))
    except AirflowNotFoundException:
        return None
    scheme = "https" if found.conn_type == "https" else "http"
    port = f":{found.port}" if found.port else ""
    return f"{scheme}://{found.host}{port}", str(found.password or "")


def _upload(service: tuple[str, str], package: Path, dataset: str) -> dict[str, Any]:
    """The package through the running service's API (it verifies, gates and ledgers)."""
    from exchange.upload import UploadRefused, upload_package

    url, token = service
    try:
        done = upload_package(url, token, package)
    except UploadRefused as refused:
        _fail(f"{refused} (the service records a refusal in the ledger)", refused)
    what = "unchanged, already current as" if done["unchanged"] else "published as"
    log.info("%s %s publication %d via %s", dataset, what, done["id"], url)
    return {
        "publication_id": done["id"],
        "dataset": done["dataset"],
        "version": done["version"],
        "unchanged": done["unchanged"],
        "rows": done["rows"],
    }


def publication_dag(config: Path) -> DAG:
    """The publication DAG of one source configuration file."""
    department, dataset, description = _identity(config)
    asset = dataset_asset(dataset)
    reading: dict[str, Any] = {"queue": department} if DEPARTMENT_QUEUES else {}

    @dag(
        dag_id=f"publish.{config.stem}",
        description=f"Publish {dataset} ({department}): {description}".rstrip(": "),
        schedule="@daily",  # the departments' nightly exports
        start_date=START,
        catchup=False,
        max_active_runs=1,  # one build of a dataset's package at a time
        tags=["onceonly", "publication", department],
        params={
            "city": Param(
                None,
                type=["null", "string"],
                description="Folder of department exports ({city} in the source configs); "
                "empty: the worker's ONCEONLY_CITY.",
            )
        },
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
        doc_md=__doc__,
    )
    def publication() -> None:
        @task(**reading)
        def source() -> dict[str, str]:
            """Check the configuration and where the source lives; nothing is read yet."""
            from connectors import load_source
            from connectors.errors import SourceConfigError

            city = get_current_context()["params"].get("city") or os.environ.get("ONCEONLY_CITY")
            if not city:
                _fail(
                    "no city: give the run a `city` param or set ONCEONLY_CITY on the worker",
                    ValueError("city"),
                )
            folder = Path(str(city)).expanduser().absolute()
            try:
                loaded = load_source(config)
                connector = loaded.open(city=folder)
            except SourceConfigError as problem:
                _fail(str(problem), problem)
            if (loaded.department, loaded.dataset) != (department, dataset):
                _fail(
                    f"{config} now names {loaded.department}/{loaded.dataset}, not "
                    f"{department}/{dataset}: let the DAG file be parsed again",
                    ValueError(config.name),
                )
            log.info("%s: %s in %s", config.name, connector.describe(), folder)
            return {"config": str(config), "city": str(folder)}

        @task(**reading)
        def package(chosen: dict[str, str]) -> dict[str, Any]:
            """Read and validate the source, write the package, sign it with the key."""
            from connectors import load_source
            from connectors.errors import SourceConfigError
            from exchange.home import Home
            from exchange.package import NothingLost, PackageInvalid, build_package
            from exchange.publish import PublicationRefused, department_signer

            home = Home.locate().require()
            try:
                loaded = load_source(Path(chosen["config"]))
                signer = department_signer(home, loaded.department)
                built = build_package(
                    loaded, home.root / "outbox", signer, city=Path(chosen["city"])
                )
            except (SourceConfigError, PackageInvalid, PublicationRefused, NothingLost) as problem:
                _fail(str(problem), problem)
            log.info("package %s: rows %s", built.path, built.rows)
            violations = built.manifest.get("violations") or {}
            if violations:
                log.info("quarantined by rule: %s", violations)
            return {"path": str(built.path), "dataset": built.dataset, "rows": built.rows}

        @task(pool=WRITER_POOL)
        def ingest(built: dict[str, Any]) -> dict[str, Any]:
            """Verify the package and publish it; the ledger records either outcome.

            Where the exchange runs as a service (`onceonly serve`, the one writer), the
            Airflow connection ``onceonly_<department>`` gives its URL and the
            department steward's token, and the package goes through its API instead.
            """
            from exchange.home import Home
            from exchange.package import PackageInvalid
            from exchange.publish import PublicationRefused
            from exchange.publish import ingest as ingest_package
            from exchange.quality import QualityFailed
            from exchange.store import ExchangeStore

            service = _service(department)
            if service is not None:
                return _upload(service, Path(built["path"]), dataset)
            home = Home.locate().require()
            try:
                with ExchangeStore(home.exchange_db) as store:
                    done = ingest_package(store, home, Path(built["path"]))
            except QualityFailed as refused:
                for reason in refused.report.failures:
                    log.error("quality gate: %s", reason)
                _fail(refused.report.summary() + " (refusal recorded in the ledger)", refused)
            except (PackageInvalid, PublicationRefused) as refused:
                _fail(f"{refused} (refusal recorded in the ledger)", refused)
            what = "unchanged, already current as" if done.unchanged else "published as"
            log.info("%s %s publication %d: rows %s", dataset, what, done.id, done.rows)
            return {
                "publication_id": done.id,
                "dataset": done.dataset,
                "version": done.version,
                "unchanged": done.unchanged,
                "rows": done.rows,
            }

        @task(outlets=[asset])
        def announce(done: dict[str, Any]) -> None:
            """An asset event for a new publication; none when the data was unchanged."""
            from airflow.sdk.exceptions import AirflowSkipException

            if done["unchanged"]:
                raise AirflowSkipException(
                    f"{dataset}: publication {done['publication_id']} is still current"
                )
            get_current_context()["outlet_events"][asset].extra = {
                "publication_id": done["publication_id"],
                "version": done["version"],
                "rows_accepted": done["rows"]["accepted"],
            }

        announce(ingest(package(source())))

    return publication()


for _config in sorted(SOURCES.glob("*.toml")):  # as connectors.source_files lists them
    _made = publication_dag(_config)
    globals()[_made.dag_id] = _made
