"""Publication packages: what a department sends the exchange, signed.

A package is a folder:
- `data.parquet`: the accepted rows, typed by the contract;
- `quarantine.parquet`: every rejected row's violations (row, field, keyword, message, raw);
- `manifest.json`: dataset, schema version and hash, department, time, source, the row
  counts (read = accepted + quarantined, always) and each file's SHA-256 and size;
- `manifest.sig`: the department's Ed25519 signature over the manifest's canonical bytes.

Building streams the source through the validator in bounded memory; duplicate keys are
found afterwards by DuckDB over the staged rows (the first occurrence wins).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors import ROW, SourceConfig
from exchange import keys
from exchange.contracts import Contract, load_contract
from exchange.errors import ExchangeError
from exchange.store import quote, scalar, utc
from exchange.validation import VIOLATIONS, BatchValidator

FORMAT = "onceonly-package/1"
DATA, QUARANTINE, MANIFEST, SIGNATURE = (
    "data.parquet",
    "quarantine.parquet",
    "manifest.json",
    "manifest.sig",
)

Progress = Callable[[int], None]  # called with the rows read so far


class PackageInvalid(ExchangeError):
    """A package is incomplete, altered, or not signed by the key it must be signed with."""


class NothingLost(ExchangeError):
    """Rows read differ from rows accepted plus rows quarantined: a bug, never published."""


@dataclass(frozen=True)
class Package:
    path: Path
    manifest: dict[str, Any]

    @property
    def dataset(self) -> str:
        return str(self.manifest["dataset"])

    @property
    def rows(self) -> dict[str, int]:
        return dict(self.manifest["rows"])


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a manifest is signed as: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(path: Path) -> dict[str, Any]:
    return {
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "rows": pq.read_metadata(path).num_rows,
    }


def build_package(
    source: SourceConfig,
    out_dir: Path,
    signer: Ed25519PrivateKey,
    *,
    city: Path | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> Package:
    """Read, validate, de-duplicate and sign one department source into a package."""
    contract = load_contract(source.dataset, source.schema_version)
    if contract.department != source.department:
        owner = contract.department
        raise PackageInvalid(
            f"{source.file}: {source.dataset} belongs to {owner}, not {source.department}"
        )
    connector = source.open(city=city)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".building-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        read = _stream(connector.read(), BatchValidator(contract), work, progress)
        rows = _finish(contract, work)
        if rows["read"] != read or rows["read"] != rows["accepted"] + rows["quarantined"]:
            raise NothingLost(f"{source.dataset}: read {read}, but counted {rows}")
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "dataset": contract.dataset,
            "schema_version": contract.version,
            "schema_sha256": hashlib.sha256(canonical(contract.schema)).hexdigest(),
            "department": contract.department,
            "created_at": utc(now).isoformat(),
            "source": connector.describe(),
            "source_config": source.file.name,
            "rows": rows,
            "violations": _violation_counts(work / QUARANTINE),
            "files": {name: _describe(work / name) for name in (DATA, QUARANTINE)},
            "key_id": keys.key_id(f"department:{contract.department}", keys.raw_public(signer)),
        }
        (work / MANIFEST).write_bytes(canonical(manifest) + b"\n")
        signed = base64.b64encode(keys.sign(signer, canonical(manifest))).decode()
        signature = {"algorithm": "ed25519", "key_id": manifest["key_id"], "signature": signed}
        (work / SIGNATURE).write_text(json.dumps(signature) + "\n", "utf-8")
        final = (
            out_dir
            / f"{contract.dataset}-{contract.version}-{manifest['files'][DATA]['sha256'][:16]}"
        )
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Package(final, manifest)


def _stream(batches: Any, validator: BatchValidator, work: Path, progress: Progress | None) -> int:
    read = 0
    data_writer: pq.ParquetWriter | None = None
    with pq.ParquetWriter(work / "violations.parquet", VIOLATIONS, compression="zstd") as problems:
        for part in batches:
            result = validator.validate(part)
            if data_writer is None:
                data_writer = pq.ParquetWriter(
                    work / "staged.parquet", result.accepted.schema, compression="zstd"
                )
            data_writer.write_table(result.accepted)
            problems.write_table(result.violations)
            read += result.rows_read
            if progress:
                progress(read)
        if data_writer is None:  # an empty source
            empty = validator.empty()
            data_writer = pq.ParquetWriter(
                work / "staged.parquet", empty.schema, compression="zstd"
            )
            data_writer.write_table(empty)
        data_writer.close()
    return read


def _finish(contract: Contract, work: Path) -> dict[str, int]:
    """De-duplicate keys, write data.parquet and quarantine.parquet; return the counts."""
    staged, violations = str(work / "staged.parquet"), str(work / "violations.parquet")
    key = ", ".join(quote(k) for k in contract.key)
    columns = ", ".join(quote(c) for c in contract.properties)
    con = duckdb.connect()
    try:
        con.execute(f"SET temp_directory = '{work / 'spill'}'")
        con.execute("SET memory_limit = '1GB'")
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"""
            CREATE TEMP TABLE duplicates AS
            SELECT {quote(ROW)} AS row, first AS first_row FROM (
                SELECT {quote(ROW)}, min({quote(ROW)}) OVER (PARTITION BY {key}) AS first
                FROM read_parquet(?)
            ) WHERE {quote(ROW)} <> first
            """,
            [staged],
        )
        con.execute(
            f"""
            COPY (SELECT {columns} FROM read_parquet(?)
                  WHERE {quote(ROW)} NOT IN (SELECT row FROM duplicates))
            TO '{work / DATA}' (FORMAT parquet, COMPRESSION zstd)
            """,
            [staged],
        )
        con.execute(
            f"""
            COPY (
                SELECT row, field, keyword, message, raw FROM read_parquet(?)
                UNION ALL
                SELECT row, ?, 'unique', 'repeats the key of row ' || first_row, NULL
                FROM duplicates
                ORDER BY row, keyword, field
            ) TO '{work / QUARANTINE}' (FORMAT parquet, COMPRESSION zstd)
            """,
            [violations, ",".join(contract.key)],
        )
        distinct_rows = "SELECT count(DISTINCT row) FROM read_parquet(?)"
        rows_in = "SELECT count(*) FROM read_parquet(?)"
        rejected = int(scalar(con, distinct_rows, [str(work / QUARANTINE)]))
        accepted = int(scalar(con, rows_in, [str(work / DATA)]))
        # Rows read: those that passed the row checks plus those that did not (disjoint).
        passed, failed = scalar(con, rows_in, [staged]), scalar(con, distinct_rows, [violations])
        rows_read = int(passed) + int(failed)
    finally:
        con.close()
    for scratch in ("staged.parquet", "violations.parquet"):
        (work / scratch).unlink(missing_ok=True)
    shutil.rmtree(work / "spill", ignore_errors=True)
    return {"read": rows_read, "accepted": accepted, "quarantined": rejected}


def _violation_counts(path: Path) -> dict[str, int]:
    table = pq.read_table(path, columns=["keyword"])
    counts = table.group_by("keyword").aggregate([("keyword", "count")]).to_pylist()
    return {
        str(c["keyword"]): int(c["keyword_count"])
        for c in sorted(counts, key=lambda c: str(c["keyword"]))
    }


def open_package(path: Path) -> Package:
    """A package's manifest, without checking its signature (see `verify_package`)."""
    path = Path(path)
    for name in (DATA, QUARANTINE, MANIFEST, SIGNATURE):
        if not (path / name).is_file():
            raise PackageInvalid(f"{path} is not a complete package: {name} is missing")
    try:
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise PackageInvalid(f"{path / MANIFEST} is not readable JSON: {problem}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PackageInvalid(f"{path}: not an {FORMAT} manifest")
    return Package(path, manifest)


def verify_package(path: Path, public_key: bytes) -> Package:
    """Check the signature with the department's registered key, then every file's hash."""
    package = open_package(path)
    try:
        signature = json.loads((Path(path) / SIGNATURE).read_text("utf-8"))
        raw = base64.b64decode(signature["signature"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as problem:
        raise PackageInvalid(f"{path / SIGNATURE} is malformed: {problem}") from None
    department = package.manifest.get("department")
    if not keys.verifies(public_key, raw, canonical(package.manifest)):
        raise PackageInvalid(
            f"{path}: the manifest's signature does not verify with {department}'s registered key"
        )
    for name in (DATA, QUARANTINE):
        expected = package.manifest["files"][name]
        if _sha256(Path(path) / name) != expected["sha256"]:
            raise PackageInvalid(f"{path}: {name} has been altered since it was signed")
    return package
