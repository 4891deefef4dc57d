"""The Airflow DAGs: they import cleanly and cheaply, and they run the library end to end.

Airflow reads its configuration (AIRFLOW_HOME, the metadata DB) once per process, so
everything that touches Airflow runs in a subprocess with its own temporary AIRFLOW_HOME
and a migrated SQLite metadata DB; the effects are then checked here, in the exchange's
DuckDB database and the ledger, with the library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors import load_source, source_files
from exchange import registry
from exchange.contracts import contract_files, load_contract_file
from exchange.home import Home, init_home
from exchange.keys import generate_key, raw_public
from exchange.ledgerlink import log_verifier, open_log, witness_verifier
from exchange.store import ExchangeStore
from exchange.synth.city import generate_city
from ledger.checkpoint import open_checkpoint, verify_cosignature
from ledger.entries import decode
from ledger.note import parse_note
from ledger.tiles import CHECKPOINT_PATH, verify_tiles

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
SOURCES = ROOT / "connectors" / "sources"
WRITER_POOL = "onceonly_exchange_writer"
DEPARTMENTS = {"public_security": "公安", "health": "卫健", "civil_affairs": "民政",
               "hrss": "人社", "housing": "住建", "education": "教育"}  # fmt: skip
# Big enough for every dataset's quality gate (a city of 300 has no divorce at all).
CITY = {"persons": 1000, "seed": 3, "dirty_rate": 0.02}
RESULT = "ONCEONLY_TEST_RESULT "
pytestmark = pytest.mark.slow
HEAVY = ("exchange", "connectors", "ledger", "duckdb", "pyarrow", "pandas", "great_expectations")


def airflow_env(airflow_home: Path, onceonly_home: Path | None = None) -> dict[str, str]:
    """The environment of an isolated Airflow: its own home, these DAGs, no examples."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    env.pop("ONCEONLY_CITY", None)
    if onceonly_home is not None:
        env["ONCEONLY_HOME"] = str(onceonly_home)
    return env


