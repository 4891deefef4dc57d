"""Benchmark: the e-supervision alert scan over a ledger of 10^7 entries.

Run with `python -m tests.bench.bench_audit [--entries N] [--ledger PATH] [--naive M]`.
It measures; it asserts nothing about speed (the figures go in the README).

1. **Build** a ledger store of N entries (default 10^7): a year of a city's asks — 360
   caseworkers of six departments at their desks of service matters, office hours, one
   or two subjects per ask out of a population of a million, refusals and errors, a
   pension office's daily caseload batch, and a sprinkling of anomalies (night asks,
   bursts, probing refusals, reused case references, self-asks) so every rule has work.
   Entries are encoded straight to the version-1 bytes (a few are decoded back with
   `ledger.entries.decode` to prove them canonical) and appended with
   `LedgerStore.append_many` in batches of 50,000, durable. The build time is printed
   on its own; ``--ledger PATH`` keeps the store and reuses it on the next run.
2. **Scan**: `exchange.audit.read_ledger` (the column-wise decoder) then
   `exchange.supervision.scan` (every rule as DuckDB SQL), with a staff register and a
   family table of a million residents, timed separately and together; peak RSS.
3. **Naive baseline** in the same run: the same ledger's first M entries (default
   200,000) scanned the obvious way — `decode` each entry into an `Entry`, then
   per-entry Python dictionaries for the rules — and its rate extrapolated to N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import shutil
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ledger.entries import decode
from ledger.store import LedgerStore, read_entries, read_entry
from tests.bench.bench_synth import machine, peak_rss_mib

TARGET_SECONDS = 60.0
BATCH = 50_000
POPULATION = 1_000_000
WORKDAYS = 250
OFFSET = 8 * 3600  # Beijing time
DEPARTMENTS = {
    "hrss": ("RS", ["RS-YL-01", "RS-YL-02", "RS-ZP-01", "RS-RC-01", "RS-JL-01"]),
    "housing": ("ZJ", ["ZJ-BZ-01", "ZJ-GF-01", "ZJ-GJ-01", "ZJ-GH-01"]),
    "education": ("JY", ["JY-RX-01", "JY-ZP-01", "JY-JM-01"]),
    "civil_affairs": ("MZ", ["MZ-HY-01", "MZ-JC-01", "MZ-JZ-01"]),
    "public_security": ("GA", ["GA-HJ-01", "GA-HJ-02"]),
    "health": ("WJ", ["WJ-JZ-01"]),
}
FACTS = [
    "person.alive",
    "person.marital_status",
    "kinship.parent_of",
    "property.none_in_city",
    "person.no_criminal_record",
    "dibao.receives",
    "education.degree_at_least",
]
REFUSALS = [b"no grant for this fact and service matter", b"rate limit exceeded"]


def _text(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


class Builder:
    """Encodes realistic asks straight to their version-1 bytes, a day at a time."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.py = random.Random(seed)
        self.tags = self.rng.bytes(32 * POPULATION)  # the residents' subject tags
        self.principals: list[tuple[bytes, bytes, list[bytes], bytes]] = []
        for department, (prefix, matters) in DEPARTMENTS.items():
            for n in range(60):
                desk = self.py.sample(matters, min(len(matters), self.py.choice((1, 2))))
                principal = f"caseworker:{department}/cw{n:03d}".encode()
                self.principals.append(
                    (department.encode(), principal, [m.encode() for m in desk], prefix.encode())
                )
        self.heads = {
            (p, f): b"".join(
                [
                    _text(who[0]),
                    _text(who[1]),
                    _text(fact.encode()),
                    _text(b"1.0.0"),
                    b"\x00",
                    b"\x00\x00",
                    b"\x00\x00",
                ]
            )
            for p, who in enumerate(self.principals)
            for f, fact in enumerate(FACTS)
        }
        self.relied = (3).to_bytes(2, "big") + b"".join(p.to_bytes(8, "big") for p in (3, 7, 12))
        self.case = 0

    def tag(self, resident: int) -> bytes:
        return self.tags[32 * resident : 32 * resident + 32]

    def entry(
        self,
        principal: int,
        t: int,
        fact: int,
        matter: bytes,
        case: bytes,
        residents: list[int],
        outcome: int = 1,
        reason: bytes = b"",
    ) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)).encode()
        tags = sorted({self.tag(r) for r in residents})
        commitments = sorted(os.urandom(32) for _ in tags)
        answered = outcome == 1
        return b"".join(
            [
                b"\x01\x01",
                _text(stamp),
                self.heads[(principal, fact)],
                _text(matter),
                _text(case),
                bytes((outcome,)),
                _text(reason),
                (b"\x01" + os.urandom(32)) if answered else b"\x00",
                self.relied if answered else b"\x00\x00",
                len(tags).to_bytes(2, "big"),
                *tags,
                len(commitments).to_bytes(2, "big"),
                *commitments,
                b"\x00\x00",
            ]
        )

    def next_case(self, principal: int) -> bytes:
        self.case += 1
        return b"%s-2026-%08d" % (self.principals[principal][3], self.case)

    def day(self, day: dt.date, count: int) -> list[bytes]:
        """About ``count`` entries of one working day, in time order."""
        rng, py = self.rng, self.py
        start = int(dt.datetime.combine(day, dt.time(9), dt.UTC).timestamp()) - OFFSET
        acts: list[tuple[int, list[bytes]]] = []
        # The pension office's daily caseload: one batch, 2 % of the day.
        batch_size = count // 50
        t = start + 3600
        case = self.next_case(0)
        people = rng.integers(0, POPULATION, batch_size)
        acts.append((t, [self.entry(0, t, 0, b"RS-YL-01", case, [int(r)]) for r in people]))
        singles = count - batch_size
        who = rng.integers(0, len(self.principals), singles)
        when = start + rng.integers(0, 8 * 3600 + 1800, singles)
        subjects = rng.integers(0, POPULATION, (singles, 2))
        two = rng.random(singles) < 0.1
        draw = rng.random(singles)
        for i in range(singles):
            p, t = int(who[i]), int(when[i])
            matter = py.choice(self.principals[p][2])
            fact = int(draw[i] * 1000) % len(FACTS)
            residents = [int(subjects[i, 0])] + ([int(subjects[i, 1])] if two[i] else [])
            if draw[i] < 0.02:
                entry = self.entry(
                    p, t, fact, matter, self.next_case(p), residents, 2, REFUSALS[i % 2]
                )
            elif draw[i] < 0.021:
                entry = self.entry(
                    p,
                    t,
                    fact,
                    matter,
                    self.next_case(p),
                    [],
                    3,
                    b"fact could not be answered (FactError)",
                )
            elif draw[i] < 0.0215:  # a night ask
                entry = self.entry(p, t - 9 * 3600, fact, matter, self.next_case(p), residents)
            else:
                entry = self.entry(p, t, fact, matter, self.next_case(p), residents)
            acts.append((t, [entry]))
        # A burst: one caseworker, 40 asks in two minutes.
        p, t = py.randrange(len(self.principals)), start + py.randrange(7 * 3600)
        for n in range(40):
            residents = [int(rng.integers(POPULATION))]
            acts.append(
                (
                    t + 3 * n,
                    [
                        self.entry(
                            p, t + 3 * n, 0, self.principals[p][2][0], self.next_case(p), residents
                        )
                    ],
                )
            )
        # A caseworker probing: six refusals in an afternoon; a case reference reused.
        p = py.randrange(len(self.principals))
        for n in range(6):
            acts.append(
                (
                    start + 5 * 3600 + 60 * n,
                    [
                        self.entry(
                            p,
                            start + 5 * 3600 + 60 * n,
                            4,
                            self.principals[p][2][0],
                            self.next_case(p),
                            [int(rng.integers(POPULATION))],
                            2,
                            REFUSALS[0],
                        )
                    ],
                )
            )
        shared = self.next_case(1)
        for p in (1, 61):
            acts.append(
                (
                    start + 7200,
                    [
                        self.entry(
                            p,
                            start + 7200,
                            1,
                            self.principals[p][2][0],
                            shared,
                            [int(rng.integers(POPULATION))],
                        )
                    ],
                )
            )
        # A staff member (hrss/cw005) asks about their own spouse (resident 26).
        acts.append(
            (
                start + 600,
                [self.entry(5, start + 600, 1, self.principals[5][2][0], self.next_case(5), [26])],
            )
        )
        acts.sort(key=lambda act: act[0])
        return [entry for _, entries in acts for entry in entries]


