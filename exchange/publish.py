"""Publishing: a department source becomes a signed package, then a publication.

`ingest` is the exchange's side: it trusts nothing in the package. It checks the signature
against the department's registered key and every file's hash, that the dataset and schema
version are registered to that department, runs the dataset's quality gate against the
previous publication, and only then makes the publication current, atomically.
Re-ingesting data identical to the current publication changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors import SourceConfig
from exchange import registry
from exchange.errors import ExchangeError
from exchange.home import Home
from exchange.keys import load_private_key
from exchange.package import (
    DATA,
    Package,
    Progress,
    build_package,
    canonical,
    keep_package,
    use_retaining_allocator,
    verify_package,
)
from exchange.quality import require_quality
from exchange.store import (
    ExchangeStore,
    dataset_view,
    db_time,
    literal,
    publication_table,
    scalar,
)
from ledger.entries import Entry
from ledger.log import Log


class PublicationRefused(ExchangeError):
    """The exchange refuses a package (unregistered dataset or version, wrong owner)."""


@dataclass(frozen=True)
class Publication:
    id: int
    dataset: str
    version: str
    rows: dict[str, int]
    unchanged: bool  # identical to the current publication: nothing was done
    package: Path
    quality: dict[str, Any]


def ingest(
    store: ExchangeStore,
    home: Home,
    package_path: Path,
    *,
    log: Log | None = None,
    principal: str | None = None,
    now: dt.datetime | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Publication:
    """Verify a package and make it the dataset's current publication.

    Every outcome is a ledger entry (``log``, default: the home's ledger): a publication
    becomes current only once its entry is durable (the entry is appended inside the
    database transaction, which commits after it), and a refused package is recorded
    with the reason before the error reaches the caller. Publication ids are reserved
    before the entry is written, so an id in the ledger is never reused, even if the
    process dies between the append and the commit.
    """
    if log is None:
        from exchange.ledgerlink import open_log

        with open_log(home) as home_log:
            return ingest(
                store,
                home,
                package_path,
                log=home_log,
                principal=principal,
                now=now,
                before_commit=before_commit,
            )
    claimed = _claimed_manifest(package_path)
    department = _identifier(claimed.get("department"))
    dataset = _identifier(claimed.get("dataset"))
    version = _identifier(claimed.get("schema_version"))
    who = principal or f"steward:{department}"
    try:
        return _ingest(store, home, package_path, log, who, now, before_commit)
    except ExchangeError as problem:
        # Refused (forged, unregistered, failed its quality gate): on the record, then raised.
        # A failing ledger raises LedgerError, which is not caught: nothing to record it in.
        log.append(
            Entry.publication(
                department=department,
                principal=who,
                dataset=dataset,
                dataset_version=version if version != "unknown" else "",
                outcome="refused",
                reason=_one_line(str(problem)),
                now=now,
            )
        )
        raise


def _claimed_manifest(package_path: Path) -> dict[str, Any]:
    """What the package says about itself, before anything is verified (for the ledger)."""
    from exchange.package import open_package

    try:
        return dict(open_package(package_path).manifest)
    except ExchangeError:
        return {}


_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")


def _identifier(value: object) -> str:
    """A claimed name as the ledger can hold it; "unknown" when it is not one."""
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else "unknown"


def _one_line(text: str, limit: int = 1000) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _reserve_publication_id(store: ExchangeStore) -> int:
    """The next publication id, committed as used before anything else happens."""
    with store.transaction() as con:
        last = scalar(
            con,
            "SELECT greatest(coalesce((SELECT max(id) FROM publications), 0), "
            "coalesce((SELECT CAST(value AS BIGINT) FROM onceonly_meta "
            "WHERE key = 'last_publication_id'), 0))",
        )
        new_id = int(last) + 1
        con.execute(
            "INSERT OR REPLACE INTO onceonly_meta VALUES ('last_publication_id', ?)", [str(new_id)]
        )
    return new_id


def _ingest(
    store: ExchangeStore,
    home: Home,
    package_path: Path,
    log: Log,
    principal: str,
    now: dt.datetime | None,
    before_commit: Callable[[], None] | None,
) -> Publication:
    use_retaining_allocator()
    claimed = _claimed_manifest(package_path)
    department = str(claimed.get("department"))
    package = verify_package(package_path, registry.department_key(store, department))
    manifest = package.manifest
    dataset, version = str(manifest["dataset"]), str(manifest["schema_version"])
    owner = store.one("SELECT department FROM datasets WHERE name = ?", [dataset])
    if owner is None:
        raise PublicationRefused(
            f"{dataset} is not a registered dataset (onceonly dataset register)"
        )
    if owner["department"] != department:
        raise PublicationRefused(f"{dataset} belongs to {owner['department']}, not {department}")
    if not store.one(
        "SELECT 1 AS ok FROM schema_versions WHERE dataset = ? AND version = ?", [dataset, version]
    ):
        raise PublicationRefused(f"{dataset} schema {version} is not registered")
    data_sha256 = str(manifest["files"][DATA]["sha256"])
    current = store.one("SELECT * FROM current_publications WHERE dataset = ?", [dataset])
    if current and current["data_sha256"] == data_sha256 and current["version"] == version:
        return _publication(current, unchanged=True)

    previous_rows = int(current["rows_accepted"]) if current else None
    new_id = _reserve_publication_id(store)
    # Keep the package as it was verified, under a folder of this publication's own that
    # nothing else writes: its data is what `pub.p<id>` reads, and audits re-derive from it.
    kept = home.packages / dataset / f"p{new_id:06d}-{package.path.name}"
    published_at = db_time(now)
    # The quality gate runs in a thread while the transaction opens; it commits only once
    # the gate has passed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        rows = int(manifest["rows"]["accepted"])
        try:
            keep_package(package, kept)
            sample = gate_sample(kept / DATA, dataset, seed=int(data_sha256[:16], 16))
            gate = pool.submit(
                require_quality, dataset, sample, previous_rows=previous_rows, rows=rows
            )
            with store.transaction() as con:
                table = publication_table(new_id)
                # A view over the kept Parquet file: no second copy of the rows in the
                # database, and lookups by key use the file's Bloom filters.
                parquet = literal(str(kept / DATA))
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({parquet})")
                quality = gate.result()
                con.execute(
                    "INSERT INTO publications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        new_id,
                        dataset,
                        version,
                        department,
                        _manifest_digest(package),
                        data_sha256,
                        manifest["rows"]["read"],
                        manifest["rows"]["accepted"],
                        manifest["rows"]["quarantined"],
                        manifest["source"],
                        db_time(dt.datetime.fromisoformat(manifest["created_at"])),
                        published_at,
                        str(kept),
                        json.dumps(quality.results, ensure_ascii=False),
                    ],
                )
                con.execute(
                    f"CREATE OR REPLACE VIEW {dataset_view(dataset)} AS SELECT * FROM {table}"
                )
                # Fail closed: the publication commits only once its entry is durable.
                log.append(
                    Entry.publication(
                        department=department,
                        principal=principal,
                        dataset=dataset,
                        dataset_version=version,
                        outcome="answered",
                        publication_id=new_id,
                        manifest_digest=bytes.fromhex(_manifest_digest(package)),
                        now=now,
                    )
                )
                if before_commit is not None:
                    before_commit()  # a test's window onto an ingest that has not committed
        except BaseException:
            shutil.rmtree(kept, ignore_errors=True)  # refused: not a kept package
            raise
    row = store.one("SELECT * FROM publications WHERE id = ?", [new_id])
    assert row is not None
    return _publication(row, unchanged=False)


GATE_ROWS = 500_000


def gate_sample(path: Path, dataset: str, *, seed: int, limit: int = GATE_ROWS) -> Any:
    """The rows the quality gate judges: all of them up to `limit`, else a uniform sample.

    Above the limit (half a million rows: ample for ratios, shares and ranges) the
    expectations judge a seeded uniform sample, drawn a row group at a time so memory stays
    bounded; the row count is always exact, and uniqueness and every per-row rule were
    already enforced on all rows.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from exchange.quality import load_suite

    wanted = load_suite(dataset).columns
    source = pq.ParquetFile(path)
    # Columns written with dictionary pages are read as dictionaries: no string per row is
    # built for values that repeat (the gate turns the sample back into plain columns).
    first = source.metadata.row_group(0) if source.num_row_groups else None
    paged = [
        first.column(i).path_in_schema
        for i in range(first.num_columns if first else 0)
        if first is not None and first.column(i).has_dictionary_page
    ]
    source = pq.ParquetFile(path, read_dictionary=[c for c in paged if c in wanted])
    columns = [c for c in source.schema_arrow.names if c in wanted]
    total = source.metadata.num_rows
    if total <= limit:
        return source.read(columns=columns)
    rng = np.random.default_rng(seed)
    parts = []
    for group in range(source.num_row_groups):
        size = source.metadata.row_group(group).num_rows
        take = np.sort(rng.choice(size, round(limit * size / total), replace=False))
        parts.append(source.read_row_group(group, columns=columns).take(pa.array(take)))
    return pa.concat_tables(parts)


def _manifest_digest(package: Package) -> str:
    return hashlib.sha256(canonical(package.manifest)).hexdigest()


def _publication(row: dict[str, Any], *, unchanged: bool) -> Publication:
    return Publication(
        id=int(row["id"]),
        dataset=str(row["dataset"]),
        version=str(row["version"]),
        rows={
            "read": int(row["rows_read"]),
            "accepted": int(row["rows_accepted"]),
            "quarantined": int(row["rows_quarantined"]),
        },
        unchanged=unchanged,
        package=Path(row["package_dir"]),
        quality=json.loads(row["quality_json"]),
    )


def department_signer(home: Home, department: str) -> Any:
    """The department's signing key, where its steward keeps it on this machine."""
    path = home.department_keys / f"{department}.pem"
    if not path.is_file():
        raise PublicationRefused(
            f"no signing key for {department} at {path}: a package must be signed by its department"
        )
    return load_private_key(path)


def publish(
    store: ExchangeStore,
    home: Home,
    source: SourceConfig,
    *,
    city: Path | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
    principal: str | None = None,
) -> tuple[Package, Publication]:
    """The steward's whole path: build and sign the package, then ingest it."""
    signer = department_signer(home, source.department)
    package = build_package(
        source, home.root / "outbox", signer, city=city, now=now, progress=progress
    )
    return package, ingest(store, home, package.path, now=now, principal=principal)