def airflow(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run the `airflow` command line; its output, or the test fails with it."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def python(env: dict[str, str], code: str, *args: str, log: Path, timeout: float) -> Any:
    """Run `code` in a fresh interpreter; return the JSON it printed after RESULT."""
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
    text = log.read_text("utf-8", errors="replace")
    found = [line for line in text.splitlines() if line.startswith(RESULT)]
    assert done.returncode == 0 and found, f"exit {done.returncode}; log {log}:\n{text[-6000:]}"
    return json.loads(found[-1][len(RESULT) :])


def make_home(root: Path) -> Home:
    """A home with every department's key and every contract registered (as test_publish)."""
    home = init_home(Home(root))
    with ExchangeStore(home.exchange_db) as store:
        for code, name in DEPARTMENTS.items():
            key = generate_key(home.department_keys / f"{code}.pem")
            registry.add_department(store, code, name, raw_public(key))
        for path in contract_files():
            registry.register_schema(store, load_contract_file(path))
    return home


def dag_id(config: Path) -> str:
    return f"publish.{config.stem}"


# ---- parsing ------------------------------------------------------------------------------

PARSE = f"""
    import json, sys, time
    from airflow.dag_processing.dagbag import DagBag
    import airflow.sdk

    started = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    seconds = time.perf_counter() - started
    dags = {{
        dag.dag_id: {{
            "tasks": {{
                t.task_id: {{
                    "pool": t.pool,
                    "queue": t.queue,
                    "retries": t.retries,
                    "outlets": [a.uri for a in t.outlets],
                    "upstream": sorted(t.upstream_task_ids),
                }}
                for t in dag.tasks
            }},
            "schedule": str(getattr(dag.timetable, "delta", None) or dag.schedule),
            "catchup": dag.catchup,
            "params": sorted(dag.params),
            "max_active_runs": dag.max_active_runs,
        }}
        for dag in bag.dags.values()
    }}
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    print({RESULT!r} + json.dumps(
        {{"errors": bag.import_errors, "seconds": seconds, "dags": dags, "heavy": heavy}}
    ))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each DAG file parsed alone, in a fresh interpreter with Airflow already imported."""
    work = tmp_path_factory.mktemp("parse")
    env = airflow_env(work / "airflow")
    files = sorted(DAGS.glob("*.py"))
    assert files, "no DAG files"
    return {
        f.name: python(env, PARSE, str(f), log=work / f"{f.stem}.log", timeout=120) for f in files
    }


def test_every_dag_file_imports_without_errors(parsed: dict[str, Any]) -> None:
    for name, result in parsed.items():
        assert result["errors"] == {}, name
        assert result["dags"], f"{name} defines no DAG"


def test_every_dag_file_parses_in_under_a_second(parsed: dict[str, Any]) -> None:
    slow = {name: round(r["seconds"], 3) for name, r in parsed.items() if r["seconds"] >= 1.0}
    assert slow == {}


def test_parsing_imports_none_of_the_library(parsed: dict[str, Any]) -> None:
    assert {name: r["heavy"] for name, r in parsed.items() if r["heavy"]} == {}


def test_one_publication_dag_per_source_config(parsed: dict[str, Any]) -> None:
    dags = {d: spec for r in parsed.values() for d, spec in r["dags"].items()}
    configs = source_files(SOURCES)
    assert len(configs) >= 10
    assert {d for d in dags if d.startswith("publish.")} == {dag_id(c) for c in configs}
    for config in configs:
        spec = dags[dag_id(config)]
        tasks = spec["tasks"]
        assert set(tasks) == {"source", "package", "ingest", "announce"}
        assert tasks["package"]["upstream"] == ["source"]
        assert tasks["ingest"]["upstream"] == ["package"]
        assert tasks["announce"]["upstream"] == ["ingest"]
        # Only the exchange's writer takes the one-slot pool; it writes DuckDB and the ledger.
        assert tasks["ingest"]["pool"] == WRITER_POOL
        assert tasks["package"]["pool"] != WRITER_POOL
        dataset = load_source(config).dataset
        assert tasks["announce"]["outlets"] == [f"x-onceonly://exchange/{dataset}"]
        assert [t for t, s in tasks.items() if s["outlets"]] == ["announce"]
        assert spec["params"] == ["city"]
        assert spec["catchup"] is False
        assert spec["max_active_runs"] == 1


def test_the_checkpoint_dag_shares_the_writer_pool(parsed: dict[str, Any]) -> None:
    dags = {d: spec for r in parsed.values() for d, spec in r["dags"].items()}
    spec = dags["ledger_checkpoint"]
    assert spec["catchup"] is False
    assert spec["schedule"] == "0:05:00"
    assert spec["tasks"]["checkpoint"]["pool"] == WRITER_POOL
    assert spec["tasks"]["export_tiles"]["pool"] == WRITER_POOL  # it opens the ledger store
    assert spec["tasks"]["export_tiles"]["upstream"] == ["checkpoint"]


# ---- running: dag.test() against a migrated SQLite metadata DB ----------------------------

RUN = f"""
    import json, os, sys, time
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    plan = json.loads(sys.argv[1])
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert not bag.import_errors, bag.import_errors
    runs = []
    for step in plan:
        started = time.perf_counter()
        run = bag.dags[step["dag_id"]].test(run_conf=step.get("conf"))
        states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
        runs.append({{
            "dag_id": step["dag_id"],
            "state": str(run.state),
            "tasks": states,
            "seconds": time.perf_counter() - started,
        }})
        print("[run]", runs[-1], flush=True)
    with create_session() as session:
        events = [
            {{"uri": uri, "dag_id": dag_id, "extra": extra}}
            for uri, dag_id, extra in session.execute(
                select(AssetModel.uri, AssetEvent.source_dag_id, AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .order_by(AssetEvent.id)
            )
        ]
    print({RESULT!r} + json.dumps({{"runs": runs, "events": events}}))
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every DAG run once by dag.test() on a small city, then the edge cases.

    1. every publication DAG, city given as the run's `city` param;
    2. one of them again on the same snapshot (idempotent: nothing new);
    3. the household register again from a truncated extract (the quality gate refuses);
    4. the ledger checkpoint.
    """
    started = time.perf_counter()
    work = tmp_path_factory.mktemp("dag-test")
    city, cut = work / "city", work / "cut"
    generate_city(city, **CITY)  # type: ignore[arg-type]
    shutil.copytree(city, cut)
    register = cut / "public_security" / "household_register.csv"
    lines = register.read_bytes().split(b"\r\n")
    register.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")
    home = make_home(work / "home")
    env = airflow_env(work / "airflow", home.root)
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", WRITER_POOL, "1", "one writer: DuckDB and the ledger")
    register_dag = dag_id(SOURCES / "public_security.household_register.toml")
    plan = [{"dag_id": dag_id(c), "conf": {"city": str(city)}} for c in source_files(SOURCES)]
    plan += [
        {"dag_id": register_dag, "conf": {"city": str(city)}},
        {"dag_id": register_dag, "conf": {"city": str(cut)}},
        {"dag_id": "ledger_checkpoint"},
        {"dag_id": "audit_daily", "conf": {"reports": str(work / "reports")}},
    ]
    log = work / "dag-test.log"
    result = python(env, RUN, json.dumps(plan), log=log, timeout=600)
    result.update(home=home, city=city, log=log.read_text("utf-8", errors="replace"))
    result["reports"] = work / "reports"
    result["seconds"] = time.perf_counter() - started
    print(f"dag.test() of {len(plan)} runs took {result['seconds']:.1f} s in all")
    return result


def test_every_publication_dag_publishes_its_dataset(ran: dict[str, Any]) -> None:
    configs = source_files(SOURCES)
    first = ran["runs"][: len(configs)]
    for config, run in zip(configs, first, strict=True):
        assert run["dag_id"] == dag_id(config)
        assert run["state"] == "success", run
        assert set(run["tasks"].values()) == {"success"}, run
    written = {
        d["dataset"]: d["rows"]
        for d in json.loads((ran["city"] / "city.json").read_text())["datasets"]
    }
    home: Home = ran["home"]
    with ExchangeStore(home.exchange_db) as store:
        current = {r["dataset"]: r for r in store.rows("SELECT * FROM current_publications")}
        total = store.one("SELECT count(*) AS n FROM publications")
    datasets = {load_source(c).dataset for c in configs}
    assert set(current) == datasets
    assert total == {"n": len(configs)}  # one each: the re-run and the refusal added none
    for dataset, row in current.items():
        assert row["rows_read"] == written[dataset]
        assert row["rows_read"] == row["rows_accepted"] + row["rows_quarantined"]


def test_each_new_publication_is_an_asset_event(ran: dict[str, Any]) -> None:
    configs = source_files(SOURCES)
    events = ran["events"]
    # One per first run; the unchanged re-run and the refused run announce nothing.
    assert Counter(e["uri"] for e in events) == Counter(
        f"x-onceonly://exchange/{load_source(c).dataset}" for c in configs
    )
    home: Home = ran["home"]
    with ExchangeStore(home.exchange_db) as store:
        ids = {r["dataset"]: r["id"] for r in store.rows("SELECT * FROM current_publications")}
    for event in events:
        dataset = event["uri"].rsplit("/", 1)[1]
        assert event["extra"]["publication_id"] == ids[dataset]


def test_a_rerun_on_the_same_snapshot_changes_nothing(ran: dict[str, Any]) -> None:
    again = ran["runs"][len(source_files(SOURCES))]
    assert again["state"] == "success"
    assert again["tasks"] == {
        "source": "success",
        "package": "success",
        "ingest": "success",
        "announce": "skipped",  # no new publication, no asset event
    }
    assert "household_register unchanged, already current as publication" in ran["log"]


def test_a_truncated_extract_fails_the_ingest_and_is_ledgered(ran: dict[str, Any]) -> None:
    refused = ran["runs"][len(source_files(SOURCES)) + 1]
    assert refused["state"] == "failed"
    assert refused["tasks"]["ingest"] == "failed"
    assert refused["tasks"]["announce"] == "upstream_failed"
    # The reasons are in the task log (dag.test() runs tasks in-process: its output).
    reasons = [line for line in ran["log"].splitlines() if "quality gate:" in line]
    assert any("row count" in line for line in reasons), ran["log"][-3000:]
    home: Home = ran["home"]
    with open_log(home) as log:
        entries = [decode(log.entry(i)) for i in range(log.size)]
    configs = source_files(SOURCES)
    assert len(entries) == len(configs) + 1  # every publication, and the refusal
    answered = [e for e in entries if e.outcome == "answered"]
    assert {e.dataset for e in answered} == {load_source(c).dataset for c in configs}
    assert all(e.kind == "publication" and e.publication_id for e in answered)
    (refusal,) = [e for e in entries if e.outcome != "answered"]
    assert refusal.dataset == "household_register"
    assert refusal.outcome == "refused"
    assert "row count" in refusal.reason


def test_the_checkpoint_dag_signs_and_cosigns_the_whole_ledger(ran: dict[str, Any]) -> None:
    run = next(r for r in ran["runs"] if r["dag_id"] == "ledger_checkpoint")
    assert (run["dag_id"], run["state"]) == ("ledger_checkpoint", "success")
    assert run["tasks"] == {"checkpoint": "success", "export_tiles": "success"}
    home: Home = ran["home"]
    with open_log(home) as log:
        note, size = log.latest_checkpoint(), log.size
    assert note is not None
    assert len(parse_note(note).signatures) == 2  # the log's and the witness's
    checkpoint = open_checkpoint(note, [log_verifier(home)])
    assert checkpoint.size == size == len(source_files(SOURCES)) + 1
    verify_cosignature(note, witness_verifier(home), log_verifiers=[log_verifier(home)])


def test_the_daily_audit_scans_and_writes_the_report(ran: dict[str, Any]) -> None:
    run = ran["runs"][-1]
    assert (run["dag_id"], run["state"]) == ("audit_daily", "success"), run
    assert run["tasks"] == {"scan": "success", "report": "success"}
    reports: Path = ran["reports"]
    (alerts,) = reports.glob("alerts-*.json")
    assert isinstance(json.loads(alerts.read_text()), list)
    (page,) = reports.glob("audit-*.html")
    html = page.read_text("utf-8")
    assert html.startswith("<!doctype html") or html.lower().startswith("<!doctype html")
    assert "<svg" in html  # the charts are inline
    # Self-contained: nothing is fetched (an SVG namespace URI is a name, not a fetch).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)


# ---- scale-out: CeleryExecutor, a real worker, PostgreSQL metadata DB, Redis broker ------

PG_HOST, PG_PORT, REDIS_PORT = "127.0.0.1", 5432, 6379


def _postgres_admin() -> tuple[Any, str] | str:
    """An autocommit connection to the local PostgreSQL and its user, or why there is none."""
    try:
        import psycopg2
    except ImportError as missing:
        return f"no PostgreSQL driver: {missing}"
    problems = []
    for user in ("postgres", "root"):
        for database in ("postgres", "test"):
            try:
                con = psycopg2.connect(
                    host=PG_HOST, port=PG_PORT, user=user, dbname=database, connect_timeout=3
                )
            except psycopg2.Error as problem:
                problems.append(f"{user}@{database}: {str(problem).strip()}")
                continue
            con.autocommit = True
            return con, user
    return f"no PostgreSQL at {PG_HOST}:{PG_PORT} ({'; '.join(problems)})"


def _redis_answers() -> str:
    """'' if Redis answers PING, else why not."""
    import socket

    try:
        with socket.create_connection((PG_HOST, REDIS_PORT), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as problem:
        return f"no Redis at {PG_HOST}:{REDIS_PORT}: {problem}"
    return "" if reply.startswith(b"+PONG") else f"Redis at {PG_HOST}:{REDIS_PORT} said {reply!r}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((PG_HOST, 0))
        return int(sock.getsockname()[1])


def _tails(folder: Path, lines: int = 40) -> str:
    """The last lines of every process log in `folder`, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text("utf-8", "replace").splitlines()[-lines:])
        for log in sorted(folder.glob("*.log"))
    )


def _wait(what: str, check: Any, timeout: float, processes: dict[str, Any], logs: Path) -> Any:
    """Poll `check` until it returns something true; fail early if a process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
        assert not dead, f"while waiting for {what}, these exited: {dead}\n{_tails(logs)}"
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{_tails(logs)}")


def _stop(processes: dict[str, Any]) -> None:
    """Stop the processes this test started: their own process groups, by id."""
    import signal

    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_publication_dag_runs_under_celery_with_postgres(tmp_path: Path) -> None:
    """Scheduler, dag-processor, API server and a Celery worker, as separate processes."""
    admin = _postgres_admin()
    if isinstance(admin, str):
        pytest.skip(admin)
    if reason := _redis_answers():
        pytest.skip(reason)
    con, user = admin
    clock, stages = time.perf_counter(), {}

    def mark(stage: str) -> None:
        stages[stage] = round(time.perf_counter() - clock, 1)

    tag = f"{os.getpid()}_{int(time.time())}"
    database, queue = f"airflow_celery_test_{tag}", f"onceonly_test_{tag}"
    city = tmp_path / "city"
    generate_city(city, **CITY)  # type: ignore[arg-type]
    home = make_home(tmp_path / "home")
    mark("city and home")
    port = _free_port()
    sql = f"postgresql+psycopg2://{user}@{PG_HOST}:{PG_PORT}/{database}"
    env = airflow_env(tmp_path / "airflow", home.root)
    env.update(
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sql,
        AIRFLOW__CELERY__BROKER_URL=f"redis://{PG_HOST}:{REDIS_PORT}/0",
        AIRFLOW__CELERY__RESULT_BACKEND=f"db+{sql}",
        AIRFLOW__CELERY__WORKER_CONCURRENCY="2",
        # Our own queue: other Celery workers on this Redis never see our tasks.
        AIRFLOW__OPERATORS__DEFAULT_QUEUE=queue,
        AIRFLOW__API__HOST=PG_HOST,
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://{PG_HOST}:{port}/execution/",
        AIRFLOW__API_AUTH__JWT_SECRET=os.urandom(16).hex(),  # shared by every process
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",  # the test calls the REST API
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",  # only our run: none made on unpause
    )
    config = SOURCES / "health.births.toml"
    target, run_id = dag_id(config), f"celery_test_{tag}"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    con.cursor().execute(f'CREATE DATABASE "{database}"')
    try:
        airflow(env, "db", "migrate", timeout=300)
        mark("PostgreSQL metadata DB migrated")
        airflow(env, "pools", "set", WRITER_POOL, "1", "one writer: DuckDB and the ledger")
        commands = {
            "api-server": ["api-server", "--host", PG_HOST, "--port", str(port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "celery-worker": [
                *("celery", "worker", "--queues", queue, "--concurrency", "2"),
                *("--celery-hostname", f"{queue}@%h", "--skip-serve-logs"),
            ],
        }
        for name, args in commands.items():
            with (tmp_path / f"{name}.log").open("wb") as out:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as one
                )
        import psycopg2

        def query(statement: str, *params: Any) -> list[tuple[Any, ...]]:
            with psycopg2.connect(sql.replace("+psycopg2", "")) as db, db.cursor() as cursor:
                cursor.execute(statement, params)
                return list(cursor.fetchall())

        def api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            from urllib.request import Request, urlopen

            request = Request(
                f"http://{PG_HOST}:{port}/api/v2/{path}",
                data=None if body is None else json.dumps(body).encode(),
                method=method,
                headers={"Content-Type": "application/json"},
            )
            with urlopen(request, timeout=60) as response:
                return json.load(response)

        def api_up() -> bool:
            try:
                return bool(api("GET", "monitor/health"))
            except OSError:
                return False

        _wait("the API server", api_up, 180, processes, tmp_path)
        _wait(
            f"{target} to be parsed",
            lambda: query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", target),
            180,
            processes,
            tmp_path,
        )
        mark("processes up, DAG parsed")
        run = {"dag_run_id": run_id, "logical_date": None, "conf": {"city": str(city)}}
        assert api("POST", f"dags/{target}/dagRuns", run)["state"] == "queued"
        assert api("PATCH", f"dags/{target}", {"is_paused": False})["is_paused"] is False
        mark("run triggered")

        def finished() -> str | None:
            rows = query(
                "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", target, run_id
            )
            return rows[0][0] if rows and rows[0][0] in ("success", "failed") else None

        state = _wait(f"run {run_id} to finish", finished, 300, processes, tmp_path)
        mark("run finished")
        rows = query(
            "SELECT task_id, state, queue FROM task_instance WHERE dag_id = %s AND run_id = %s",
            target,
            run_id,
        )
        tasks = {task: state for task, state, _ in rows}
        assert state == "success", f"{tasks}\n{_tails(tmp_path)}"
        assert tasks == {n: "success" for n in ("source", "package", "ingest", "announce")}
        assert {q for _, _, q in rows} == {queue}
        # The Celery worker process is the one that executed every task of the run.
        worker = (tmp_path / "celery-worker.log").read_text("utf-8", "replace")
        for task in tasks:
            assert f"run_id={run_id}/task_id={task}/" in worker, task
        events = query(
            "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE e.source_run_id = %s",
            run_id,
        )
        assert events == [("x-onceonly://exchange/births",)]
    finally:
        _stop(processes)
        con.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        con.close()
        mark("stopped, database dropped")
        print(f"Celery test, seconds since start: {stages}")
    with ExchangeStore(home.exchange_db) as store:
        published = store.rows("SELECT * FROM publications")
    assert [(p["dataset"], p["rows_read"] > 0) for p in published] == [("births", True)]
    with open_log(home) as log:
        (entry,) = [decode(log.entry(i)) for i in range(log.size)]
    assert (entry.dataset, entry.outcome) == ("births", "answered")
    assert entry.publication_id == published[0]["id"]


def test_the_checkpoint_dag_exports_the_tiles(ran: dict[str, Any]) -> None:
    home: Home = ran["home"]
    folder = home.root / "tiles"  # neither the `tiles` param nor ONCEONLY_TILES was given
    with open_log(home) as log:
        note, size = log.latest_checkpoint(), log.size
    report = verify_tiles(folder, [log_verifier(home)])  # from the folder and the key alone
    assert report.checkpoint.size == size
    assert report.bundles >= 1
    assert (folder / CHECKPOINT_PATH).read_text("utf-8") == note


def test_with_the_exchange_serving_the_dag_publishes_through_its_api(tmp_path: Path) -> None:
    """`onceonly serve` is the one writer: the ingest task uploads the package to it.

    The department's Airflow connection (`onceonly_public_security`) names the service and
    a steward token; the service verifies, gates, ledgers and publishes; the DAG run ends
    with the publication's id, as a local ingest's would. A second run of the same
    snapshot is "unchanged" through the API too.
    """
    import urllib.parse

    import httpx

    from exchange.tokens import TokenStore

    city = tmp_path / "city"
    generate_city(city, **CITY)  # type: ignore[arg-type]
    home = make_home(tmp_path / "home")
    tokens = TokenStore.open(home)
    token = tokens.issue("steward:public_security/scheduler")[0]
    tokens.close()
    port = _free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    serve = [sys.executable, "-m", "exchange.cli", "--home", str(home.root), "serve",
             "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    processes = {
        "serve": subprocess.Popen(
            serve,
            stdout=(logs / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    }
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(base + "/v1/public/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("the exchange service", answers, 60, processes, logs)
        env = airflow_env(tmp_path / "airflow", home.root)
        secret = urllib.parse.quote(token, safe="")
        env["AIRFLOW_CONN_ONCEONLY_PUBLIC_SECURITY"] = f"http://:{secret}@127.0.0.1:{port}"
        airflow(env, "db", "migrate")
        airflow(env, "pools", "set", WRITER_POOL, "1", "one writer: DuckDB and the ledger")
        register = dag_id(SOURCES / "public_security.household_register.toml")
        plan = [{"dag_id": register, "conf": {"city": str(city)}}] * 2
        log = tmp_path / "dag-test.log"
        result = python(env, RUN, json.dumps(plan), log=log, timeout=300)
        first, again = result["runs"]
        assert first["state"] == "success", log.read_text("utf-8", "replace")[-4000:]
        assert set(first["tasks"].values()) == {"success"}
        assert again["tasks"]["announce"] == "skipped"  # unchanged: no asset event
        text = log.read_text("utf-8", "replace")
        assert f"via {base}" in text and token not in text
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            published = http.get("/v1/publications").json()
        assert [p["dataset"] for p in published] == ["household_register"]
    finally:
        _stop(processes)
