"""Benchmark: asking facts, one at a time and a million at once.

Run with `python -m tests.bench.bench_ask [--persons N] [--seconds S] [--rounds R]
[--register M] [--pensioners K]`. It measures; it asserts nothing about speed (the
figures go in the README).

1. Single asks end to end, in one process: policy, parameters, the fact's query, the
   durable ledger append (group-committed), the ask archive and the signed receipt.
   A synthetic city of N persons (default 100,000) is generated and published with
   `demo.run` (or ``--city-home`` reuses a home that already holds one). Random residents
   are asked ``person.alive`` (hrss, RS-YL-01) and pairs from the birth records
   ``kinship.parent_of`` (civil affairs, MZ-JC-01), sequentially from one thread and from
   4, 8 and 16 threads sharing one `Exchange`, each thread a caseworker of its own. The
   policy is the repository's with its rate limits raised (the limiter is not what is
   measured). Each mode runs S seconds a round, R rounds; the best round is reported with
   the range across rounds, since the machine is shared.

   The naive baseline, in the same run: what a per-request script (`onceonly ask`) does
   for every ask, less the interpreter's start-up: open the exchange (a fresh DuckDB
   connection to the database file, the ledger, keys and archive), ask once (query,
   ledger append with a commit of its own), close. It runs first, on the city's fresh
   ledger, which favours it (opening the ledger reads every leaf).

   Then where one ask's time goes (timers around the library's pieces), and the query
   alone: one query per ask from 1 and 16 threads, against one query for 16 or 64 asks
   (what coalescing concurrent asks into one query, as the ledger coalesces commits,
   runs), and one query per ask on the publications as stored against copies sorted by
   the key the fact looks up.

2. A proof-of-life batch: K pensioners (default 1,000,000) against a register of M persons
   (default 10,000,000), per-subject ledger entries included. The city is too slow to
   generate at that size, so the publications are built directly: a fresh home, and in
   its DuckDB the household register (valid GB 11643 IDs, check characters computed
   vectorised), deaths (1 %), cremations and ID changes as `pub.p000001`..`pub.p000004`,
   recorded in `publications`. Then `Exchange.ask_batch("person.alive", ...)` end to end,
   after a 1,000-row warm-up batch, with timers around its phases (validation, query,
   the per-row columns, encoding the entries, the durable append, the archive), and a
   sample under cProfile. Then where the durable append goes, measured outside the
   library in the same run: as many entries as the caseload, encoded like the batch's
   from the template of one of its entries, appended to a fresh `LedgerStore` in the
   scratch directory (`append_many` end to end), and its steps by hand with the
   formulas of `LedgerStore._commit` on a fresh SQLite file with the store's schema and
   pragmas: entry checks, leaf hashes, seals, the INSERT, the COMMIT (fsync), the Merkle
   tree. In the same run, the naive way: single `Exchange.ask` calls (up to 10,000,
   time-boxed), extrapolated to K; and a single ask's query on the publications as
   stored against copies sorted by the looked-up key (row-group pruning).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tests.bench.bench_synth import machine, peak_rss_mib

TARGET_RATE = 2_000  # single asks per second
TARGET_P99_MS = 10.0
TARGET_BATCH_SECONDS = 10.0
THREADS = (4, 8, 16)
NOW = dt.datetime(2026, 11, 21, 8, 0, tzinfo=dt.UTC)


def bench_policy() -> Any:
    from exchange.policy import load_policy

    return dataclasses.replace(load_policy(), per_minute=10**9, per_day=10**9)


# --- timing helpers ------------------------------------------------------------------


@dataclass
class Run:
    """One mode's round: asks answered, wall seconds, per-ask latencies (seconds)."""

    asks: int
    seconds: float
    latencies: list[float]
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.asks / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Timers:
    """Wall and CPU time per named phase, from wrappers around the library's pieces.

    Phases nest as declared: a phase with a ``parent`` is timed only while that parent
    is the innermost phase being timed in this thread, one without only while none is.
    So the timed phases form a tree whose children lie within their parent and never
    overlap each other, and a parent less its children is never negative (the clocks are
    integer nanoseconds, so not even by rounding). A call where its phase does not fit
    (inside itself, or inside a sibling) is left to the phase around it.

    CPU is this process's (every thread: DuckDB's workers, the ledger's sequencer), so on
    a shared machine it says what a phase costs when wall time says what it got.
    """

    ns: dict[str, int] = field(default_factory=dict)
    cpu_ns: dict[str, int] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def seconds(self) -> dict[str, float]:
        return {name: v / 1e9 for name, v in self.ns.items()}

    @property
    def cpu(self) -> dict[str, float]:
        return {name: v / 1e9 for name, v in self.cpu_ns.items()}

    @contextmanager
    def phase(self, name: str, parent: str | None = None) -> Iterator[None]:
        stack: list[str] = self._local.__dict__.setdefault("stack", [])
        if (stack[-1] if stack else None) != parent:
            yield  # not where this phase belongs: the phase around it has the time
            return
        stack.append(name)
        started, cpu = time.perf_counter_ns(), time.process_time_ns()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter_ns() - started, time.process_time_ns() - cpu
            stack.pop()
            with self._lock:
                self.ns[name] = self.ns.get(name, 0) + wall
                self.cpu_ns[name] = self.cpu_ns.get(name, 0) + cpu

    def wrap(
        self, name: str, fn: Callable[..., Any], parent: str | None = None
    ) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name, parent):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def patched(target: Any, name: str, replacement: Any) -> Iterator[None]:
    """Set ``target.name`` for the duration (an instance or module attribute)."""
    had = name in vars(target)
    old = vars(target).get(name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        if had:
            setattr(target, name, old)
        else:
            delattr(target, name)


# --- 1. single asks ------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    fact: str
    principal_department: str
    service_matter: str
    case_prefix: str
    params: Callable[[random.Random], dict[str, str]]

    def principal(self, worker: int) -> str:
        return f"caseworker:{self.principal_department}/bench{worker:02d}"

    def case(self, worker: int, k: int) -> str:
        return f"{self.case_prefix}-2026-{(worker * 1_000_000 + k) % 10**8:08d}"


def questions(home: Any, rng: random.Random) -> dict[str, Question]:
    """person.alive for random residents; kinship.parent_of for mother-child pairs."""
    from exchange.store import ExchangeStore

    with ExchangeStore(home.exchange_db) as store:
        residents = [
            str(r[0])
            for r in store.con.execute(
                'SELECT id_number FROM published."household_register"'
                " USING SAMPLE reservoir(50000 ROWS) REPEATABLE (7)"
            ).fetchall()
        ]
        pairs = [
            (str(m), str(c))
            for m, c in store.con.execute(
                'SELECT mother_id, child_id FROM published."births"'
                " WHERE mother_id IS NOT NULL AND child_id IS NOT NULL"
                " USING SAMPLE reservoir(50000 ROWS) REPEATABLE (7)"
            ).fetchall()
        ]
    # Half the pairs are true (mother, child), half a mother with someone else's child.
    return {
        "person.alive": Question(
            "person.alive", "hrss", "RS-YL-01", "RS",
            lambda r: {"person_id": r.choice(residents)},
        ),
        "kinship.parent_of": Question(
            "kinship.parent_of", "civil_affairs", "MZ-JC-01", "MZ",
            lambda r: parent_pair(r, pairs),
        ),
    }  # fmt: skip


def parent_pair(rng: random.Random, pairs: list[tuple[str, str]]) -> dict[str, str]:
    mother, child = rng.choice(pairs)
    if rng.random() < 0.5:
        child = rng.choice(pairs)[1]  # most likely someone else's child: a "no"
    return {"parent_id": mother, "child_id": child}


def ask_for(exchange: Any, question: Question, seconds: float, threads: int, seed: int) -> Run:
    """``threads`` caseworkers asking for ``seconds`` (0: sequentially, from this thread)."""
    from exchange.ask import AskFailed, AskRefused

    workers = max(threads, 1)
    latencies: list[list[float]] = [[] for _ in range(workers)]
    errors = [0] * workers
    gate = threading.Barrier(workers + 1) if threads else None
    deadline = [0.0]
    clock = [0.0]

    def ask(w: int, k: int, rng: random.Random) -> None:
        exchange.ask(
            question.fact, question.params(rng), principal=question.principal(w),
            service_matter=question.service_matter, case_ref=question.case(w, k),
        )  # fmt: skip

    def work(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        ask(w, 0, rng)  # untimed: a thread's DuckDB cursor is made on its first ask
        if gate is not None:
            gate.wait()
        else:
            clock[0] = time.perf_counter()
            deadline[0] = clock[0] + seconds
        mine = latencies[w]
        k = 1
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                ask(w, k, rng)
            except (AskRefused, AskFailed):
                errors[w] += 1
            mine.append(time.perf_counter() - started)
            k += 1

    if gate is None:
        work(0)
        started = clock[0]
    else:
        pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for t in pool:
            t.start()
        deadline[0] = float("inf")
        gate.wait()  # every worker has made its cursor
        started = time.perf_counter()
        deadline[0] = started + seconds
        for t in pool:
            t.join()
    elapsed = time.perf_counter() - started
    merged = [x for part in latencies for x in part]
    return Run(len(merged) - sum(errors), elapsed, merged, sum(errors))


def naive_asks(home: Any, question: Question, seconds: float, seed: int) -> Run:
    """Per ask: open the exchange (fresh DuckDB connection, ledger, keys), ask, close."""
    from exchange.ask import Exchange

    rng = random.Random(seed)
    policy = bench_policy()
    latencies: list[float] = []
    started = time.perf_counter()
    k = 0
    while time.perf_counter() - started < seconds or k < 10:
        t0 = time.perf_counter()
        with Exchange.open(home, policy=policy) as exchange:
            exchange.ask(
                question.fact, question.params(rng), principal=question.principal(0),
                service_matter=question.service_matter, case_ref=question.case(99, k),
            )  # fmt: skip
        latencies.append(time.perf_counter() - t0)
        k += 1
    return Run(k, time.perf_counter() - started, latencies)


def single_breakdown(
    exchange: Any, question: Question, seconds: float, seed: int
) -> dict[str, Any]:
    """Mean microseconds per ask in each piece of `Exchange.ask` (sequential asks)."""
    import exchange.ask as ask_module
    from exchange import facts

    timers = Timers()
    with ExitStack() as stack:
        # Whichever of the library's pieces this version of `ask` calls (module globals
        # are looked up at call time, so the query batcher's calls are timed too).
        for name, label in (
            ("parameter_table", "parameters"), ("check_one", "parameters"),
            ("evaluate_one", "query"), ("evaluate", "query"),
        ):  # fmt: skip
            if hasattr(ask_module, name):
                original = getattr(facts, name)
                stack.enter_context(patched(ask_module, name, timers.wrap(label, original)))
        # An answered ask's entry and archive row go through the exchange's recorder
        # (`AnswerRecorder`: ledger append_many, then the archive's rows); refusals and
        # errors through `Log.append`.
        recorder = getattr(exchange, "_recorder", None)
        for target, name, label, parent in (
            (recorder, "record", "recording", None),
            (exchange.log, "append_many", "ledger append", "recording"),
            (exchange.archive, "record_rows", "archive", "recording"),
            (exchange.log, "append", "ledger append", None),
            (exchange, "_receipt", "receipt", None),
            (exchange, "_subjects", "subject tag", None),
            (exchange, "_precomputed", "precomputed lookup", None),
        ):
            if target is not None and hasattr(target, name):
                wrapped = timers.wrap(label, getattr(target, name), parent)
                stack.enter_context(patched(target, name, wrapped))
        run = ask_for(exchange, question, seconds, 0, seed)
    total = sum(run.latencies)
    per_ask = {name: s / run.asks * 1e6 for name, s in timers.seconds.items()}
    if "recording" in per_ask:  # its own time only: the ledger and the archive are its parts
        own = per_ask.pop("recording") - per_ask.get("ledger append", 0.0)
        per_ask["recording hand-off"] = own - per_ask.get("archive", 0.0)
    per_ask["policy, pinning, digest, other"] = total / run.asks * 1e6 - sum(per_ask.values())
    return {"asks": run.asks, "mean_us": total / run.asks * 1e6, "phases_us": per_ask}


def query_only(exchange: Any, question: Question, seconds: float, seed: int) -> dict[str, float]:
    """Queries alone: asks/s with one query per ask (1 and 16 threads) vs one per 16/64 asks."""
    from exchange.facts import (
        evaluate,
        evaluate_one,
        load_fact,
        parameter_table,
        pin_publications,
        published,
    )

    fact = load_fact(question.fact)
    con = exchange.store.con
    snapshot = published(con.cursor())
    sources = pin_publications(con.cursor(), fact, snapshot=snapshot)
    today = NOW.date()
    out: dict[str, float] = {}

    def loop(threads: int, rows: int) -> float:
        done = [0] * threads
        gate = threading.Barrier(threads + 1)
        stop = [0.0]

        def work(w: int) -> None:
            cursor = con.cursor()
            rng = random.Random(seed + w)
            gate.wait()
            while time.perf_counter() < stop[0]:
                table, _ = parameter_table(
                    fact, [question.params(rng) for _ in range(rows)], today=today
                )
                if rows == 1:
                    evaluate_one(cursor, fact, table, sources)
                else:
                    evaluate(cursor, fact, table, sources)
                done[w] += rows

        pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for t in pool:
            t.start()
        stop[0] = time.perf_counter() + seconds
        gate.wait()
        started = time.perf_counter()
        for t in pool:
            t.join()
        return sum(done) / (time.perf_counter() - started)

    out["1 query per ask, 1 thread"] = loop(1, 1)
    out["1 query per ask, 16 threads"] = loop(16, 1)
    out["1 query per 16 asks, 1 thread"] = loop(1, 16)
    out["1 query per 64 asks, 1 thread"] = loop(1, 64)
    return out


def single_asks(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from exchange import demo
    from exchange.ask import Exchange
    from exchange.home import Home
    from exchange.store import utc

    result: dict[str, Any] = {}
    if args.city_home:
        home = Home(args.city_home.absolute())
        result["city"] = f"reused home {home.root}"
    else:
        home = Home(scratch / "city-home")
        started = time.perf_counter()
        demo.run(home, scratch / "city", persons=args.persons, seed=args.seed, dirty_rate=0.0)
        result["city"] = (
            f"{args.persons:,} persons generated and published in"
            f" {time.perf_counter() - started:.0f} s (not measured below)"
        )
    asked = questions(home, random.Random(args.seed))
    alive = asked["person.alive"]
    result["naive"] = naive_asks(home, alive, args.seconds, args.seed)

    # (name, question, threads, answered from the precomputed table?)
    modes: list[tuple[str, Question, int, bool]] = [("person.alive, 1 thread", alive, 0, True)]
    modes += [(f"person.alive, {n} threads", alive, n, True) for n in THREADS]
    modes += [
        ("person.alive, query path, 1 thread", alive, 0, False),
        ("person.alive, query path, 16 threads", alive, 16, False),
        ("kinship.parent_of, 1 thread", asked["kinship.parent_of"], 0, False),
        ("kinship.parent_of, 16 threads", asked["kinship.parent_of"], 16, False),
    ]
    runs: dict[str, list[Run]] = {name: [] for name, _, _, _ in modes}
    from exchange.service import SWITCH_INTERVAL

    sys.setswitchinterval(SWITCH_INTERVAL)  # as `onceonly serve` runs
    with Exchange.open(home, policy=bench_policy(), precompute=True) as exchange:
        # What `onceonly serve` does on start and after each publication, in the
        # background; here waited for, timed, and reported apart.
        started = time.perf_counter()
        exchange.precompute(utc(None).date(), wait=True)
        result["precompute_seconds"] = time.perf_counter() - started
        result["tables"] = {
            ref: (len(exchange.answers.table(ref)), exchange.answers.table(ref).seconds)
            for ref in sorted(exchange.answers._tables)
        }
        answers = exchange.answers
        for r in range(args.rounds):
            for name, question, threads, tabulated in modes:
                exchange.answers = answers if tabulated else None  # the query path: off
                runs[name].append(ask_for(exchange, question, args.seconds, threads, args.seed + r))
        exchange.answers = answers
        result["breakdown"] = single_breakdown(exchange, alive, args.seconds, args.seed + 99)
        exchange.answers = None
        result["breakdown_query"] = single_breakdown(exchange, alive, args.seconds, args.seed + 98)
        exchange.answers = answers
        result["query_only"] = query_only(exchange, alive, args.seconds, args.seed)
        residents = pa.table({"person_id": [alive.params(random.Random(n))["person_id"]
                                            for n in range(2_000)]})  # fmt: skip
        result["sorted"] = sorted_lookups(exchange, residents, args.seconds)
        result["ledger_size"] = exchange.log.size
    result["runs"] = runs
    return result


# --- 2. the batch --------------------------------------------------------------------

DIVISIONS = (
    "110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111",
    "110112", "110113", "310101", "310104", "310105", "310106", "310107", "310109",
    "310110", "310112", "440103", "440104",
)  # fmt: skip
BIRTH_DAYS = 34_000  # from 1930-01-01
ID_SPACE = len(DIVISIONS) * BIRTH_DAYS * 999  # (division, birth day, sequence 001-999)
ID_STRIDE = 48_271  # coprime with ID_SPACE: i -> i * stride mod space is one-to-one


def _digit_rows(texts: list[str]) -> np.ndarray:
    return np.frombuffer("".join(texts).encode("ascii"), np.uint8).reshape(len(texts), -1)


def resident_ids(start: int, count: int) -> pa.Array:
    """``count`` distinct valid GB 11643 IDs (the ``start``-th onwards), vectorised.

    Division, birth date and sequence come from small digit tables, so an ID is three
    row gathers; its check character is the weighted sums of the three parts, also
    gathered, mod 11 (ISO 7064 MOD 11-2, as `exchange.residentid.check_characters`).
    """
    from exchange.residentid import CHECK_CHARACTERS, WEIGHTS

    first = dt.date(1930, 1, 1)
    division_t = _digit_rows(list(DIVISIONS))
    day_t = _digit_rows(
        [(first + dt.timedelta(days=d)).strftime("%Y%m%d") for d in range(BIRTH_DAYS)]
    )
    seq_t = _digit_rows([f"{s:03d}" for s in range(1, 1000)])
    weights = np.array(WEIGHTS, np.int64)

    def weighted(table: np.ndarray, lo: int, hi: int) -> np.ndarray:
        out: np.ndarray = (table.astype(np.int64) - 48) @ weights[lo:hi]
        return out

    division_w, day_w, seq_w = (
        weighted(division_t, 0, 6),
        weighted(day_t, 6, 14),
        weighted(seq_t, 14, 17),
    )
    index = (np.arange(start, start + count, dtype=np.int64) * ID_STRIDE + 12_345) % ID_SPACE
    seq = index % 999
    rest = index // 999
    day = rest % BIRTH_DAYS
    division = rest // BIRTH_DAYS
    checks = np.frombuffer(CHECK_CHARACTERS.encode("ascii"), np.uint8)
    check = checks[(division_w[division] + day_w[day] + seq_w[seq]) % 11]
    codes = np.concatenate([division_t[division], day_t[day], seq_t[seq], check[:, None]], axis=1)
    offsets = np.arange(0, (count + 1) * 18, 18, dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(codes))]
    return pa.Array.from_buffers(pa.string(), count, buffers)


def build_register_home(root: Path, persons: int, pensioners: int, seed: int) -> dict[str, Any]:
    """A fresh home whose DuckDB holds the four datasets person.alive reads; the caseload."""
    from exchange.home import Home, init_home
    from exchange.residentid import valid_mask
    from exchange.store import ExchangeStore, db_time, publication_table

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    changes = max(persons // 2000, 10)
    ids = resident_ids(0, persons)
    old_ids = resident_ids(persons, changes)  # earlier numbers, no longer in the register
    assert pc.all(valid_mask(ids.slice(0, 100_000))).as_py()
    status = np.zeros(persons, np.int8)
    status[rng.random(persons) < 0.005] = 1  # 迁出, moved out
    dead = rng.choice(persons, persons // 100, replace=False)
    status[dead[: len(dead) // 2]] = 2  # half the deceased already marked 死亡 in the register
    statuses = pa.DictionaryArray.from_arrays(pa.array(status), pa.array(["正常", "迁出", "死亡"]))
    death_dates = pa.array(
        np.datetime64("2020-01-01") + rng.integers(0, 2_000, len(dead)).astype("timedelta64[D]")
    ).cast(pa.date32())
    dead_ids = pc.take(ids, pa.array(dead))
    cremated = len(dead) * 8 // 10
    changed = pc.take(ids, pa.array(rng.choice(persons, changes, replace=False)))
    datasets = [
        ("household_register", "public_security",
         pa.table({"id_number": ids, "status": statuses.cast(pa.string())})),
        ("deaths", "health", pa.table({
            "record_no": pa.array([f"SW{i:010d}" for i in range(len(dead))]),
            "person_id": dead_ids, "death_date": death_dates})),
        ("cremations", "civil_affairs", pa.table({
            "record_no": pa.array([f"HH{i:010d}" for i in range(cremated)]),
            "person_id": dead_ids.slice(0, cremated),
            "death_date": death_dates.slice(0, cremated)})),
        ("id_changes", "public_security", pa.table({
            "old_id": old_ids, "new_id": changed,
            "change_date": pa.array([dt.date(2015, 3, 1)] * changes, pa.date32())})),
    ]  # fmt: skip
    made = time.perf_counter() - started

    home = init_home(Home(root), now=NOW)
    started = time.perf_counter()
    with ExchangeStore(home.exchange_db) as store:
        con = store.con
        for number, (dataset, department, table) in enumerate(datasets, 1):
            con.register("_bench_load", table)
            con.execute(f"CREATE TABLE {publication_table(number)} AS SELECT * FROM _bench_load")
            con.unregister("_bench_load")
            con.execute(
                "INSERT INTO publications VALUES"
                " (?, ?, '1.0.0', ?, ?, ?, ?, ?, 0, 'bench', ?, ?, ?, '{}')",
                [number, dataset, department, "0" * 64, "0" * 64, table.num_rows, table.num_rows,
                 db_time(NOW), db_time(NOW), str(root / "packages" / dataset)],
            )  # fmt: skip
        con.execute("CHECKPOINT")
    loaded = time.perf_counter() - started

    # The caseload: pensioners drawn from the register, a few asked by their earlier number.
    chosen = rng.choice(persons, pensioners, replace=False)
    caseload = pc.take(ids, pa.array(chosen))
    by_old = min(changes // 2, pensioners // 500)
    if by_old:
        mask = np.zeros(pensioners, bool)
        mask[:by_old] = True
        caseload = pc.if_else(
            pa.array(mask),
            pa.concat_arrays(
                [old_ids.slice(0, by_old), pa.nulls(pensioners - by_old, pa.string())]
            ),
            caseload,
        )
    return {
        "home": home,
        "caseload": pa.table({"person_id": caseload}),
        "rows": {name: table.num_rows for name, _, table in datasets},
        "by_old_id": by_old,
        "made_seconds": made,
        "load_seconds": loaded,
        "disk_mib": home.exchange_db.stat().st_size / 2**20,
    }


BATCH_PRINCIPAL = "caseworker:hrss/bench"
BATCH_MATTER = "RS-YL-01"


def timed_batch(exchange: Any, caseload: pa.Table) -> dict[str, Any]:
    """`ask_batch` end to end, with timers around its phases.

    The phases, as nested: the call ("batch"); in it `parameter_table` (validation),
    `evaluate` and `result_column` (query) and `_ledger_batch` (ledgering); in that the
    log's `append_answer_columns` (encode+append; older libraries' `append_answers` /
    `append_many` are wrapped the same if present) and the archive's `record_batch`
    (or `record`); in encode+append the store's `append_many` (append). Each reported
    phase is a timed one, or a timed one less the phases timed within it.
    """
    import exchange.ask as ask_module
    from exchange import facts

    timers = Timers()
    wrap = timers.wrap
    log, archive = exchange.log, exchange.archive
    with ExitStack() as stack:
        enter = stack.enter_context
        for name, label in (
            ("parameter_table", "validation"), ("evaluate", "query"), ("result_column", "query")
        ):  # fmt: skip
            if hasattr(ask_module, name):
                enter(patched(ask_module, name, wrap(label, getattr(facts, name), "batch")))
        ledger_batch = wrap("ledgering", exchange._ledger_batch, "batch")
        enter(patched(exchange, "_ledger_batch", ledger_batch))
        for name in ("append_answer_columns", "append_answers", "append_many"):
            if hasattr(log, name):
                enter(patched(log, name, wrap("encode+append", getattr(log, name), "ledgering")))
        for name in ("record_batch", "record", "keep_batch"):
            if hasattr(archive, name):
                enter(patched(archive, name, wrap("archive", getattr(archive, name), "ledgering")))
        if hasattr(archive, "stage_batch"):  # in a thread of its own, during the append
            enter(patched(archive, "stage_batch", wrap("staged", archive.stage_batch)))
        store = log._store
        enter(patched(store, "append_many", wrap("append", store.append_many, "encode+append")))
        before = log.size
        with timers.phase("batch"):
            out = exchange.ask_batch(
                "person.alive",
                caseload,
                case_ref="RS-2026-000001",
                principal=BATCH_PRINCIPAL,
                service_matter=BATCH_MATTER,
            )

    def split(t: dict[str, int]) -> dict[str, float]:
        batch, ledgering = t.get("batch", 0), t.get("ledgering", 0)
        validation, query = t.get("validation", 0), t.get("query", 0)
        appended, append = t.get("encode+append", 0), t.get("append", 0)
        archived = t.get("archive", 0)
        phases = {
            "validation (parameter_table)": validation,
            "query (DuckDB, result check)": query,
            "per-row columns (canonical JSON, nonces, digests, tags, commitments,"
            " output table)": ledgering - appended - archived,
            "encode entries (encode_answer_columns)": appended - append,
            "durable append (leaf hashes, seals, SQLite insert, fsync, tree)": append,
            "archive (Parquet; kept once durable)": archived,
            "other (policy, pinning, filtering)": batch - validation - query - ledgering,
            "  beside: the archive file, written in a thread during the durable append":
                t.get("staged", 0),
        }  # fmt: skip
        return {name: v / 1e9 for name, v in phases.items()}

    outcome, indexes = out.column("outcome"), out.column("ledger_index")
    answered = pc.equal(outcome, "answered")
    answers = out.column("answer")
    return {
        "seconds": timers.ns["batch"] / 1e9,
        "cpu_seconds": timers.cpu_ns["batch"] / 1e9,
        "phases": split(timers.ns),
        "phases_cpu": split(timers.cpu_ns),
        "rows": out.num_rows,
        "answered": pc.sum(pc.cast(answered, pa.int64())).as_py(),
        "alive": pc.sum(pc.cast(pc.fill_null(answers.cast(pa.bool_()), False), pa.int64())).as_py(),
        "entries": log.size - before,
        "first_answered_index": pc.min(pc.filter(indexes, answered)).as_py(),
    }


def profile_batch(exchange: Any, caseload: pa.Table, top: int) -> tuple[float, list[str]]:
    """`ask_batch` on a sample under cProfile: the functions taking the most own time."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    exchange.ask_batch(
        "person.alive",
        caseload,
        case_ref="RS-2026-000003",
        principal=BATCH_PRINCIPAL,
        service_matter=BATCH_MATTER,
    )
    profile.disable()
    stats = pstats.Stats(profile)
    rows = caseload.num_rows
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    lines = []
    for (path, line, name), (_, calls, own, _cum, _) in entries[:top]:
        where = f"{Path(path).name}:{line}({name})" if line else name
        lines.append(f"{where} {own / rows * 1e6:.1f} us/row ({calls / rows:g} calls/row)")
    return total / rows * 1e6, lines


def naive_batch(exchange: Any, caseload: pa.Table, count: int, seconds: float) -> Run:
    """Single `Exchange.ask` calls, one thread, for up to ``count`` asks or ``seconds``."""
    ids = caseload.column("person_id").to_pylist()
    rng = random.Random(5)
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < count and time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        exchange.ask(
            "person.alive", {"person_id": ids[rng.randrange(len(ids))]},
            case_ref=f"RS-2026-{len(latencies) + 1:08d}",
            principal=BATCH_PRINCIPAL, service_matter=BATCH_MATTER,
        )  # fmt: skip
        latencies.append(time.perf_counter() - t0)
    return Run(len(latencies), time.perf_counter() - started, latencies)


def sorted_lookups(exchange: Any, caseload: pa.Table, seconds: float) -> dict[str, Any]:
    """One person.alive query per ask: the publications as stored vs. copies sorted by key.

    A single ask's query joins its one-row parameter relation to whole publications;
    DuckDB pushes the join key down to the scans as a dynamic filter, which can skip
    row groups only if the table is sorted by that key (min/max zone maps). The copies
    live in a schema of their own in the benchmark's scratch database.
    """
    from exchange.facts import evaluate_one, load_fact, parameter_table, pin_publications

    fact = load_fact("person.alive")
    con = exchange.store.con
    sources = pin_publications(con.cursor(), fact, snapshot=exchange._published)
    keys = {"household_register": "id_number", "deaths": "person_id",
            "cremations": "person_id", "id_changes": "new_id"}  # fmt: skip
    con.execute("CREATE SCHEMA IF NOT EXISTS bench_sorted")
    started = time.perf_counter()
    ordered = []
    for source in sources:
        name = f"bench_sorted.{source.dataset}"
        con.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {source.relation}"
            f" ORDER BY {keys[source.dataset]}"
        )
        ordered.append(dataclasses.replace(source, relation=name))
    sort_seconds = time.perf_counter() - started
    people = caseload.column("person_id").slice(0, 2_000).to_pylist()
    today = NOW.date()
    cursor = con.cursor()

    def ask(person: str, using: list[Any]) -> object:
        table, _ = parameter_table(fact, [{"person_id": person}], today=today)
        return evaluate_one(cursor, fact, table, using)

    out: dict[str, Any] = {"sort_seconds": sort_seconds}
    for label, using in (("as published", sources), ("sorted by key", ordered)):
        latencies: list[float] = []
        began = time.perf_counter()
        while time.perf_counter() - began < seconds and len(latencies) < len(people):
            t0 = time.perf_counter()
            ask(people[len(latencies)], using)
            latencies.append(time.perf_counter() - t0)
        out[label] = Run(len(latencies), time.perf_counter() - began, latencies)
    out["agree"] = sum(ask(p, sources) == ask(p, ordered) for p in people[:50])
    con.execute("DROP SCHEMA bench_sorted CASCADE")
    return out


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or "unknown"."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    where = str(path.resolve())
    found = [(m, t) for m, t in mounts if where == m or where.startswith(m.rstrip("/") + "/")]
    return max(found, key=lambda mt: len(mt[0]))[1] if found else "unknown"


def durable_append(exchange: Any, like: int, count: int, root: Path) -> dict[str, Any]:
    """Where `LedgerStore.append_many` of ``count`` entries goes, measured outside the library.

    The entries are the batch's kind: entry ``like`` of the exchange's ledger, decoded,
    is the template (as `_ledger_batch` makes one: no subjects), and
    `encode_answer_columns` fills in random digests, tags and commitments, so every
    entry has that entry's length; re-encoding its own digest, tag and commitment must
    give it back byte for byte. They go into a fresh `LedgerStore` (`append_many` end to
    end); then the steps of `LedgerStore._commit`, by hand, into a fresh SQLite file
    with the store's schema, WAL and synchronous=FULL: leaf = sha256(0x00 || entry),
    the segments (`ledger.store._segments`: data, ends, leaf hashes, seal), executemany
    INSERT, COMMIT, `MerkleTree.extend`; the tree's root must equal the store's. Beside
    them the naive layout, one SQLite row per entry (the store's format 1): a seal
    sha256(SEAL_DOMAIN || u64be(index) || leaf) per row, executemany INSERT, COMMIT.
    Everything is freed as it goes: one list of entries, and at most one store's worth
    of hashes and tree, on top of the exchange.
    """
    import sqlite3

    from ledger.entries import decode, encode_answer_columns
    from ledger.merkle import LEAF_PREFIX, MerkleTree
    from ledger.store import _SCHEMA, _U64, SEAL_DOMAIN, LedgerStore, _segments

    real = exchange.log.entry(like)
    entry = decode(real)
    assert entry.outcome == "answered" and entry.answer_digest is not None
    template = dataclasses.replace(entry, subject_tags=(), subject_commitments=())
    again = encode_answer_columns(
        template, [entry.answer_digest], [entry.subject_tags], [entry.subject_commitments]
    )
    assert again == [real], "the template does not give the batch's entry back"

    def column(k: int) -> list[bytes]:
        pool = os.urandom(32 * k)
        return [pool[j : j + 32] for j in range(0, 32 * k, 32)]

    started = time.perf_counter()
    entries: list[bytes] = []
    chunk = 1 << 16  # random columns a chunk at a time: only the entries are kept whole
    for lo in range(0, count, chunk):
        k = min(chunk, count - lo)
        entries += encode_answer_columns(template, column(k), [column(k)], [column(k)])
    built = time.perf_counter() - started

    timers = Timers()
    phase = timers.phase
    (root / "store").mkdir(parents=True)
    store = LedgerStore(root / "store" / "ledger.sqlite")
    try:
        with phase("append_many"):
            store.append_many(entries)
        store_root = store.root()
    finally:
        store.close()
    del store
    shutil.rmtree(root / "store")

    def by_hand(name: str) -> sqlite3.Connection:
        (root / name).mkdir()
        con = sqlite3.connect(root / name / "ledger.sqlite", isolation_level=None)
        assert str(con.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() == "wal"
        con.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        return con

    sha256 = hashlib.sha256
    con = by_hand("segments")
    try:
        with phase("leaves"):
            leaves = [sha256(LEAF_PREFIX + data).digest() for data in entries]
        with phase("segments"):
            segments = list(_segments(0, entries, leaves))
        with phase("insert"):
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)", segments)
        with phase("commit"):
            con.execute("COMMIT")
        del segments
        (stored,) = con.execute("SELECT sum(count) FROM segments").fetchone()
        assert stored == count
    finally:
        con.close()
    shutil.rmtree(root / "segments")
    tree = MerkleTree()
    with phase("tree"):
        tree.extend(leaves)
    assert tree.root() == store_root, "the tree by hand differs from the store's"
    del tree

    con = by_hand("rows")
    try:
        pack = _U64.pack
        with phase("row seals"):
            seals = [sha256(SEAL_DOMAIN + pack(i) + leaf).digest() for i, leaf in enumerate(leaves)]
        with phase("row insert"):
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT INTO entries (idx, data, leaf, seal) VALUES (?, ?, ?, ?)",
                zip(range(count), entries, leaves, seals, strict=True),
            )
        with phase("row commit"):
            con.execute("COMMIT")
        del seals
    finally:
        con.close()
    shutil.rmtree(root / "rows")
    del leaves, entries

    steps = {
        "leaf hashes: sha256(0x00 || entry)": "leaves",
        "segments: data, ends, leaf hashes, seal (4,096 entries each)": "segments",
        "SQLite executemany INSERT of the segments (WAL, synchronous=FULL)": "insert",
        "SQLite COMMIT (fsync)": "commit",
        "MerkleTree.extend": "tree",
    }
    naive = {
        "row seals: sha256(SEAL_DOMAIN || u64be(index) || leaf)": "row seals",
        "SQLite executemany INSERT, one row per entry": "row insert",
        "SQLite COMMIT (fsync)": "row commit",
    }
    seconds, cpu = timers.seconds, timers.cpu
    return {
        "entries": count,
        "entry_bytes": len(real),
        "built_seconds": built,
        "filesystem": filesystem(root),
        "seconds": seconds["append_many"],
        "cpu_seconds": cpu["append_many"],
        "steps": {label: seconds[name] for label, name in steps.items()},
        "steps_cpu": {label: cpu[name] for label, name in steps.items()},
        "naive_rows": {label: seconds[name] for label, name in naive.items()},
    }


def batch(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from exchange.ask import Exchange

    built = build_register_home(scratch / "batch-home", args.register, args.pensioners, args.seed)
    caseload = built["caseload"]
    result: dict[str, Any] = {"built": built}
    with Exchange.open(built["home"], policy=bench_policy()) as exchange:
        # The exchange is a long-running process: a first small batch pays the one-off
        # costs (imports, compiled patterns, the first DuckDB scan of each table).
        exchange.ask_batch(
            "person.alive",
            caseload.slice(0, 1_000),
            case_ref="RS-2026-000000",
            principal=BATCH_PRINCIPAL,
            service_matter=BATCH_MATTER,
        )
        timed = timed_batch(exchange, caseload)
        result["batch"] = timed
        result["peak_mib_after_batch"] = peak_rss_mib()
        result["profile"] = profile_batch(exchange, caseload.slice(0, args.sample), 8)
        result["durable"] = durable_append(
            exchange, timed["first_answered_index"], caseload.num_rows, scratch / "durable"
        )
        result["naive"] = naive_batch(exchange, caseload, args.naive_asks, args.naive_seconds)
        result["sorted"] = sorted_lookups(exchange, caseload, args.seconds * 2)
        result["ledger_size"] = exchange.log.size
    result["peak_mib"] = peak_rss_mib()
    return result


# --- report --------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report_single(single: dict[str, Any], args: argparse.Namespace) -> list[str]:
    runs: dict[str, list[Run]] = single["runs"]
    naive: Run = single["naive"]
    lines = [
        f"## single asks, end to end ({single['city']});"
        f" best of {args.rounds} rounds of {args.seconds:g} s (asks/s range across rounds)",
        f"  {'mode':<40} {'asks/s':>8} {'p50 ms':>8} {'p99 ms':>8}  range",
    ]
    best: dict[str, Run] = {}
    for name, rounds in runs.items():
        top = max(rounds, key=lambda r: r.rate)
        best[name] = top
        low, high = min(r.rate for r in rounds), max(r.rate for r in rounds)
        errors = sum(r.errors for r in rounds)
        lines.append(
            f"  {name:<40} {top.rate:>8,.0f} {top.percentile(0.5) * 1e3:>8.2f}"
            f" {top.percentile(0.99) * 1e3:>8.2f}  {low:,.0f}-{high:,.0f}"
            + (f"  ({errors} refused/failed)" if errors else "")
        )
    lines.append(
        f"  {'naive: open exchange per ask':<40} {naive.rate:>8,.0f}"
        f" {naive.percentile(0.5) * 1e3:>8.2f} {naive.percentile(0.99) * 1e3:>8.2f}"
        f"  ({naive.asks} asks)"
    )
    sequential = best["person.alive, 1 thread"]
    top_name = max(
        (n for n in best if n.startswith("person.alive") and "query path" not in n),
        key=lambda n: best[n].rate,
    )
    top = best[top_name]
    lines.append(
        f"  best person.alive: {top_name}, {top.rate / sequential.rate:.1f}x sequential,"
        f" {top.rate / naive.rate:.0f}x naive"
    )
    lines.append(
        "  precomputed answer tables (exchange.answers), built in"
        f" {single['precompute_seconds']:.1f}"
        " s before the runs: "
        + ", ".join(f"{ref} {n:,} IDs {sec:.2f} s" for ref, (n, sec) in single["tables"].items())
    )
    for key, how in (("breakdown", "from the table"), ("breakdown_query", "query path")):
        b = single[key]
        lines.append(
            f"  one person.alive ask, {how}, sequential ({b['asks']:,} asks,"
            f" {b['mean_us']:,.0f} us mean): "
            + ", ".join(
                f"{k} {v:,.0f} us"
                for k, v in sorted(b["phases_us"].items(), key=lambda kv: -kv[1])
                if v >= 0.5
            )
        )
    lines.append(
        "  person.alive query alone (asks/s): "
        + "; ".join(f"{k} {v:,.0f}" for k, v in single["query_only"].items())
    )
    meets = [
        n for n in best
        if n.startswith("person.alive") and best[n].rate >= TARGET_RATE
        and best[n].percentile(0.99) * 1e3 < TARGET_P99_MS
    ]  # fmt: skip
    looked = single["sorted"]
    stored, ordered = looked["as published"], looked["sorted by key"]
    lines.append(
        f"  person.alive query alone, one per ask: publications as stored p50"
        f" {stored.percentile(0.5) * 1e3:.2f} ms; copies sorted by the looked-up key p50"
        f" {ordered.percentile(0.5) * 1e3:.2f} ms ({looked['agree']}/50 answers agree)"
    )
    lines.append(
        f"  target >= {TARGET_RATE:,} asks/s with p99 < {TARGET_P99_MS:g} ms:"
        f" {verdict(bool(meets))}"
        f" (best {top.rate:,.0f} asks/s, p99 {top.percentile(0.99) * 1e3:.1f} ms, {top_name})"
    )
    return lines


DURABLE_TOTAL = "LedgerStore.append_many, end to end"
DURABLE_PARTS = "the steps together (measured apart from append_many)"


def report_batch(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    built, timed, naive = res["built"], res["batch"], res["naive"]
    rows = timed["rows"]
    counts = built["rows"]
    lines = [
        f"## batch: person.alive for {rows:,} pensioners against a"
        f" {counts['household_register']:,}-person register (deaths {counts['deaths']:,},"
        f" cremations {counts['cremations']:,}, ID changes {counts['id_changes']:,};"
        f" {built['by_old_id']:,} asked by an earlier number)",
        f"  publications built directly: IDs and tables {built['made_seconds']:.1f} s, DuckDB load"
        f" {built['load_seconds']:.1f} s, {built['disk_mib']:,.0f} MiB (not measured below)",
        f"  Exchange.ask_batch end to end (after a 1,000-row warm-up batch):"
        f" {timed['seconds']:.1f} s ({rows / timed['seconds']:,.0f} rows/s;"
        f" {timed['cpu_seconds']:.1f} s of CPU in this process), {timed['answered']:,} answered"
        f" ({timed['alive']:,} alive), {timed['entries']:,} ledger entries,"
        f" peak RSS {res['peak_mib_after_batch']:,.0f} MiB",
    ]
    durable = res["durable"]
    width = max(map(len, [*timed["phases"], *durable["steps"], DURABLE_TOTAL, DURABLE_PARTS]))
    lines.append(f"    {'phase':<{width}} {'wall':>7}    {'':>4}  {'CPU':>7}")
    for name, seconds in timed["phases"].items():
        lines.append(
            f"    {name:<{width}} {seconds:>7.2f} s  {seconds / timed['seconds']:>4.0%}"
            f"  {timed['phases_cpu'][name]:>7.2f} s"
        )
    lines.append(
        f"  where the durable append goes: {durable['entries']:,} entries of"
        f" {durable['entry_bytes']} bytes (the batch's template, random digests, tags and"
        f" commitments; built in {durable['built_seconds']:.1f} s, not counted), into a fresh"
        f" LedgerStore in the scratch directory ({durable['filesystem']})"
    )
    end_to_end = durable["seconds"]
    lines.append(f"    {'step':<{width}} {'wall':>7}    {'':>4}  {'CPU':>7}")
    lines.append(
        f"    {DURABLE_TOTAL:<{width}} {end_to_end:>7.2f} s  {1:>4.0%}"
        f"  {durable['cpu_seconds']:>7.2f} s"
    )
    lines.append("    by hand, as LedgerStore._commit does it (a fresh SQLite file):")
    for name, seconds in durable["steps"].items():
        lines.append(
            f"    {name:<{width}} {seconds:>7.2f} s  {seconds / end_to_end:>4.0%}"
            f"  {durable['steps_cpu'][name]:>7.2f} s"
        )
    parts, parts_cpu = sum(durable["steps"].values()), sum(durable["steps_cpu"].values())
    lines.append(
        f"    {DURABLE_PARTS:<{width}} {parts:>7.2f} s"
        f"  {parts / end_to_end:>4.0%}  {parts_cpu:>7.2f} s"
    )
    naive_rows = durable["naive_rows"]
    lines.append(
        "    the naive layout instead, one SQLite row per entry (format 1), by hand:"
        f" {sum(naive_rows.values()):.2f} s in all, "
        + "; ".join(f"{name} {seconds:.2f} s" for name, seconds in naive_rows.items())
    )
    per_row, hot = res["profile"]
    lines.append(
        f"  under cProfile, ask_batch of a {args.sample:,}-row sample"
        f" ({per_row:.1f} us/row profiled), most own time:"
    )
    lines += [f"    {line}" for line in hot]
    per_ask = naive.seconds / naive.asks
    lines.append(
        f"  naive, single Exchange.ask calls: {naive.asks:,} asks in {naive.seconds:.1f} s"
        f" ({naive.asks / naive.seconds:,.1f}/s, p50 {naive.percentile(0.5) * 1e3:.1f} ms),"
        f" extrapolated to {rows:,}: {per_ask * rows:,.0f} s ({per_ask * rows / 3600:.1f} h);"
        f" the batch is {per_ask * rows / timed['seconds']:,.0f}x faster"
    )
    looked = res["sorted"]
    stored, ordered = looked["as published"], looked["sorted by key"]
    lines.append(
        f"  single-ask query alone on the {built['rows']['household_register']:,}-row register:"
        f" as published p50 {stored.percentile(0.5) * 1e3:.1f} ms ({stored.asks} asks);"
        f" on copies sorted by the looked-up key p50 {ordered.percentile(0.5) * 1e3:.1f} ms"
        f" ({ordered.asks} asks), {stored.percentile(0.5) / ordered.percentile(0.5):.1f}x;"
        f" {looked['agree']}/50 answers agree; sorting the four tables took"
        f" {looked['sort_seconds']:.1f} s"
    )
    full = rows == 1_000_000 and built["rows"]["household_register"] == 10_000_000
    lines.append(
        f"  target <= {TARGET_BATCH_SECONDS:g} s for 1M against 10M: "
        + (verdict(timed["seconds"] <= TARGET_BATCH_SECONDS) if full else "n/a (not the full size)")
        + f" ({timed['seconds']:.1f} s)"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000, help="city size for single asks")
    parser.add_argument("--city-home", type=Path, help="reuse a home holding a published city")
    parser.add_argument("--seconds", type=float, default=3.0, help="per single-ask mode per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--register", type=int, default=10_000_000, help="persons in the register")
    parser.add_argument("--pensioners", type=int, default=1_000_000, help="rows in the batch")
    parser.add_argument("--naive-asks", type=int, default=10_000, help="naive batch baseline asks")
    parser.add_argument("--naive-seconds", type=float, default=45.0, help="... at most this long")
    parser.add_argument("--sample", type=int, default=20_000, help="rows for per-row costs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("single", "batch"), help="run one part only")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="onceonly-bench-ask-"))
    started = time.perf_counter()
    lines = [f"# ask benchmark, {dt.date.today().isoformat()}, {machine()}"]
    try:
        if args.only != "batch":
            single = single_asks(args, scratch)
            lines += report_single(single, args)
            print("\n".join(lines), flush=True)
            lines = []
        if args.only != "single":
            lines += report_batch(batch(args, scratch), args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines.append(
        f"(benchmark wall time {time.perf_counter() - started:.0f} s; load average"
        f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end)"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
