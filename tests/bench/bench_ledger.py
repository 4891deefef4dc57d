"""Benchmark: the ledger store, durable appends, a full verify, and Merkle proofs.

Run with `python -m tests.bench.bench_ledger [--seconds S] [--rounds R] [--entries N]`.
It measures; it asserts nothing about speed (the figures go in the README).

1. Durable appends per second (WAL, ``synchronous=FULL`` as `LedgerStore` sets it), in
   the same run: one commit per entry (one thread; eight threads with ``max_batch=1``)
   against group commit with 8, 32 and 128 threads calling `append`, and against
   `append_many` in batches of 100 and 1,000. Each mode gets a fresh store and a fixed
   time, in every round; a mode's figure is its entries over its time across rounds.
   The entries are realistic encoded asks (`Entry.ask` + `encode`, fields varied),
   built beforehand: encoding is not part of the append figures.
2. A store of N entries (default 10^6), bulk-loaded with `append_many`, then the full
   read-only `verify_store` (rehash every entry, every seal, the tree, the checkpoint)
   and a reopen followed by `LedgerStore.verify`, each in a child process of its own so
   its peak memory is its own.
3. Inclusion and consistency proofs generated and verified per second on that store
   (random leaves and sizes), and proof sizes for trees of 10^3, 10^6 and 10^9 entries
   from `ledger.proofs`' length helpers.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.entries import Entry, encode, subject_commitment, subject_tag
from ledger.proofs import (
    consistency_proof_length,
    inclusion_proof_length,
    verify_consistency,
    verify_inclusion,
)
from ledger.store import LedgerStore, verify_store
from tests.bench.bench_synth import machine, peak_rss_mib

HERE = Path(__file__).resolve()
TARGET_RATE = 100_000
TARGET_VERIFY_SECONDS = 10.0
BULK_BATCH = 50_000

# The departments of schemas/reference/departments.json, with a case-number prefix.
DEPARTMENTS = {
    "public_security": "PS",
    "health": "HE",
    "civil_affairs": "CA",
    "hrss": "HR",
    "housing": "HO",
    "education": "ED",
}
# Facts asked of the exchange, with how many residents each ask is about.
FACTS = (
    ("is_mother_of", 2),
    ("is_married_to", 2),
    ("household_members", 1),
    ("residence_address", 1),
    ("receives_dibao", 1),
    ("has_criminal_record", 1),
    ("owns_property", 1),
    ("holds_degree", 1),
    ("is_deceased", 1),
    ("pension_paid", 1),
)
REFUSALS = ("no grant for service matter", "principal not authorised for fact")
ERRORS = ("source department unavailable", "fact evaluation timed out")
DIVISIONS = ("440103", "440104", "440105", "440106", "440111", "440113")


# --- entries ------------------------------------------------------------------------


def entry_pool(count: int, seed: int) -> tuple[list[bytes], float]:
    """``count`` distinct encoded asks, and the seconds building one took on average."""
    from exchange.residentid import check_character

    rng = random.Random(seed)
    subject_key = rng.randbytes(32)
    start_time = dt.datetime(2026, 5, 9, 8, 0, tzinfo=dt.UTC)
    pool = []
    started = time.perf_counter()
    for i in range(count):
        department = rng.choice(list(DEPARTMENTS))
        fact_id, subjects = rng.choice(FACTS)
        residents = []
        for _ in range(subjects):
            born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(34_000))
            first17 = f"{rng.choice(DIVISIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
            residents.append(first17 + check_character(first17))
        draw = rng.random()
        outcome = "answered" if draw < 0.9 else "refused" if draw < 0.98 else "error"
        answered = outcome == "answered"
        entry = Entry.ask(
            department=department,
            principal=f"caseworker:{department}/cw{rng.randrange(400):04d}",
            fact_id=fact_id,
            fact_version=rng.choice(("1.0.0", "1.1.0", "2.0.0")),
            service_matter=f"SM-{rng.randrange(1, 300):04d}",
            case_ref=f"{DEPARTMENTS[department]}-2026-{i:07d}",
            outcome=outcome,
            reason="" if answered else rng.choice(REFUSALS if outcome == "refused" else ERRORS),
            answer_digest=rng.randbytes(32) if answered else None,
            relied_on=tuple(rng.sample(range(1, 5_000), rng.randint(1, 3))) if answered else (),
            subject_tags=tuple(subject_tag(subject_key, r) for r in residents),
            subject_commitments=tuple(subject_commitment(r, rng.randbytes(32)) for r in residents),
            now=start_time + dt.timedelta(seconds=i // 20),
        )
        pool.append(encode(entry))
    return pool, (time.perf_counter() - started) / count


# --- appends ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    threads: int = 1
    batch: int | None = None  # None: `append`, one entry a call; else `append_many`
    max_batch: int | None = None


MODES = (
    Mode("one commit per entry: 1 thread", threads=1, max_batch=1),
    Mode("one commit per entry: 8 threads, max_batch=1", threads=8, max_batch=1),
    Mode("group commit: 8 threads calling append", threads=8),
    Mode("group commit: 32 threads calling append", threads=32),
    Mode("group commit: 128 threads calling append", threads=128),
    Mode("append_many: 100 per call, 1 caller", batch=100),
    Mode("append_many: 1,000 per call, 1 caller", batch=1000),
)


@dataclass
class Tally:
    entries: int = 0
    seconds: float = 0.0
    commits: int = 0
    low: float = float("inf")
    high: float = 0.0

    def add(self, entries: int, seconds: float, commits: int) -> None:
        self.entries += entries
        self.seconds += seconds
        self.commits += commits
        self.low = min(self.low, entries / seconds)
        self.high = max(self.high, entries / seconds)

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def measure_appends(
    mode: Mode, pool: list[bytes], seconds: float, where: Path
) -> tuple[int, float, int]:
    """Append for ``seconds`` on a fresh store; return (durable entries, elapsed, commits)."""
    where.mkdir()
    commits = [0]

    def count(rows: int) -> None:  # called by the sequencer only, once per commit
        commits[0] += 1

    options: dict[str, Any] = {"before_commit": count}
    if mode.max_batch is not None:
        options["max_batch"] = mode.max_batch
    store = LedgerStore(where / "ledger.db", **options)
    # The durability claim, checked rather than assumed: 2 is FULL.
    assert store._writer is not None
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    chunks = []
    if mode.batch is not None:
        chunks = [
            pool[i : i + mode.batch] for i in range(0, len(pool) - mode.batch + 1, mode.batch)
        ]
    gate = threading.Barrier(mode.threads + 1)
    deadline = [0.0]
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        k = worker * 997
        gate.wait()
        try:
            while time.perf_counter() < deadline[0]:
                if mode.batch is None:
                    store.append(pool[k % len(pool)])
                else:
                    store.append_many(chunks[k % len(chunks)])
                k += 1
        except BaseException as problem:
            failures.append(problem)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(mode.threads)]
    for w in workers:
        w.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    gate.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    entries = store.size
    store.close()
    shutil.rmtree(where)
    if failures:
        raise failures[0]
    return entries, elapsed, commits[0]


# --- the big store ------------------------------------------------------------------


def checkpoint_note(size: int, root: bytes) -> str:
    """The body of a c2sp checkpoint (unsigned: the store takes any note text)."""
    return f"onceonly.example/ledger\n{size}\n{base64.b64encode(root).decode()}\n"


def build_store(path: Path, pool: list[bytes], entries: int) -> float:
    """Bulk-load ``entries`` entries (the pool, cycled) with append_many; return seconds."""
    spent = 0.0
    with LedgerStore(path) as store:
        for low in range(0, entries, BULK_BATCH):
            batch = [pool[i % len(pool)] for i in range(low, min(low + BULK_BATCH, entries))]
            started = time.perf_counter()
            store.append_many(batch)
            spent += time.perf_counter() - started
        store.record_checkpoint(store.size, store.root(), checkpoint_note(store.size, store.root()))
    return spent


def child(mode: str, path: Path) -> None:
    # This module's imports (bench_synth brings Faker, NumPy, pyarrow) are already in
    # the peak; report them so the store's own share can be told apart.
    baseline = peak_rss_mib()
    if mode == "verify":
        started = time.perf_counter()
        report = verify_store(path)
        seconds = time.perf_counter() - started
        result = {
            "seconds": seconds,
            "ok": report.ok,
            "entries": report.entries,
            "checkpoints": report.checkpoints,
            "baseline_mib": baseline,
            "peak_mib": peak_rss_mib(),
        }
    else:
        started = time.perf_counter()
        store = LedgerStore(path)
        open_seconds = time.perf_counter() - started
        open_peak = peak_rss_mib()
        started = time.perf_counter()
        report = store.verify()
        verify_seconds = time.perf_counter() - started
        store.close()
        result = {
            "open_seconds": open_seconds,
            "open_peak_mib": open_peak,
            "verify_seconds": verify_seconds,
            "ok": report.ok,
            "baseline_mib": baseline,
            "peak_mib": peak_rss_mib(),
        }
    print(json.dumps(result))


def in_child(mode: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_ledger", "--child", mode, str(path)],
        capture_output=True, text=True, check=True, cwd=HERE.parents[2],
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- proofs -------------------------------------------------------------------------


def proof_rates(path: Path, count: int, seed: int) -> dict[str, float]:
    """Inclusion and consistency proofs generated and verified per second."""
    rng = random.Random(seed)
    with LedgerStore(path) as store:
        size = store.size
        root = store.root()
        indexes = [rng.randrange(size) for _ in range(count)]
        leaves = [store.leaf_hash(i) for i in indexes]
        started = time.perf_counter()
        inclusion = [store.inclusion_proof(i) for i in indexes]
        made = time.perf_counter() - started
        started = time.perf_counter()
        for index, leaf, proof in zip(indexes, leaves, inclusion, strict=True):
            verify_inclusion(leaf, index, size, proof, root)
        checked = time.perf_counter() - started
        assert all(
            len(p) == inclusion_proof_length(i, size)
            for i, p in zip(indexes, inclusion, strict=True)
        )

        pairs = []
        for _ in range(count):
            first = rng.randrange(1, size)
            pairs.append((first, rng.randrange(first + 1, size + 1)))
        roots = {s: store.root(s) for pair in pairs for s in pair}
        started = time.perf_counter()
        consistency = [store.consistency_proof(a, b) for a, b in pairs]
        c_made = time.perf_counter() - started
        started = time.perf_counter()
        for (a, b), proof in zip(pairs, consistency, strict=True):
            verify_consistency(a, b, proof, roots[a], roots[b])
        c_checked = time.perf_counter() - started
    return {
        "size": size,
        "inclusion_made": count / made,
        "inclusion_checked": count / checked,
        "inclusion_both": count / (made + checked),
        "inclusion_mean": sum(map(len, inclusion)) / count,
        "consistency_made": count / c_made,
        "consistency_checked": count / c_checked,
        "consistency_both": count / (c_made + c_checked),
        "consistency_mean": sum(map(len, consistency)) / count,
    }


def proof_sizes(size: int, samples: int, rng: random.Random) -> str:
    """Inclusion and consistency proof lengths in a tree of ``size``, in hashes and bytes."""
    bound = (size - 1).bit_length()  # ceil(log2 size): the deepest leaf's path
    inclusion = [inclusion_proof_length(rng.randrange(size), size) for _ in range(samples)]
    consistency = [consistency_proof_length(rng.randrange(1, size), size) for _ in range(samples)]
    mean_i = sum(inclusion) / samples
    mean_c = sum(consistency) / samples
    most_c = max(consistency)
    return (
        f"  {size:>13,} entries: inclusion at most {bound} hashes ({bound * 32} B),"
        f" mean {mean_i:.1f} ({mean_i * 32:,.0f} B); consistency to it mean {mean_c:.1f}"
        f" ({mean_c * 32:,.0f} B), sampled max {most_c} ({most_c * 32} B, bound {bound + 1})"
    )


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per append mode per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the big store")
    parser.add_argument("--pool", type=int, default=50_000, help="distinct entries built")
    parser.add_argument("--proofs", type=int, default=5_000, help="proofs of each kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return

    pool, build_seconds = entry_pool(args.pool, args.seed)
    sizes = [len(e) for e in pool]
    scratch = Path(tempfile.mkdtemp(prefix="onceonly-bench-ledger-", dir="/tmp"))
    try:
        tallies = {mode.name: Tally() for mode in MODES}
        run = 0
        for _ in range(args.rounds):
            for mode in MODES:
                run += 1
                done = measure_appends(mode, pool, args.seconds, scratch / f"append-{run}")
                tallies[mode.name].add(*done)

        big = scratch / "big" / "ledger.db"
        big.parent.mkdir()
        load_seconds = build_store(big, pool, args.entries)
        disk_mib = sum(p.stat().st_size for p in big.parent.iterdir()) / 2**20
        checked = in_child("verify", big)
        reopened = in_child("reopen", big)
        proofs = proof_rates(big, args.proofs, args.seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    width = max(len(m.name) for m in MODES)
    lines = [
        f"# ledger benchmark, {dt.date.today().isoformat()}, {machine()}",
        f"entries: {len(pool):,} distinct encoded asks (Entry.ask + encode, fields varied),"
        f" {sum(sizes) / len(sizes):.0f} bytes mean ({min(sizes)}-{max(sizes)});"
        f" building one (validation, HMAC tag, commitment, encoding) took"
        f" {build_seconds * 1e6:.0f} us, not counted below",
        f"durable appends (WAL, synchronous=FULL checked), fresh store per run, {args.seconds:g} s"
        f" a mode x {args.rounds} rounds; entries/s over all rounds (range), entries per commit:",
    ]
    for mode in MODES:
        t = tallies[mode.name]
        lines.append(
            f"  {mode.name:<{width}}  {t.rate:>9,.0f} /s  ({t.low:,.0f}-{t.high:,.0f})"
            f"  {t.entries / max(t.commits, 1):7.1f} per commit"
        )
    single = tallies[MODES[0].name].rate
    threaded = [m for m in MODES if m.batch is None and m.max_batch is None]
    best_threaded = max(threaded, key=lambda m: tallies[m.name].rate)
    best = max(MODES, key=lambda m: tallies[m.name].rate)
    meeting = [m.name for m in MODES if tallies[m.name].rate >= TARGET_RATE]
    lines.append(
        f"  group commit (best: {best_threaded.name}) is"
        f" {tallies[best_threaded.name].rate / single:,.1f}x one commit per entry;"
        f" best mode overall {tallies[best.name].rate / single:,.1f}x"
    )
    lines += [
        f"store of {args.entries:,} entries (the pool cycled), bulk-loaded with append_many of"
        f" {BULK_BATCH:,}: {load_seconds:.1f} s ({args.entries / load_seconds:,.0f} entries/s),"
        f" {disk_mib:,.0f} MiB on disk",
        f"verify_store (read-only, full: {checked['entries']:,} entries rehashed, seals, tree,"
        f" {checked['checkpoints']} checkpoint, ok={checked['ok']}): {checked['seconds']:.2f} s,"
        f" peak RSS {checked['peak_mib']:,.0f} MiB (own process, {checked['baseline_mib']:,.0f}"
        " MiB of it the benchmark's imports; file in the page cache)",
        f"reopen: {reopened['open_seconds']:.2f} s, peak RSS {reopened['open_peak_mib']:,.0f} MiB;"
        f" then LedgerStore.verify: {reopened['verify_seconds']:.2f} s (ok={reopened['ok']}),"
        f" peak RSS {reopened['peak_mib']:,.0f} MiB (own process, {reopened['baseline_mib']:,.0f}"
        " MiB of it imports)",
        f"inclusion proofs at size {proofs['size']:,} ({args.proofs:,} random leaves, mean"
        f" {proofs['inclusion_mean']:.1f} hashes): generated {proofs['inclusion_made']:,.0f}/s,"
        f" verified {proofs['inclusion_checked']:,.0f}/s, both {proofs['inclusion_both']:,.0f}/s",
        f"consistency proofs ({args.proofs:,} random size pairs up to {proofs['size']:,}, mean"
        f" {proofs['consistency_mean']:.1f} hashes): generated"
        f" {proofs['consistency_made']:,.0f}/s, verified {proofs['consistency_checked']:,.0f}/s,"
        f" both {proofs['consistency_both']:,.0f}/s",
        "proof sizes (32-byte hashes; 10,000 random leaves / older sizes each):",
    ]
    rng = random.Random(args.seed)
    lines += [proof_sizes(n, 10_000, rng) for n in (10**3, 10**6, 10**9)]
    fast_threads = [m.name for m in threaded if tallies[m.name].rate >= TARGET_RATE]
    lines.append(
        f"modes at >= {TARGET_RATE:,} entries/s: "
        + ("; ".join(meeting) if meeting else "none")
        + (
            ""
            if fast_threads
            else f" (not group commit of concurrent append callers: best"
            f" {tallies[best_threaded.name].rate:,.0f}/s, {best_threaded.name})"
        )
    )
    lines.append(
        f"target >= {TARGET_RATE:,} entries/s: {verdict(bool(meeting))}"
        f" (best durable mode: {best.name}, {tallies[best.name].rate:,.0f}/s)"
    )
    full = args.entries == 10**6
    named = "10^6" if full else f"{args.entries:,} (not the 10^6 of the target)"
    verify_ok = full and checked["ok"] and checked["seconds"] <= TARGET_VERIFY_SECONDS
    lines.append(
        f"target verify {named} <= {TARGET_VERIFY_SECONDS:g} s: {verdict(verify_ok)}"
        f" ({checked['seconds']:.2f} s)"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
