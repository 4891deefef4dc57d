"""Generate the synthetic city into a folder.

The same seed, size, dirty rate and date give byte-identical files (for one locked
environment: numpy's and Arrow's versions are part of the recipe); nothing reads the clock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from exchange.errors import InvalidArgument
from exchange.synth import DEFAULT_TODAY, MANIFEST, SUMMARY
from exchange.synth.departments import SPECS, DatasetSpec, build_all
from exchange.synth.faults import KINDS, Damage, plan
from exchange.synth.population import ALIVE, generate
from exchange.synth.writers import atomic_path, write_parquet, write_sqlite, write_text


@dataclass(frozen=True)
class DatasetSummary:
    dataset: str
    department: str
    path: str
    format: str
    encoding: str | None
    rows: int
    faults: int


@dataclass(frozen=True)
class CitySummary:
    persons: int
    households: int
    alive: int
    deceased: int
    seed: int
    dirty_rate: float
    today: str
    datasets: list[DatasetSummary]
    faults_by_kind: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def generate_city(
    out: Path,
    *,
    persons: int,
    seed: int,
    dirty_rate: float = 0.0,
    today: dt.date = DEFAULT_TODAY,
    contribution_months: int = 36,
) -> CitySummary:
    """Generate the city into `out`: every department's sources, the summary and manifest."""
    if persons < 10:
        raise InvalidArgument(f"--persons must be at least 10, got {persons}")
    if not 0.0 <= dirty_rate <= 0.2:
        raise InvalidArgument(f"--dirty-rate must be between 0 and 0.2, got {dirty_rate}")
    if seed < 0:
        raise InvalidArgument(f"--seed must not be negative, got {seed}")
    rng = np.random.default_rng(seed)
    population = generate(persons, rng, today)
    tables = build_all(population, rng, contribution_months)

    fault_rng = np.random.default_rng([seed, 1])  # faults never shift the clean data
    damages = {spec.name: plan(spec, tables[spec.name], dirty_rate, fault_rng) for spec in SPECS}

    out.mkdir(parents=True, exist_ok=True)
    # The summary marks a complete city, so it goes first and comes back last; a crash in
    # between leaves no stale ground truth beside new sources.
    (out / SUMMARY).unlink(missing_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    manifest: list[dict[str, object]] = []
    sqlite_group: list[tuple[DatasetSpec, pa.Table, Damage]] = []
    for spec in SPECS:
        table, damage = tables[spec.name], damages[spec.name]
        lines = None
        if spec.is_text:
            lines = write_text(spec, table, damage, out)
        elif spec.format == "parquet":
            write_parquet(spec, table, damage, out)
        else:
            sqlite_group.append((spec, table, damage))
        for fault in damage.faults:
            entry: dict[str, object] = {
                "dataset": spec.name,
                "file": spec.path,
                "table": spec.table,
                "row": fault.row + 1,
                "kind": fault.kind,
                "field": fault.field,
                "detail": fault.detail,
            }
            if lines is not None:
                entry["line"] = int(lines[fault.row])
            manifest.append(entry)
    if sqlite_group:
        write_sqlite(sqlite_group, out)

    counts = Counter(str(e["kind"]) for e in manifest)
    summary = CitySummary(
        persons=population.size,
        households=population.households,
        alive=int((population.death == ALIVE).sum()),
        deceased=int((population.death != ALIVE).sum()),
        seed=seed,
        dirty_rate=dirty_rate,
        today=today.isoformat(),
        datasets=[
            DatasetSummary(
                dataset=spec.name,
                department=spec.department,
                path=spec.path if spec.table is None else f"{spec.path}#{spec.table}",
                format=spec.format,
                encoding=spec.encoding if spec.is_text else None,
                rows=tables[spec.name].num_rows,
                faults=len(damages[spec.name].faults),
            )
            for spec in SPECS
        ],
        faults_by_kind={kind: counts[kind] for kind in KINDS if counts[kind]},
    )
    with atomic_path(out / MANIFEST) as tmp:
        entries = (json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in manifest)
        tmp.write_text("".join(entries), encoding="utf-8")
    with atomic_path(out / SUMMARY) as tmp:
        tmp.write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2) + "\n", "utf-8")
    return summary
