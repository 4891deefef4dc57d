"""Publication packages: what a department sends the exchange, signed.

A package is a folder:
- `data.parquet`: the accepted rows, typed by the contract, each with its source position
  `_row`;
- `quarantine.parquet`: every rejected row's violations (row, field, keyword, message, raw);
- `manifest.json`: dataset, schema version and hash, department, time, source, the row
  counts (read = accepted + quarantined, always) and each file's SHA-256 and size;
- `manifest.sig`: the department's Ed25519 signature over the manifest's canonical bytes.

Building streams the source through the validator in bounded memory, reading in a thread
of its own; duplicate keys are found afterwards over the accepted rows' keys alone (the
first occurrence wins).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors import ROW, SourceConfig
from exchange import keys
from exchange.contracts import Contract, load_contract
from exchange.errors import ExchangeError
from exchange.store import literal, quote, utc
from exchange.validation import VIOLATIONS, BatchValidator, Validated, output_type

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


def use_retaining_allocator() -> None:
    """Arrow's buffers from jemalloc rather than pyarrow's default mimalloc, from the first
    publication on, unless the environment chose a pool (`ARROW_DEFAULT_MEMORY_POOL`).

    mimalloc hands freed pages back to the system after about 10 ms, so a stream that
    frees and takes some 100 MB a block faults them in again every time; jemalloc keeps
    them about a second. Publishing 1M rows: 0.25 s less, of about 2 s, and the same peak.
    A process-wide choice, made by the exchange for its own process; buffers remember
    the pool they came from, so switching while others are alive is safe.
    """
    global _allocator_chosen
    if _allocator_chosen or os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    _allocator_chosen = True
    # A pyarrow built without jemalloc keeps its default.
    if pa.default_memory_pool().backend_name == "mimalloc" and "jemalloc" in (
        pa.supported_memory_backends()
    ):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


_allocator_chosen = False


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
    use_retaining_allocator()
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
        staged = _stream(connector.read(), BatchValidator(contract), work, progress)
        rows = _finish(contract, work, staged)
        if rows["read"] != rows["accepted"] + rows["quarantined"]:
            raise NothingLost(f"{source.dataset}: counted {rows}")
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


@dataclass
class _Staged:
    """What streaming counted, and every accepted row's key with its `_row`."""

    keys: _Keys
    read: int = 0
    rejected: int = 0


def _produce(batches: Iterator[pa.RecordBatch], queue: Queue[Any], stop: threading.Event) -> None:
    """Read the source in a thread of its own, until it ends or the consumer stops."""
    try:
        for part in batches:
            if not _offer(queue, part, stop):
                break
        else:
            _offer(queue, None, stop)
    except BaseException as problem:  # handed to the consumer, raised there
        _offer(queue, problem, stop)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a generator: its files and threads are let go now, not at exit


