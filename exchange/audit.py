"""The auditor's library: read the ledger in bulk, and verify everything it stands on.

Two jobs live here.

**Reading the ledger as columns** (`read_ledger`). E-supervision, the audit report and
the re-derivation sample all look at every entry; decoding 10^7 entries one `Entry` at a
time costs minutes of Python. The version-1 encoding (`ledger.entries`) is a fixed
sequence of length-prefixed fields, so it can be walked *column-wise*: keep one byte
position per entry in a numpy array and advance all of them field by field — read a
``uint16`` length at every position at once, note where each text starts, add the
lengths. Text fields become Arrow string arrays gathered in one numpy indexing step;
the time field (always 20 characters) is parsed arithmetically into Unix seconds;
subject tags become a second table, one row per (entry, tag). Entries are read from
the store's SQLite file directly, read-only, in small chunks that stay in the CPU cache.

The fast path is not a second parser to trust: it reads what `Log.verify` (below)
checks, every chunk is held to the layout (version byte, known codes, 20-character time,
presence bytes 0 or 1, the last field ending exactly where the entry does) and any entry
that does not fit is handed to `ledger.entries.decode`, whose refusal is raised.
Subject tags are kept as their first 8 bytes (a signed 64-bit integer): grouping and
joining on them is several times cheaper than on 32-byte strings, and two different
residents share a prefix with probability 2^-64 per pair. Whoever needs the exact tag
(the citizen report) re-reads the entry itself.

**Verification** (`verify_home`, `onceonly audit verify`), in numbered steps:

1. the ledger: every entry re-hashed, every seal, the tree rebuilt, every checkpoint
   signed by the log key, consecutive checkpoints consistent (`Log.verify`) — and every
   checkpoint cosigned by the home's witness;
2. every publication: its kept package's signature against the department's registered
   key and every file's hash (`verify_package`), the manifest's and data's hashes
   against the publications table, the ledger's publication entry against the
   manifest's hash, and the DuckDB table ``pub.pNNNNNN`` row for row against the signed
   ``data.parquet`` it was loaded from;
3. re-derivation: a sample (or all) of the answered asks is replayed from the ask
   archive against exactly the publications each entry relied on, and the recomputed
   ``answer_digest(canonical_answer(…), nonce)`` must equal the ledgered digest. A
   mismatch is traced to the publication whose table no longer answers as its signed
   package does, where one is to blame.

Every finding names what it is about (entry index, publication id) and the expected
and found values.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import json
import random
import secrets
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from exchange.errors import ExchangeError
from exchange.home import Home
from ledger.store import LedgerTampered, read_blocks, read_entry, stored_size

if TYPE_CHECKING:
    from exchange.store import ExchangeStore
    from ledger.log import Log

__all__ = [
    "DEFAULT_SAMPLE",
    "AuditReport",
    "Finding",
    "LedgerFrame",
    "LedgerUnreadable",
    "read_home_ledger",
    "read_ledger",
    "verify_home",
]

DEFAULT_SAMPLE: Final = 200
CHUNK: Final = 4096  # entries decoded per step: ~1 MiB of entry bytes, cache-sized
_TIME_DIGITS: Final = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18], np.int64)
KINDS: Final = ("", "ask", "publication")
OUTCOMES: Final = ("", "answered", "refused", "error")


class LedgerUnreadable(ExchangeError):
    """The ledger file cannot be read as a gap-free sequence of valid entries."""


# --- the ledger as columns ---------------------------------------------------------------


@dataclass(frozen=True)
class LedgerFrame:
    """The ledger decoded into two Arrow tables.

    ``entries``: one row per entry — ``idx`` (int64), ``t`` (Unix seconds, UTC),
    ``kind`` (ask / publication), ``department``, ``principal``, ``fact_id``,
    ``fact_version``, ``publication_id`` (null when absent), ``dataset``,
    ``service_matter``, ``case_ref`` (with ``case_key``, its 64-bit FNV-1a hash, and
    ``case_year``, the year of an ``AA-YYYY-NNNN`` reference, else null), ``outcome``
    (answered / refused / error),
    ``reason``, ``n_subjects``, ``embargo_until`` (text, "" for none).
    ``subjects``: one row per (entry, subject tag) — ``idx``, ``t`` and ``tag``, the
    tag's first 8 bytes as a big-endian signed int64.
    """

    entries: pa.Table
    subjects: pa.Table

    @property
    def size(self) -> int:
        return int(self.entries.num_rows)


def tag_prefix(tag: bytes) -> int:
    """A subject tag as `LedgerFrame.subjects` holds it: its first 8 bytes, signed."""
    return int.from_bytes(tag[:8], "big", signed=True)


def _u16(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    value: np.ndarray = (data[pos].astype(np.int64) << 8) | data[pos + 1]
    return value


def _strings(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> pa.Array:
    """The byte ranges ``data[start:start+length]`` as one Arrow string array."""
    n = len(start)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(length, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:  # a field most entries leave empty (reason, embargo, dataset)
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b""))
    gather = np.repeat(start - offsets[:-1], length) + _counting(total)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data[gather]))


_COUNT = np.arange(1 << 20, dtype=np.int64)


def _counting(total: int) -> np.ndarray:
    """``np.arange(total)``, from one shared array where it is long enough."""
    return _COUNT[:total] if total <= len(_COUNT) else np.arange(total, dtype=np.int64)


def _unix_seconds(digits: np.ndarray) -> np.ndarray:
    """``YYYYMMDDhhmmss`` digit columns (n × 14) as Unix seconds (proleptic Gregorian)."""
    d = digits.astype(np.int64) - 48
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month, day = d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7]
    seconds = (d[:, 8] * 10 + d[:, 9]) * 3600 + (d[:, 10] * 10 + d[:, 11]) * 60
    seconds += d[:, 12] * 10 + d[:, 13]
    # Days from the civil date (H. Hinnant's algorithm), vectorised.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    result: np.ndarray = days * 86400 + seconds
    return result


def _decode_chunk(
    first: int, packed: bytes, ends: np.ndarray
) -> tuple[dict[str, pa.Array], dict[str, np.ndarray], np.ndarray]:
    """Decode consecutive entries ``first, first+1, …`` column-wise.

    ``packed`` holds the entries back to back, ``ends`` where each ends in it (a block
    of `ledger.store.read_blocks`). Returns the entry columns, the subject columns, and
    a mask of entries that do not fit the layout (to be decoded one by one by the
    caller).
    """
    n = len(ends)
    data = np.frombuffer(packed + bytes(64), np.uint8)  # slack: no read overruns
    starts = np.concatenate(([0], ends[:-1]))
    lengths = ends - starts
    limit = len(data) - 40
    bad = (lengths < 30) | (data[starts] != 1) | ~np.isin(data[starts + 1], (1, 2))
    kind = data[starts + 1].astype(np.int8)
    bad |= _u16(data, starts + 2) != 20
    time_at = starts + 4
    seconds = _unix_seconds(data[time_at[:, None] + _TIME_DIGITS])
    pos = time_at + 20
    columns: dict[str, pa.Array] = {}

    def text(name: str | None) -> tuple[np.ndarray, np.ndarray]:
        nonlocal pos, bad
        pos = np.minimum(pos, limit)
        length = _u16(data, pos)
        begin = np.minimum(pos + 2, limit)
        pos = pos + 2 + length
        bad |= pos > ends
        length = np.where(bad, 0, length)
        if name is not None:
            columns[name] = _strings(data, begin, length)
        return begin, length

    text("department")
    text("principal")
    text("fact_id")
    text("fact_version")
    present = data[np.minimum(pos, limit)].astype(np.int64)
    bad |= present > 1
    at = np.minimum(pos + 1, limit)
    publication = data[at[:, None] + np.arange(8)].copy().view(">u8").ravel().astype(np.int64)
    publication_valid = present == 1
    pos = pos + 1 + 8 * np.minimum(present, 1)
    text("dataset")
    text(None)  # dataset_version
    text("service_matter")
    case_at, case_length = text("case_ref")
    columns["case_key"], columns["case_year"] = _case_columns(data, case_at, case_length)
    pos = np.minimum(pos, limit)
    outcome = data[pos].astype(np.int8)
    bad |= (outcome < 1) | (outcome > 3)
    pos = pos + 1
    text("reason")
    present = data[np.minimum(pos, limit)].astype(np.int64)
    bad |= present > 1
    pos = pos + 1 + 32 * np.minimum(present, 1)
    pos = np.minimum(pos, limit)
    pos = pos + 2 + 8 * _u16(data, pos)  # relied_on
    pos = np.minimum(pos, limit)
    count = _u16(data, pos)
    tags_at = pos + 2
    pos = tags_at + 32 * count
    bad |= pos > ends
    count = np.where(bad, 0, count)
    pos = np.minimum(pos, limit)
    pos = pos + 2 + 32 * _u16(data, pos)  # commitments
    text("embargo_until")
    bad |= pos != ends

    good_kind = np.where(bad, 0, kind)
    good_outcome = np.where(bad, 0, outcome)
    columns["t"] = pa.array(np.where(bad, 0, seconds))
    columns["kind"] = pa.DictionaryArray.from_arrays(
        pa.array(good_kind, pa.int8()), pa.array(KINDS)
    )
    columns["outcome"] = pa.DictionaryArray.from_arrays(
        pa.array(good_outcome, pa.int8()), pa.array(OUTCOMES)
    )
    columns["publication_id"] = pa.array(publication, mask=~publication_valid | bad)
    columns["n_subjects"] = pa.array(count.astype(np.int32))
    columns["idx"] = pa.array(np.arange(first, first + n, dtype=np.int64))

    total = int(count.sum())
    owner = np.repeat(np.arange(n), count)
    within = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    tag_at = tags_at[owner] + 32 * within
    prefixes = data[tag_at[:, None] + np.arange(8)].copy().view(">i8").ravel().astype(np.int64)
    subjects = {"idx": owner + first, "t": np.where(bad, 0, seconds)[owner], "tag": prefixes}
    return columns, subjects, bad


FNV_OFFSET: Final = 0xCBF29CE484222325
FNV_PRIME: Final = 0x100000001B3
_CASE_WIDTH: Final = 12  # the year of AA-YYYY-… ends by the 12th character (prefix of 2-6)


def case_key(case_ref: str) -> int:
    """A case reference's 64-bit FNV-1a hash, signed, as `LedgerFrame` holds it."""
    h = FNV_OFFSET
    for byte in case_ref.encode("ascii"):
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


