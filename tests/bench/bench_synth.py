"""Benchmark: the synthetic city, vectorised, against the naive row-by-row way.

Run with `make bench` (or `python tests/bench/bench_synth.py --persons 1000000`). The
vectorised generator writes every department's files; the naive baseline writes only
the household register, one person at a time with Faker and the csv module, on a sample,
and is reported in persons per second so the two compare.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from faker import Faker

from exchange import residentid
from exchange.synth.city import generate_city


def peak_rss_mib() -> float:
    """This process's peak resident memory.

    Read from VmHWM, which starts afresh at exec: getrusage's ru_maxrss survives fork and
    exec, so a child started by a large parent would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"


def naive_register(persons: int, out: Path, seed: int) -> float:
    """Row by row: a Faker name, a date, a sequence and a check digit per person."""
    fake = Faker("zh_CN")
    Faker.seed(seed)
    rnd = random.Random(seed)
    divisions = ["440103", "440104", "440105", "440106", "440111", "440113"]
    seen = set()
    started = time.perf_counter()
    with out.open("w", encoding="gb18030", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["id_number", "name", "sex", "birth_date", "division_code", "address"])
        for _ in range(persons):
            male = rnd.random() < 0.5
            born = dt.date(1930, 1, 1) + dt.timedelta(days=rnd.randrange(34000))
            division = rnd.choice(divisions)
            while True:
                seq = rnd.randrange(0, 500) * 2 + (1 if male else 0)
                first17 = f"{division}{born:%Y%m%d}{seq:03d}"
                if first17 not in seen:
                    seen.add(first17)
                    break
            number = first17 + residentid.check_character(first17)
            name = fake.name_male() if male else fake.name_female()
            writer.writerow(
                [number, name, "男" if male else "女", born.isoformat(), division, fake.address()]
            )
    return time.perf_counter() - started


def vectorised_city(persons: int, out: Path, seed: int, dirty_rate: float) -> dict[str, Any]:
    """Run the real generator in a child process, so its peak memory is its own."""
    command = [sys.executable, __file__, "--child", str(out), "--persons", str(persons),
               "--seed", str(seed), "--dirty-rate", str(dirty_rate)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return result


def child(out: Path, persons: int, seed: int, dirty_rate: float) -> None:
    started = time.perf_counter()
    summary = generate_city(out, persons=persons, seed=seed, dirty_rate=dirty_rate)
    seconds = time.perf_counter() - started
    rows = sum(d.rows for d in summary.datasets)
    peak_mib = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--naive-persons", type=int, default=20_000)
    parser.add_argument("--dirty-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.persons, args.seed, args.dirty_rate)
        return
    scratch = Path(tempfile.mkdtemp(prefix="onceonly-bench-"))
    try:
        city = vectorised_city(args.persons, scratch / "city", args.seed, args.dirty_rate)
        naive_seconds = naive_register(args.naive_persons, scratch / "naive.csv", args.seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = float(city["seconds"])
    # Rows per second is the fair unit: the naive baseline writes one dataset, one row a person.
    fast = int(city["rows"]) / seconds
    slow = args.naive_persons / naive_seconds
    verdict = "met" if seconds <= 60 else "NOT met"
    lines = [
        f"# synth benchmark, {dt.date.today().isoformat()}, {machine()}",
        f"vectorised, all 6 departments, dirty rate {args.dirty_rate}: {args.persons:,} persons"
        f" in {seconds:.1f} s; {city['rows']:,} rows ({fast:,.0f} rows/s),"
        f" {int(city['bytes']) / 2**20:,.0f} MiB written, peak RSS {city['peak_mib']:,.0f} MiB",
        f"naive row by row (Faker, csv module), household register only: {args.naive_persons:,}"
        f" rows in {naive_seconds:.1f} s ({slow:,.0f} rows/s)",
        f"speed-up {fast / slow:,.0f}x in rows per second",
        f"target {args.persons:,} persons in at most 60 s: {verdict}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