def _offer(queue: Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item` unless `stop` is set first; whether it was put."""
    while not stop.is_set():
        try:
            queue.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False


# Data files: LZ4 (a third the CPU of zstd for a little more disk), dictionary pages only
# for columns that repeat (a dictionary for unique values is built, then thrown away), and
# a Bloom filter per row group on the columns looked up by value (see `_lookup_columns`).
COMPRESSION = "lz4"
_DICTIONARY_SHARE = 0.1  # at most this many distinct values per row: a dictionary pays
_BLOOM_FPP = 0.01


class _DataWriter:
    """data.parquet, opened at the first batch, whose values choose the dictionary columns."""

    def __init__(self, path: Path, contract: Contract, schema: pa.Schema) -> None:
        self.path, self.contract, self.schema = path, contract, schema
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = _data_writer(self.path, self.contract, self.schema, table)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:
            self.writer = _data_writer(self.path, self.contract, self.schema, None)
        self.writer.close()


def _data_writer(
    path: Path, contract: Contract, schema: pa.Schema, first: pa.Table | None
) -> pq.ParquetWriter:
    dictionary: bool | list[str] = True
    if first is not None and first.num_rows >= 1000:
        dictionary = [
            name
            for name in schema.names
            if pa.types.is_boolean(schema.field(name).type)
            or pc.count_distinct(first.column(name)).as_py() <= _DICTIONARY_SHARE * first.num_rows
        ]
    rows = max(first.num_rows if first is not None else 0, 1)
    blooms = {name: {"ndv": rows, "fpp": _BLOOM_FPP} for name in _lookup_columns(contract)}
    # Minimum and maximum per row group where they can skip row groups: numbers and `_row`
    # (source order); on text in source order they rarely can, and cost a sixth of writing.
    statistics = [name for name in schema.names if not pa.types.is_string(schema.field(name).type)]
    return pq.ParquetWriter(
        path,
        schema,
        compression=COMPRESSION,
        use_dictionary=dictionary,
        write_statistics=statistics,
        bloom_filter_options=blooms or None,
    )


def _lookup_columns(contract: Contract) -> list[str]:
    """Columns facts look rows up by: the key's first column and every resident ID."""
    names = [contract.key[0]] if contract.key else []
    names += [
        name
        for name, schema in contract.properties.items()
        if schema.get("format") == "gb11643" and name not in names
    ]
    return [name for name in names if output_type(contract.properties[name]) == pa.string()]


class _Keys:
    """Every accepted row's key and `_row`, in an in-memory DuckDB database that spills to
    disk past its memory limit, so ten million keys do not need ten million keys' worth of
    memory. Filled while streaming, with a 64-bit hash of each key; duplicates are found
    once at the end: rows whose hashes repeat first (integers group fast), then, among those
    few, rows whose keys repeat."""

    HASH = "__onceonly_key_hash"

    def __init__(self, work: Path, key: list[str]) -> None:
        self.key, self.spill = key, work / "spill"
        self.con = duckdb.connect()
        self.con.execute(f"SET temp_directory = {literal(str(self.spill))}")
        self.con.execute("SET memory_limit = '512MB'")
        self.created = False

    def add(self, accepted: pa.Table) -> None:
        self.con.register("part", accepted.select([ROW, *self.key]))
        rows = f"SELECT *, {self.digest()} AS {quote(self.HASH)} FROM part"
        try:
            if self.created:
                self.con.execute(f"INSERT INTO keys {rows}")
            else:
                self.con.execute(f"CREATE TABLE keys AS {rows}")
                self.created = True
        finally:
            self.con.unregister("part")

    def digest(self) -> str:
        """The SQL for a row's key hash: DuckDB's 64-bit hash of the key's columns."""
        return f"hash({', '.join(quote(k) for k in self.key)})"

    def duplicates(self) -> pa.Table:
        """Rows whose key an earlier row already has: (row, first row with that key)."""
        found = pa.table({"row": pa.array([], pa.int64()), "first": pa.array([], pa.int64())})
        if self.created:
            names = ", ".join(quote(k) for k in self.key)
            row, digest = quote(ROW), quote(self.HASH)
            found = self.con.sql(
                f"""
                WITH clashes AS (
                    SELECT {digest} FROM keys GROUP BY {digest} HAVING count(*) > 1
                ),
                candidates AS (SELECT * FROM keys SEMI JOIN clashes USING ({digest})),
                repeated AS (
                    SELECT {names}, min({row}) AS first FROM candidates
                    GROUP BY {names} HAVING count(*) > 1
                )
                SELECT c.{row} AS row, r.first FROM candidates c JOIN repeated r USING ({names})
                WHERE c.{row} <> r.first ORDER BY row
                """
            ).to_arrow_table()
        return pa.table(
            {
                "row": found.column("row").cast(pa.int64()),
                "first": found.column("first").cast(pa.int64()),
            }
        )

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.spill, ignore_errors=True)


def _stream(
    batches: Iterator[pa.RecordBatch],
    validator: BatchValidator,
    work: Path,
    progress: Progress | None,
) -> _Staged:
    """Three stages, each in a thread of its own, a bounded queue between each two: reading
    (decoding holds the GIL, parsing does not), validating (here), and writing the data,
    the violations and the keys (Parquet and DuckDB work outside the GIL)."""
    staged = _Staged(_Keys(work, list(validator.contract.key)))
    incoming: Queue[Any] = Queue(maxsize=2)  # bounded: memory stays a few batches deep
    stop = threading.Event()
    reader = threading.Thread(target=_produce, args=(batches, incoming, stop), daemon=True)
    reader.start()
    outgoing: Queue[Validated | None] = Queue(maxsize=2)
    failed: list[BaseException] = []
    data = _DataWriter(work / DATA, validator.contract, validator.empty().schema)
    problems = pq.ParquetWriter(work / "violations.parquet", VIOLATIONS, compression=COMPRESSION)
    writer = threading.Thread(
        target=_consume, args=(outgoing, data, problems, staged.keys, failed), daemon=True
    )
    writer.start()
    try:
        while (part := incoming.get()) is not None and not failed:
            if isinstance(part, BaseException):
                raise part
            result = validator.validate(part)
            outgoing.put(result)
            staged.read += result.rows_read
            staged.rejected += result.rows_rejected
            if progress:
                progress(staged.read)
    except BaseException:
        stop.set()  # the reader stops too, and lets go of the source
        staged.keys.close()
        raise
    finally:
        outgoing.put(None)
        writer.join()
        problems.close()
        data.close()
    if failed:
        stop.set()
        staged.keys.close()
        raise failed[0]
    reader.join()
    return staged


def _consume(
    results: Queue[Validated | None],
    data: _DataWriter,
    problems: pq.ParquetWriter,
    keys: _Keys,
    failed: list[BaseException],
) -> None:
    """Write what validation judged; after a failure, only drain the queue (it is raised
    in the validating thread)."""
    while (result := results.get()) is not None:
        if failed:
            continue
        try:
            data.write(result.accepted)
            problems.write_table(result.violations)
            keys.add(result.accepted)
        except BaseException as problem:
            failed.append(problem)


def _finish(contract: Contract, work: Path, staged: _Staged) -> dict[str, int]:
    """Quarantine repeated keys (the first occurrence wins), write the quarantine file."""
    try:
        duplicates = staged.keys.duplicates()
    finally:
        staged.keys.close()
    if duplicates.num_rows:
        _drop_rows(work / DATA, contract, duplicates.column("row"))
    found = pq.ParquetFile(work / "violations.parquet").read()
    repeated = pa.table(
        {
            "row": duplicates.column("row"),
            "field": pa.array([",".join(contract.key)] * duplicates.num_rows, pa.string()),
            "keyword": pa.array(["unique"] * duplicates.num_rows, pa.string()),
            "message": pc.binary_join_element_wise(
                "repeats the key of row ", duplicates.column("first").cast(pa.string()), ""
            ),
            "raw": pa.nulls(duplicates.num_rows, pa.string()),
        },
        schema=VIOLATIONS,
    )
    quarantine = pa.concat_tables([found, repeated]).sort_by(
        [("row", "ascending"), ("keyword", "ascending"), ("field", "ascending")]
    )
    pq.write_table(quarantine, work / QUARANTINE, compression="zstd")
    (work / "violations.parquet").unlink()
    accepted = pq.read_metadata(work / DATA).num_rows
    return {
        "read": staged.read,
        "accepted": accepted,
        "quarantined": staged.rejected + duplicates.num_rows,
    }


def _drop_rows(path: Path, contract: Contract, rows: pa.ChunkedArray) -> None:
    """Rewrite a Parquet file without the given `_row`s, a row group at a time."""
    source = pq.ParquetFile(path)
    trimmed = path.with_name(path.name + ".trimmed")
    out = _DataWriter(trimmed, contract, source.schema_arrow)
    try:
        with source:
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                out.write(table.filter(pc.invert(pc.is_in(table.column(ROW), rows))))
    finally:
        out.close()
    trimmed.replace(path)


def _violation_counts(path: Path) -> dict[str, int]:
    keywords = pq.ParquetFile(path).read(columns=["keyword"]).column("keyword")
    counts = pc.value_counts(keywords).to_pylist() if len(keywords) else []
    return {
        str(c["values"]): int(c["counts"]) for c in sorted(counts, key=lambda c: str(c["values"]))
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


def keep_package(package: Package, target: Path) -> Package:
    """Copy a verified package to `target`, checking each data file's hash as it is written.

    What the copy holds is what was signed, even if the original changed after it was
    verified: the exchange reads the kept copy from then on.
    """
    target.mkdir(parents=True)
    for name in (MANIFEST, SIGNATURE):
        shutil.copyfile(package.path / name, target / name)
    for name in (DATA, QUARANTINE):
        digest = hashlib.sha256()
        with (package.path / name).open("rb") as source, (target / name).open("wb") as out:
            while chunk := source.read(8 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != package.manifest["files"][name]["sha256"]:
            raise PackageInvalid(f"{package.path}: {name} changed while it was being kept")
    return Package(target, package.manifest)


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