def _case_columns(
    data: np.ndarray, begin: np.ndarray, length: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    """Each case reference's FNV-1a hash, and its year where it has the policy's form.

    The hash lets the rules group and join case references as integers; the year is
    the four digits between the first and second hyphen (``AA-YYYY-NNNN``, the policy's
    format), null for any other shape.
    """
    n = len(begin)
    h = np.full(n, FNV_OFFSET, np.uint64)
    prime = np.uint64(FNV_PRIME)
    for j in range(int(length.max(initial=0))):
        byte = data[begin + j].astype(np.uint64)
        h = np.where(j < length, (h ^ byte) * prime, h)
    window = data[begin[:, None] + np.arange(_CASE_WIDTH)]
    inside = np.arange(_CASE_WIDTH) < length[:, None]
    hyphen = (window == 45) & inside
    first = np.argmax(hyphen, axis=1)
    rows = np.arange(n)
    at = np.minimum(first[:, None] + np.arange(1, 6), _CASE_WIDTH - 1)
    after = window[rows[:, None], at]
    digits = after[:, :4].astype(np.int64) - 48
    ok = (
        hyphen.any(axis=1)
        & (first + 5 < length)
        & (first + 5 < _CASE_WIDTH)
        & ((digits >= 0) & (digits <= 9)).all(axis=1)
        & (after[:, 4] == 45)
    )
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    return pa.array(h.view(np.int64)), pa.array(year.astype(np.int32), mask=~ok)


_ENTRY_COLUMNS: Final = (
    "idx",
    "t",
    "kind",
    "department",
    "principal",
    "fact_id",
    "fact_version",
    "publication_id",
    "dataset",
    "service_matter",
    "case_ref",
    "case_key",
    "case_year",
    "outcome",
    "reason",
    "n_subjects",
    "embargo_until",
)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise LedgerUnreadable(f"no ledger store at {path}")
    return sqlite3.connect(f"file:{Path(path).absolute()}?mode=ro", uri=True)


def read_ledger(
    path: Path,
    *,
    start: int = 0,
    stop: int | None = None,
    chunk: int = CHUNK,
    workers: int | None = None,
) -> LedgerFrame:
    """Decode entries ``start`` up to ``stop`` (default: all) of a ledger store file.

    Read-only, straight from the store's SQLite file (see the module docstring). With
    ``workers`` > 1 the range is split between that many processes, each decoding its
    part into an Arrow IPC file that this process then maps without copying. One
    process is the default: on the 2-core development machine it decodes 10^7 entries
    in ~20 s, where two workers and their files took ~33 s; machines with idle cores
    to spare may do better with more. Raises `LedgerUnreadable` for a gap in the
    indexes, and `EntryInvalid` (from `ledger.entries.decode`) for an entry that is
    not a valid encoding.
    """
    con = _connect_read_only(path)
    try:
        high = stored_size(con)
    finally:
        con.close()
    stop = int(high) if stop is None else min(int(stop), int(high))
    count = max(0, stop - start)
    if workers is None:
        workers = 1
    if workers <= 1 or count < 2:
        return _read_range(Path(path), start, stop, chunk)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bounds = [start + count * n // workers for n in range(workers + 1)]
    with (
        tempfile.TemporaryDirectory(prefix="onceonly-audit-") as folder,
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        futures = [
            pool.submit(_read_range_to_files, str(path), lo, hi, chunk, folder)
            for lo, hi in itertools.pairwise(bounds)
        ]
        parts = [_load(*future.result()) for future in futures]
    return LedgerFrame(
        pa.concat_tables([p.entries for p in parts]),
        pa.concat_tables([p.subjects for p in parts]),
    )


def _read_range(path: Path, start: int, stop: int, chunk: int) -> LedgerFrame:
    """Decode entries ``start`` up to ``stop`` in this process."""
    from ledger.entries import decode

    con = _connect_read_only(path)
    try:
        parts: dict[str, list[pa.Array]] = {name: [] for name in _ENTRY_COLUMNS}
        subject_parts: dict[str, list[np.ndarray]] = {"idx": [], "t": [], "tag": []}
        at = start
        for first, packed, ends_blob in read_blocks(con, start, stop, entries=chunk):
            if first != at:
                break  # a gap (or a position held twice): reported below
            ends = np.frombuffer(ends_blob, ">u4").astype(np.int64)
            columns, subjects, bad = _decode_chunk(at, packed, ends)
            if bad.any():
                for i in np.flatnonzero(bad):
                    begin = int(ends[i - 1]) if i else 0
                    decode(packed[begin : int(ends[i])])  # raises EntryInvalid: what is wrong
                raise LedgerUnreadable(f"entry {at + int(np.flatnonzero(bad)[0])} is unreadable")
            for name in _ENTRY_COLUMNS:
                parts[name].append(columns[name])
            for name, values in subjects.items():
                subject_parts[name].append(values)
            at += len(ends)
        if at != stop:
            raise LedgerUnreadable(
                f"the ledger has a gap: {at - start} entries found in [{start}, {stop})"
            )
    except LedgerTampered as problem:  # a malformed segment
        raise LedgerUnreadable(str(problem)) from None
    finally:
        con.close()
    return _frame(parts, subject_parts)


def _read_range_to_files(
    path: str, start: int, stop: int, chunk: int, folder: str
) -> tuple[str, str]:
    """A worker's part: decode a range and write both tables as Arrow IPC files."""
    frame = _read_range(Path(path), start, stop, chunk)
    written = []
    for name, table in (("entries", frame.entries), ("subjects", frame.subjects)):
        target = Path(folder) / f"{name}-{start:012d}.arrow"
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
        written.append(str(target))
    return written[0], written[1]


def _load(entries: str, subjects: str) -> LedgerFrame:
    """A worker's tables, memory-mapped (the mapping outlives the file's name)."""
    return LedgerFrame(
        pa.ipc.open_file(pa.memory_map(entries)).read_all(),
        pa.ipc.open_file(pa.memory_map(subjects)).read_all(),
    )


def _frame(
    parts: dict[str, list[pa.Array]], subject_parts: dict[str, list[np.ndarray]]
) -> LedgerFrame:
    empty = {
        "idx": pa.int64(),
        "t": pa.int64(),
        "kind": pa.dictionary(pa.int8(), pa.string()),
        "publication_id": pa.int64(),
        "n_subjects": pa.int32(),
        "case_key": pa.int64(),
        "case_year": pa.int32(),
        "outcome": pa.dictionary(pa.int8(), pa.string()),
    }
    entries = pa.table(
        {
            name: _whole(pa.chunked_array(arrays, type=empty.get(name, pa.string())))
            for name, arrays in parts.items()
        }
    )
    subjects = pa.table(
        {
            name: pa.array(np.concatenate(values) if values else np.array([], np.int64))
            for name, values in subject_parts.items()
        }
    )
    return LedgerFrame(entries, subjects)


def _whole(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as one chunk, where it fits one (a string chunk holds under 2 GiB).

    Thousands of small decoded chunks would cost every later step a per-chunk toll.
    """
    if column.num_chunks <= 1 or column.nbytes >= 2**31 - 1:
        return column
    return pa.chunked_array([pa.concat_arrays(column.chunks)])


def read_home_ledger(home: Home) -> LedgerFrame:
    """Every entry of the home's ledger, as columns (`read_ledger`)."""
    home.require()
    return read_ledger(home.ledger_store)


# --- findings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing the audit found wrong: what, where (entry, publication), expected vs found."""

    check: str  # ledger / checkpoint / publication / rederivation
    what: str
    index: int | None = None
    publication: int | None = None
    expected: str = ""
    found: str = ""

    def __str__(self) -> str:
        where = []
        if self.index is not None:
            where.append(f"entry {self.index}")
        if self.publication is not None:
            where.append(f"publication {self.publication}")
        head = f"{', '.join(where)}: " if where else ""
        tail = f" (expected {self.expected}, found {self.found})" if self.expected else ""
        return f"[{self.check}] {head}{self.what}{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "what": self.what,
            "index": self.index,
            "publication": self.publication,
            "expected": self.expected,
            "found": self.found,
        }


@dataclass
class AuditReport:
    """What `verify_home` checked and found."""

    entries: int = 0
    checkpoints: int = 0
    root: str = ""
    uncovered: int = 0  # entries after the latest checkpoint (not yet witnessed)
    publications: int = 0
    answered_asks: int = 0
    rederived: int = 0
    seed: int | None = None
    sample: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "root": self.root,
            "uncovered_entries": self.uncovered,
            "publications_checked": self.publications,
            "answered_asks": self.answered_asks,
            "rederived": self.rederived,
            "seed": self.seed,
            "sample": self.sample,
            "findings": [f.to_dict() for f in self.findings],
        }

    def lines(self) -> list[str]:
        verdict = "ok" if self.ok else f"{len(self.findings)} finding(s)"
        out = [
            f"ledger: {self.entries:,} entries re-hashed, {self.checkpoints} checkpoint(s) "
            f"checked for the log's signature and the witness's cosignature, root {self.root}",
            f"publications: {self.publications} packages re-verified against the registry",
            f"re-derivation: {self.rederived:,} of {self.answered_asks:,} answered asks replayed"
            + (f" (seed {self.seed})" if self.seed is not None else ""),
        ]
        if self.uncovered:
            out.append(
                f"note: the last {self.uncovered:,} entries are not covered by a checkpoint yet"
            )
        out.append(f"verdict: {verdict}")
        out += [f"  {finding}" for finding in self.findings]
        return out


# --- verification --------------------------------------------------------------------------


def verify_home(
    home: Home,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int | None = None,
    frame: LedgerFrame | None = None,
    store: ExchangeStore | None = None,
    log: Log | None = None,
) -> AuditReport:
    """Verify the home's ledger, publications and past answers (see the module docstring).

    ``sample`` answered asks are re-derived (None: every one), drawn with ``seed``
    (default: a fresh random seed, reported, so the draw can be repeated). Never raises
    for what it finds: see `AuditReport.ok`. ``store`` and ``log``: the home's exchange
    store and ledger, already open (the serving process holds both; by default they are
    opened here, read-only).
    """
    from exchange import ledgerlink

    home.require()
    report = AuditReport()
    # 1. The ledger: entries, seals, tree, checkpoint signatures and consistency...
    verified = ledgerlink.audit(home, log=log)
    report.entries, report.checkpoints, report.root = (
        verified.entries,
        verified.checkpoints,
        verified.root.hex(),
    )
    for problem in verified.problems:
        report.findings.append(Finding("ledger", problem.what, index=problem.index))
    if verified.problem_count > len(verified.problems):
        more = verified.problem_count - len(verified.problems)
        report.findings.append(Finding("ledger", f"{more} more ledger problem(s) not listed"))
    # ... and every checkpoint cosigned by the witness.
    covered = _check_cosignatures(home, report)
    report.uncovered = max(0, report.entries - covered)
    if not verified.ok:
        return report  # the entries themselves are in doubt: nothing below can stand on them
    frame = frame if frame is not None else read_home_ledger(home)
    from exchange.store import ExchangeStore

    with contextlib.ExitStack() as owned:
        if store is None:
            store = owned.enter_context(ExchangeStore(home.exchange_db, read_only=True))
        store.con.execute("SET enable_progress_bar = false")  # stdout may be JSON
        # 2. Every publication: package, hashes, ledger entry, table.
        publications = _check_publications(home, store, frame, report)
        # 3. Re-derive answered asks from the archive.
        answered = _answered_indexes(frame)
        report.answered_asks = len(answered)
        if sample is None or sample >= len(answered):
            chosen = answered
        else:
            report.seed = secrets.randbits(32) if seed is None else seed
            chosen = sorted(random.Random(report.seed).sample(answered, sample))
        report.sample = chosen
        report.rederived = len(chosen)
        if chosen:
            _rederive(home, store, publications, chosen, report)
    return report


def _check_cosignatures(home: Home, report: AuditReport) -> int:
    """Every recorded checkpoint must carry a valid cosignature of the home's witness."""
    from exchange.ledgerlink import log_verifier, witness_verifier
    from ledger.checkpoint import verify_cosignature
    from ledger.errors import ProofError

    witness, log_key = witness_verifier(home), log_verifier(home)
    con = _connect_read_only(home.ledger_store)
    try:
        rows = con.execute("SELECT seq, size, note FROM checkpoints ORDER BY seq").fetchall()
    finally:
        con.close()
    covered = 0
    for seq, size, note in rows:
        try:
            verify_cosignature(note, witness, log_verifiers=[log_key])
        except ProofError as problem:
            report.findings.append(
                Finding(
                    "checkpoint",
                    f"checkpoint {seq} (size {size}) is not cosigned by {witness.name}: {problem}",
                )
            )
        covered = max(covered, int(size))
    return covered


def _answered_indexes(frame: LedgerFrame) -> list[int]:
    import pyarrow.compute as pc

    entries = frame.entries
    mask = pc.and_(
        pc.equal(entries.column("kind").cast(pa.string()), "ask"),
        pc.equal(entries.column("outcome").cast(pa.string()), "answered"),
    )
    return [int(i) for i in entries.filter(mask).column("idx").to_pylist()]


@dataclass(frozen=True)
class _Publication:
    id: int
    dataset: str
    version: str
    department: str
    package_dir: Path
    sound: bool  # its package verified and its table matches it


def _check_publications(
    home: Home, store: Any, frame: LedgerFrame, report: AuditReport
) -> dict[int, _Publication]:
    """Step 2: every publication against its signed package, the registry and the ledger."""
    import pyarrow.compute as pc

    from exchange.package import DATA, PackageInvalid, canonical, verify_package
    from exchange.registry import UnknownDepartment, department_key
    from exchange.store import publication_table
    from ledger.entries import decode

    # The ledger's word on each publication: its entry's manifest digest.
    entries = frame.entries
    published = entries.filter(
        pc.and_(
            pc.equal(entries.column("kind").cast(pa.string()), "publication"),
            pc.equal(entries.column("outcome").cast(pa.string()), "answered"),
        )
    )
    ledgered: dict[int, tuple[int, bytes]] = {}
    with _ledger_reader(home) as read:
        for index in published.column("idx").to_pylist():
            entry = decode(read(int(index)))
            if entry.publication_id is not None and entry.answer_digest is not None:
                ledgered[entry.publication_id] = (int(index), entry.answer_digest)

    rows = store.rows(
        "SELECT id, dataset, version, department, manifest_sha256, data_sha256, package_dir "
        "FROM publications ORDER BY id"
    )
    found: dict[int, _Publication] = {}
    for row in rows:
        pid = int(row["id"])
        report.publications += 1
        problems_before = len(report.findings)

        finding = _finder(report, pid)
        package_dir = Path(row["package_dir"])
        package = None
        try:
            package = verify_package(package_dir, department_key(store, row["department"]))
        except (PackageInvalid, UnknownDepartment) as problem:
            finding(str(problem))
        if package is not None:
            manifest_sha = hashlib.sha256(canonical(package.manifest)).hexdigest()
            if manifest_sha != row["manifest_sha256"]:
                finding(
                    "the kept manifest is not the one published",
                    row["manifest_sha256"],
                    manifest_sha,
                )
            data_sha = str(package.manifest["files"][DATA]["sha256"])
            if data_sha != row["data_sha256"]:
                finding(
                    "the package's data hash differs from the publications table",
                    row["data_sha256"],
                    data_sha,
                )
        recorded = ledgered.get(pid)
        if recorded is None:
            finding("no ledger entry records this publication")
        elif recorded[1].hex() != row["manifest_sha256"]:
            finding(
                "the ledger's manifest digest differs from the publications table",
                recorded[1].hex(),
                row["manifest_sha256"],
                index=recorded[0],
            )
        if package is not None:
            only_table, only_package = _compare_table(
                store, publication_table(pid), package_dir / DATA
            )
            if only_table or only_package:
                finding(
                    f"table {publication_table(pid)} differs from its signed package",
                    "0 rows differing",
                    f"{only_table} row(s) only in the table, {only_package} only in the package",
                )
        found[pid] = _Publication(
            pid,
            str(row["dataset"]),
            str(row["version"]),
            str(row["department"]),
            package_dir,
            sound=len(report.findings) == problems_before,
        )
    return found


def _finder(report: AuditReport, pid: int) -> Any:
    """A function that files publication ``pid``'s findings in ``report``."""

    def finding(what: str, expected: str = "", found: str = "", index: int | None = None) -> None:
        report.findings.append(Finding("publication", what, index, pid, expected, found))

    return finding


def _compare_table(store: Any, table: str, data: Path) -> tuple[int, int]:
    """Rows only in the DuckDB table, rows only in the Parquet file (multiset difference)."""
    con = store.con
    only_table = con.execute(
        f"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT ALL SELECT * FROM read_parquet(?))",
        [str(data)],
    ).fetchone()[0]
    only_package = con.execute(
        f"SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL SELECT * FROM {table})",
        [str(data)],
    ).fetchone()[0]
    return int(only_table), int(only_package)


class _LedgerReader:
    def __init__(self, path: Path) -> None:
        self._con = _connect_read_only(path)

    def __call__(self, index: int) -> bytes:
        """Entry ``index``'s bytes, checked against its stored leaf hash."""
        from ledger.merkle import leaf_hash

        row = read_entry(self._con, index)
        if row is None:
            raise LedgerUnreadable(f"no entry {index} in the ledger")
        data, leaf = bytes(row[0]), bytes(row[1])
        if leaf_hash(data) != leaf:
            raise LedgerUnreadable(f"entry {index} does not match its leaf hash")
        return data

    def close(self) -> None:
        self._con.close()


def _ledger_reader(home: Home) -> contextlib.closing[_LedgerReader]:
    return contextlib.closing(_LedgerReader(home.ledger_store))


# --- step 3: re-derivation -------------------------------------------------------------------


def _archived(home: Home, indexes: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The ask archive's records of ``indexes``: single asks from SQLite, batches from Parquet."""
    import pyarrow.parquet as pq

    from exchange.ask import archive_path

    path = archive_path(home)
    if not path.is_file():
        return {}
    wanted = sorted(set(indexes))
    found: dict[int, dict[str, Any]] = {}
    con = _connect_read_only(path)
    try:
        for lo in range(0, len(wanted), 500):
            part = wanted[lo : lo + 500]
            marks = ",".join("?" * len(part))
            for row in con.execute(
                "SELECT ledger_index, fact, params, result, relied_on, time, nonce, digest "
                f"FROM asks WHERE ledger_index IN ({marks})",
                part,
            ):
                found[int(row[0])] = dict(
                    zip(
                        (
                            "ledger_index",
                            "fact",
                            "params",
                            "result",
                            "relied_on",
                            "time",
                            "nonce",
                            "digest",
                        ),
                        row,
                        strict=True,
                    )
                )
        batches = con.execute("SELECT first_index, last_index, file FROM batches").fetchall()
    finally:
        con.close()
    missing = np.array([i for i in wanted if i not in found], np.int64)
    for first, last, name in batches:
        inside = missing[(missing >= first) & (missing <= last)]
        if not len(inside):
            continue
        table = pq.read_table(path.parent / "batches" / name)
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("ledger_index"), pa.array(inside)))
        for row in table.to_pylist():
            found[int(row["ledger_index"])] = row
    for record in found.values():
        for name in ("params", "result", "relied_on"):
            record[name] = json.loads(record[name])
    return found


def _rederive(
    home: Home,
    store: Any,
    publications: dict[int, _Publication],
    indexes: Sequence[int],
    report: AuditReport,
) -> None:
    """Step 3: replay each chosen ask against exactly the publications it relied on."""
    from exchange.facts import Fact, FactError, Source, load_fact
    from exchange.store import publication_table
    from ledger.entries import Entry, decode

    archive = _archived(home, indexes)
    groups: dict[tuple[str, tuple[int, ...], str], list[tuple[Entry, int, dict[str, Any]]]] = {}
    facts: dict[str, Fact] = {}

    def finding(
        index: int, what: str, expected: str = "", found: str = "", pub: int | None = None
    ) -> None:
        report.findings.append(Finding("rederivation", what, index, pub, expected, found))

    with _ledger_reader(home) as read:
        for index in indexes:
            entry = decode(read(index))
            kept = archive.get(index)
            assert entry.answer_digest is not None
            if kept is None:
                finding(index, "the ask archive holds no question for this answered ask")
                continue
            if kept["digest"] != entry.answer_digest.hex():
                finding(
                    index,
                    "the archive's digest is not the ledger's",
                    entry.answer_digest.hex(),
                    str(kept["digest"]),
                )
            if kept["time"] != entry.time:
                finding(
                    index, "the archive's time is not the ledger's", entry.time, str(kept["time"])
                )
            if tuple(sorted(kept["relied_on"])) != entry.relied_on:
                finding(
                    index,
                    "the archive's publications are not the ledger's",
                    _ids(entry.relied_on),
                    _ids(kept["relied_on"]),
                )
            ref = f"{entry.fact_id}@{entry.fact_version}"
            if kept["fact"] != ref:
                finding(index, "the archive's fact is not the ledger's", ref, str(kept["fact"]))
            try:
                facts[ref] = facts.get(ref) or load_fact(entry.fact_id, entry.fact_version)
            except FactError:
                finding(index, f"fact {ref} is no longer declared: the answer cannot be replayed")
                continue
            groups.setdefault((ref, entry.relied_on, entry.time[:10]), []).append(
                (entry, index, kept)
            )

    con = store.con.cursor()
    for (ref, relied_on, day), members in groups.items():
        fact = facts[ref]
        sources: dict[str, Source] = {}
        missing = [pid for pid in relied_on if pid not in publications]
        for pid in relied_on:
            if pid in publications:
                pub = publications[pid]
                sources[pub.dataset] = Source(pub.dataset, pid, pub.version, publication_table(pid))
        uncovered = [r.dataset for r in fact.reads if r.dataset not in sources]
        if missing or uncovered:
            for _, index, _ in members:
                finding(
                    index,
                    "the publications relied on cannot be pinned "
                    + (
                        f"(unknown: {_ids(missing)})" if missing else f"(no {', '.join(uncovered)})"
                    ),
                )
            continue
        pinned = [sources[r.dataset] for r in fact.reads]
        results = _replay(con, fact, [kept["params"] for _, _, kept in members], pinned, day)
        for (entry, index, kept), result in zip(members, results, strict=True):
            if isinstance(result, _Unfit):
                finding(index, f"the archived parameters no longer fit {ref}")
                continue
            digest = _digest(fact, kept, result)
            assert entry.answer_digest is not None
            if digest == entry.answer_digest:
                if result != kept["result"]:
                    finding(
                        index,
                        "the archive's answer is not the one re-derived and ledgered",
                        json.dumps(result),
                        json.dumps(kept["result"]),
                    )
                continue
            if result != kept["result"]:
                blame = _blame(con, fact, kept, pinned, publications, day, entry.answer_digest)
                cause = (
                    f"publication {blame}'s table no longer answers as its signed package"
                    if blame
                    else "no publication's signed package restores it: the archived question"
                    " or the data changed"
                )
                finding(
                    index,
                    f"{ref} re-derived from publications {_ids(relied_on)} gives another "
                    f"answer; {cause}",
                    json.dumps(kept["result"]),
                    json.dumps(result),
                    pub=blame,
                )
            else:
                finding(
                    index,
                    "the recomputed answer digest is not the ledgered one "
                    "(the archived question or nonce was altered)",
                    entry.answer_digest.hex(),
                    digest.hex(),
                )


class _Unfit:
    """A placeholder result: the archived parameters do not fit the fact contract."""


def _replay(
    con: Any, fact: Any, params: list[dict[str, Any]], sources: list[Any], day: str
) -> list[object]:
    """Answers for archived questions, one query for the group (as `ask_batch` asks)."""
    import pyarrow.compute as pc

    from exchange.ask import _jsonable
    from exchange.facts import evaluate, parameter_table, result_column

    table, ok = parameter_table(fact, params, today=dt.date.fromisoformat(day))
    fits = ok.to_pylist()
    good = pc.filter(table, ok)
    good = good.set_column(0, "_n", pa.array(range(good.num_rows), pa.int64()))
    answers: list[object] = []
    if good.num_rows:
        answered = evaluate(con, fact, good, sources)
        answers = [_jsonable(v) for v in result_column(fact, answered.column("answer")).to_pylist()]
    it: Iterator[object] = iter(answers)
    return [next(it) if fit else _Unfit() for fit in fits]


def _digest(fact: Any, kept: dict[str, Any], result: object) -> bytes:
    from exchange.ask import answer_digest, canonical_answer

    canonical = canonical_answer(
        fact.ref, kept["params"], result, tuple(kept["relied_on"]), str(kept["time"])
    )
    return answer_digest(canonical, bytes.fromhex(str(kept["nonce"])))


def _blame(
    con: Any,
    fact: Any,
    kept: dict[str, Any],
    sources: list[Any],
    publications: dict[int, _Publication],
    day: str,
    ledgered: bytes,
) -> int | None:
    """The publication whose signed package, read in place of its table, restores the answer."""
    import pyarrow.parquet as pq

    from exchange.facts import Source
    from exchange.package import DATA

    for n, source in enumerate(sources):
        data = publications[source.publication_id].package_dir / DATA
        if not data.is_file():
            continue
        name = f"_audit_package_{source.publication_id}"
        con.register(name, pq.read_table(data))
        try:
            swapped = [
                *sources[:n],
                Source(source.dataset, source.publication_id, source.version, name),
                *sources[n + 1 :],
            ]
            result = _replay(con, fact, [kept["params"]], swapped, day)[0]
        finally:
            con.unregister(name)
        if not isinstance(result, _Unfit) and _digest(fact, kept, result) == ledgered:
            return int(source.publication_id)
    return None


def _ids(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values) or "none"