def build(path: Path, entries: int, seed: int) -> tuple[float, int]:
    """Build the store; its seconds and size on disk (bytes)."""
    builder = Builder(seed)
    per_day = max(100, entries // WORKDAYS)
    day = dt.date(2026, 1, 5)
    started = time.perf_counter()
    written = 0
    pending: list[bytes] = []
    with LedgerStore(path) as store:
        while written + len(pending) < entries:
            if day.isoweekday() <= 5:
                pending += builder.day(day, per_day)
            day += dt.timedelta(days=1)
            while len(pending) >= BATCH or (pending and written + len(pending) >= entries):
                take = min(BATCH, entries - written)
                store.append_many(pending[:take])
                written += take
                pending = pending[take:]
                if written >= entries:
                    pending = []
                    break
    seconds = time.perf_counter() - started
    con = sqlite3.connect(path)
    for index in random.Random(seed).sample(range(entries), min(entries, 1000)):
        found = read_entry(con, index)
        assert found is not None, index
        decode(found[0])  # canonical, or this raises
    con.close()
    size = sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))
    return seconds, size


def staff_and_families(seed: int) -> tuple[pa.Table, pa.Table]:
    """A staff register of 20 principals (each with 5 relatives), families of three."""
    from exchange.audit import tag_prefix

    builder_tags = np.random.default_rng(seed).bytes(32 * POPULATION)
    prefixes = np.frombuffer(builder_tags, dtype=">i8").reshape(POPULATION, 4)[:, 0]
    families = pa.table(
        {"tag": pa.array(prefixes.astype(np.int64)), "family": pa.array(np.arange(POPULATION) // 3)}
    )
    principals, tags, relations = [], [], []
    for p in range(20):
        for r, relation in enumerate(("self", "spouse", "parent", "child", "sibling")):
            resident = 5 * p + r
            principals.append(f"caseworker:hrss/cw{p:03d}")
            tags.append(tag_prefix(builder_tags[32 * resident : 32 * resident + 32]))
            relations.append(relation)
    staff = pa.table(
        {"principal": principals, "tag": pa.array(tags, pa.int64()), "relation": relations}
    )
    return staff, families


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def scan_seconds(path: Path, seed: int, workers: int | None) -> dict[str, Any]:
    from exchange.audit import read_ledger
    from exchange.supervision import load_config, scan

    staff, families = staff_and_families(seed)
    cpu0, started = cpu_seconds(), time.perf_counter()
    frame = read_ledger(path, workers=workers)
    cpu1, decoded = cpu_seconds(), time.perf_counter()
    found = scan(frame, load_config(), staff=staff, families=families)
    cpu2, done = cpu_seconds(), time.perf_counter()
    return {
        "entries": frame.size,
        "decode": decoded - started,
        "rules": done - decoded,
        "total": done - started,
        "cpu_decode": cpu1 - cpu0,
        "cpu_rules": cpu2 - cpu1,
        "alerts": Counter((a.rule, a.card) for a in found),
        "rss": peak_rss_mib(),
        "load": os.getloadavg()[0],
    }


def naive_seconds(path: Path, count: int, seed: int) -> tuple[float, int]:
    """Decode ``count`` entries one by one and run the rules in plain Python."""
    from exchange.audit import tag_prefix
    from exchange.supervision import load_config

    config = load_config()
    rules = config.rules
    staff, families = staff_and_families(seed)
    staff_of: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for row in staff.to_pylist():
        staff_of[row["tag"]].append((row["principal"], row["relation"]))
    family_of = dict(
        zip(families.column("tag").to_pylist(), families.column("family").to_pylist(), strict=True)
    )
    hours = rules["off_hours"]
    start = int(hours["start"][:2]) * 3600 + int(hours["start"][3:]) * 60
    end = int(hours["end"][:2]) * 3600 + int(hours["end"][3:]) * 60
    window = rules["burst"]["window_seconds"]
    started = time.perf_counter()
    alerts = 0
    recent: dict[str, deque[int]] = defaultdict(deque)
    case_users: dict[str, set[str]] = defaultdict(set)
    case_families: dict[str, set[int]] = defaultdict(set)
    refusals: Counter[tuple[str, int]] = Counter()
    volume: Counter[tuple[str, str, int]] = Counter()
    used: dict[str, set[str]] = defaultdict(set)
    history: Counter[str] = Counter()
    subject_seen: dict[int, deque[tuple[int, str]]] = defaultdict(deque)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    for _, data, _ in read_entries(con, 0, count):
        entry = decode(data)
        if entry.kind != "ask":
            continue
        t = (
            int(
                dt.datetime.strptime(entry.time, "%Y-%m-%dT%H:%M:%SZ")
                .replace(tzinfo=dt.UTC)
                .timestamp()
            )
            + OFFSET
        )
        day, second = divmod(t, 86400)
        weekday = (day + 3) % 7 + 1
        if weekday not in hours["workdays"] or not start <= second < end:
            alerts += 1
        q = recent[entry.principal]
        q.append(t)
        while q[0] < t - window:
            q.popleft()
        alerts += len(q) > rules["burst"]["yellow_over"]
        if not entry.case_ref:
            alerts += 1
        else:
            case_users[entry.case_ref].add(entry.principal)
            alerts += len(case_users[entry.case_ref]) > 1
        if entry.outcome == "refused":
            refusals[(entry.principal, day)] += 1
            alerts += refusals[(entry.principal, day)] == rules["repeated_refusals"]["yellow_min"]
        volume[(entry.department, entry.principal, day)] += 1
        if entry.service_matter not in used[entry.principal]:
            alerts += history[entry.principal] >= rules["unusual_service_matter"]["min_history"]
            used[entry.principal].add(entry.service_matter)
        history[entry.principal] += 1
        for tag in entry.subject_tags:
            prefix = tag_prefix(tag)
            case_families[entry.case_ref].add(family_of.get(prefix, -1))
            seen = subject_seen[prefix]
            seen.append((t, entry.department))
            while seen[0][0] < t - 3 * 86400:
                seen.popleft()
            alerts += len({d for _, d in seen}) >= rules["subject_many_departments"]["yellow_min"]
            alerts += any(p == entry.principal for p, _ in staff_of.get(prefix, ()))
    con.close()
    return time.perf_counter() - started, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--ledger", type=Path, help="keep the store here and reuse it")
    parser.add_argument("--naive", type=int, default=200_000, help="entries for the baseline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, help="decoding processes (default: automatic)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    args = parser.parse_args()
    scratch = None
    if args.ledger is None:
        scratch = Path(tempfile.mkdtemp(prefix="onceonly-bench-audit-", dir="/tmp"))
        path = scratch / "ledger.sqlite"
    else:
        path = args.ledger
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        built = None
        if not path.exists():
            built = build(path, args.entries, args.seed)
        scanned = scan_seconds(path, args.seed, args.workers)
        naive = None if args.no_naive else naive_seconds(path, args.naive, args.seed)[0]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    n = scanned["entries"]
    rate = n / scanned["total"]
    verdict = "met" if scanned["total"] <= TARGET_SECONDS else "NOT met"
    lines = [f"# audit scan benchmark, {dt.date.today().isoformat()}, {machine()}"]
    if built is not None:
        lines.append(
            f"build: {args.entries:,} entries in {built[0]:.1f} s "
            f"({args.entries / built[0]:,.0f} entries/s, durable), {built[1] / 2**30:.2f} GiB"
        )
    lines += [
        f"alert scan of {n:,} entries: decode {scanned['decode']:.1f} s + rules "
        f"{scanned['rules']:.1f} s = {scanned['total']:.1f} s ({rate:,.0f} entries/s), "
        f"peak RSS {scanned['rss']:,.0f} MiB; target <= {TARGET_SECONDS:.0f} s: {verdict}",
        f"  CPU time (all threads and worker processes): decode {scanned['cpu_decode']:.1f} s, "
        f"rules {scanned['cpu_rules']:.1f} s; load average at the end {scanned['load']:.1f} "
        f"on {os.cpu_count()} cores",
    ]
    if naive is not None:
        naive_rate = args.naive / naive
        lines.append(
            f"naive per-entry Python scan of the first {args.naive:,}: {naive:.1f} s "
            f"({naive_rate:,.0f} entries/s), extrapolated to {n:,}: {n / naive_rate:,.0f} s; "
            f"speed-up {rate / naive_rate:.0f}x"
        )
    lines += [
        "alerts (rule, card): "
        + ", ".join(f"{r} {c} {k:,}" for (r, c), k in sorted(scanned["alerts"].items())),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
