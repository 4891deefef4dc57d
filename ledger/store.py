"""The ledger's durable store: entries, their hashes and checkpoints in one SQLite file.

Layout (``PRAGMA user_version = 2``)::

    entries(idx INTEGER PRIMARY KEY,  -- position in the log, 0 .. n-1
            data BLOB,                -- the entry's bytes (ledger.entries.encode)
            leaf BLOB,                -- RFC 6962 leaf hash SHA-256(0x00 || data)
            seal BLOB)                -- SHA-256("onceonly-ledger-row-v1" 0x00 || u64 idx || leaf)
    segments(first INTEGER PRIMARY KEY,  -- position of its first entry
             count INTEGER,              -- how many consecutive entries it holds
             data BLOB,                  -- their bytes, back to back
             ends BLOB,                  -- u32 big-endian: where each one ends in data
             leaves BLOB,                -- their leaf hashes, 32 bytes each
             seal BLOB)                  -- SHA-256("onceonly-ledger-segment-v1" 0x00 ||
                                         --         u64 first || u64 count || ends || leaves)
    checkpoints(seq INTEGER PRIMARY KEY, size INTEGER, root BLOB, note TEXT)

Every position 0 .. n-1 is held by exactly one row or one segment, no gaps. Entries
appended one by one (asks) are rows; an append of many at once (a caseload's
`append_many`, at least `SEGMENT_MIN` entries) is written as segments of up to
`SEGMENT_ENTRIES`: a million-entry caseload is a few hundred SQLite rows rather than a
million, which is most of what made it slow. The entries, their leaf hashes and the
tree are the same whichever way they are stored. (Format 1 had no segments; such a
file gains the table when opened for writing.)

(``idx`` rather than ``index``, an SQL keyword.) The seal binds a row or segment to its
position: without it, two rows swapped whole would each still hash correctly and only a
checkpoint root would notice, without saying where. It needs no key, so it guards
against damage and naive edits, not against someone who rewrites rows and seals alike:
that is what the signed checkpoints (and the witnesses holding copies of them) are for.
Entries appended since the last checkpoint can be cut off the end unnoticed until a
checkpoint or a witness covers them; checkpoint often.

`read_entries`, `read_blocks`, `read_entry`, `stored_size` and `entries_containing` read
a store file through any SQLite connection (read-only ones included), for the readers
outside this module (audit, citizen search) that must not know the layout.

Interior tree hashes are not stored. On open the store reads the leaf hashes and
rebuilds a `ledger.merkle.MerkleTree` (about two hashes' memory per leaf; reopening
10^5 entries took about 0.15 s on the 2-core development machine): one source of truth,
nothing else on disk that could disagree. Then it fails closed: a gap in the indexes, a
malformed leaf hash, or a latest checkpoint whose root is not the tree's root at that
size raises `LedgerTampered` and the store does not open. Opening does not rehash the
entries themselves (that is O(total bytes)); `entry` rehashes each one it serves and
refuses a mismatch, and `verify` (or `verify_store`, for a store that no longer opens)
rehashes everything, checks every seal and every checkpoint, and names the first bad
index.

Durability: WAL journal, ``synchronous=FULL``, so a transaction is on disk when COMMIT
returns. One sequencer thread owns the writing connection (one writer; a lock file
keeps a second `LedgerStore` off the same file, in this process or another). Callers
of `append` queue their entry and wait; the sequencer takes everything queued, writes
it in one transaction, commits (one fsync for the lot: group commit), then extends the
in-memory tree and hands out the indexes. An index is never returned for an entry that
is not durable. If a commit fails, every caller in that batch gets the exception and the
store takes no more writes (`StoreFailed`) until it is reopened: after a failed fsync
the page cache cannot be trusted to say what reached the disk, and reopening reads what
actually did. Such an entry may still turn out to be on disk after reopening; the
ledger can over-record an answer that never left, never under-record one that did.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import itertools
import os
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ledger import proofs
from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, LEAF_PREFIX, MerkleTree, leaf_hash

__all__ = [
    "SEAL_DOMAIN",
    "CheckpointCheck",
    "CheckpointMismatch",
    "LedgerStore",
    "LedgerTampered",
    "Problem",
    "StoreBusy",
    "StoreClosed",
    "StoreFailed",
    "StoredCheckpoint",
    "VerifyReport",
    "entries_containing",
    "read_blocks",
    "read_entries",
    "read_entry",
    "row_seal",
    "segment_seal",
    "stored_size",
    "verify_store",
]

STORE_FORMAT: Final = 2
SEAL_DOMAIN: Final = b"onceonly-ledger-row-v1\x00"
SEGMENT_DOMAIN: Final = b"onceonly-ledger-segment-v1\x00"
SEGMENT_MIN: Final = 64  # an append of at least this many entries is stored as segments
SEGMENT_ENTRIES: Final = 4096  # entries per segment at most (~1 MiB for asks)
SEGMENT_BYTES: Final = 64 << 20  # entry bytes per segment at most (u32 ends, SQLite blobs)
MAX_ENTRY_BYTES: Final = 1 << 20
MAX_REPORTED_PROBLEMS: Final = 100

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_END: Final = (1 << 63) - 1  # past every index

PAGE_SIZE: Final = 16384

_SEGMENTS = """
CREATE TABLE segments (
    first  INTEGER PRIMARY KEY,
    count  INTEGER NOT NULL,
    data   BLOB NOT NULL,
    ends   BLOB NOT NULL,
    leaves BLOB NOT NULL,
    seal   BLOB NOT NULL
)"""

_SCHEMA = f"""
CREATE TABLE entries (
    idx  INTEGER PRIMARY KEY,
    data BLOB NOT NULL,
    leaf BLOB NOT NULL,
    seal BLOB NOT NULL
);
{_SEGMENTS};
CREATE TABLE checkpoints (
    seq  INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL
);
"""


class LedgerTampered(LedgerError):
    """The stored log contradicts itself or its checkpoint: the store refuses to serve it."""


class StoreBusy(LedgerError):
    """Another `LedgerStore` (in this process or another) already writes this file."""


class StoreClosed(LedgerError):
    """The store was closed; it takes no more writes."""


class StoreFailed(LedgerError):
    """An earlier commit failed; the store takes no writes until it is reopened."""


class CheckpointMismatch(LedgerError):
    """A checkpoint to record does not describe this log (size or root) or goes backwards."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint as recorded: tree size, root, and the signed note's text."""

    size: int
    root: bytes
    note: str


CheckpointCheck = Callable[[StoredCheckpoint], None]
"""Checks a recorded checkpoint's note (signature, that it states this size and root);
raises `LedgerError` to reject it. `ledger.checkpoint` provides the real one."""


def row_seal(index: int, leaf: bytes) -> bytes:
    """Return the seal of the row at ``index`` holding ``leaf``: binds the row to its place."""
    return hashlib.sha256(SEAL_DOMAIN + _U64.pack(index) + leaf).digest()


def segment_seal(first: int, count: int, ends: bytes, leaves: bytes) -> bytes:
    """Return the seal of the segment of entries ``first`` .. ``first + count - 1``."""
    return hashlib.sha256(
        SEGMENT_DOMAIN + _U64.pack(first) + _U64.pack(count) + ends + leaves
    ).digest()


# --- reading any store file -----------------------------------------------------------

# Every stored piece of the log overlapping [?1, ?2), in index order: (first index,
# count, data, ends, leaf hash(es), seal), ``ends`` NULL for a row. SQLite merges the
# two tables' rowid-ordered scans; nothing is sorted.
_PIECES = (
    "SELECT idx, 1, data, NULL, leaf, seal FROM entries WHERE idx >= ?1 AND idx < ?2 "
    "UNION ALL SELECT first, count, data, ends, leaves, seal FROM segments "
    "WHERE first < ?2 AND first + count > ?1 ORDER BY 1"
)
_ROW_PIECES = (  # a file without the segments table (format 1): rows only
    "SELECT idx, 1, data, NULL, leaf, seal FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY 1"
)


class _Malformed(Exception):
    """A segment whose parts do not fit together (callers say it in their own terms)."""


def _tampered(first: int, problem: _Malformed) -> LedgerTampered:
    """What a reader raises for the malformed segment at ``first``."""
    return LedgerTampered(f"the segment at entry {first} is malformed: {problem}")


def _has_segments(con: sqlite3.Connection) -> bool:
    # The table itself, not the format number: a file whose number was set back to 1
    # must not hide its segments from the readers and from verify.
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'segments'"
    ).fetchone()
    return found is not None


def _pieces(con: sqlite3.Connection, start: int, stop: int) -> sqlite3.Cursor:
    return con.execute(_PIECES if _has_segments(con) else _ROW_PIECES, (start, stop))


def _segment_ends(count: object, data: object, ends: object) -> tuple[int, ...]:
    """Where each of a segment's entries ends in its data; `_Malformed` if they don't fit."""
    if type(count) is not int or count < 1:
        raise _Malformed(f"its count {count!r} is not a positive integer")
    if type(data) is not bytes or type(ends) is not bytes:
        raise _Malformed("its data and ends are not both blobs")
    if len(ends) != 4 * count:
        raise _Malformed(f"its ends are not {count} long")
    stops = struct.unpack(f">{count}I", ends)
    starts = (0, *stops[:-1])
    if stops[-1] != len(data) or not all(a < b for a, b in zip(starts, stops, strict=True)):
        raise _Malformed("its ends do not cut its data into non-empty entries")
    return stops


def _split(
    count: object, data: object, ends: object, leaves: object
) -> tuple[list[bytes], list[bytes]]:
    """A segment's entries and their stored leaf hashes; `_Malformed` if its parts don't fit."""
    stops = _segment_ends(count, data, ends)
    if type(leaves) is not bytes or len(leaves) != HASH_SIZE * len(stops):
        raise _Malformed(f"its leaf hashes are not {len(stops)} long")
    assert type(data) is bytes
    return (
        [data[a:b] for a, b in zip((0, *stops[:-1]), stops, strict=True)],
        [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)],
    )


def read_entries(
    con: sqlite3.Connection, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, bytes, bytes]]:
    """(index, bytes, stored leaf hash) of each stored entry in [start, stop), in order.

    Nothing is checked against its hash here, and a gap shows only as an index that is
    not there: a caller that needs the log whole compares the indexes. A segment whose
    parts do not fit together raises `LedgerTampered`.
    """
    end = _END if stop is None else stop
    for first, count, data, ends, leaf, _seal in _pieces(con, start, end):
        if ends is None:
            yield first, data, leaf
            continue
        try:
            items, leaves = _split(count, data, ends, leaf)
        except _Malformed as problem:
            raise _tampered(first, problem) from None
        lo, hi = max(start - first, 0), min(end - first, len(items))
        yield from zip(range(first + lo, first + hi), items[lo:hi], leaves[lo:hi], strict=True)


def read_blocks(
    con: sqlite3.Connection,
    start: int = 0,
    stop: int | None = None,
    *,
    entries: int = 65536,
) -> Iterator[tuple[int, bytes, bytes]]:
    """The stored entries in [start, stop) as blocks of consecutive ones, in order.

    Each block is (its first index, the entries' bytes back to back, where each one
    ends in them as u32 big-endian offsets), of up to about ``entries`` entries and
    `SEGMENT_BYTES` bytes: segments' bytes pass through as stored, rows are joined.
    What a column-wise decoder wants (`exchange.audit`). Unchecked, as `read_entries`:
    a gap or a position held twice shows as a block that does not start where the one
    before it ended.
    """
    end = _END if stop is None else stop
    if end <= start:
        return  # nothing, as `read_entries` (a segment overlapping both would not fit)
    parts: list[bytes] = []
    offsets: list[int] = []  # where each entry ends, from the block's first byte
    first = size = 0

    def block() -> tuple[int, bytes, bytes]:
        return first, b"".join(parts), struct.pack(f">{len(offsets)}I", *offsets)

    stops: tuple[int, ...]
    for at, count, data, ends, _leaf, _seal in _pieces(con, start, end):
        if ends is None:
            if type(data) is not bytes:
                raise LedgerTampered(f"entry {at} is not a blob")
            lo, stops = 0, (len(data),)
        else:
            try:
                stops = _segment_ends(count, data, ends)
            except _Malformed as problem:
                raise _tampered(at, problem) from None
            lo = max(start - at, 0)
            stops = stops[: min(end - at, len(stops))]
        below = stops[lo - 1] if lo else 0
        adding = stops[-1] - below
        if offsets and (
            at + lo != first + len(offsets)
            or len(offsets) >= entries
            or size + adding > SEGMENT_BYTES
        ):
            yield block()
            parts, offsets, size = [], [], 0
        if not offsets:
            first = at + lo
        assert type(data) is bytes
        parts.append(data if lo == 0 and adding == len(data) else data[below : stops[-1]])
        offsets += [size + e - below for e in stops[lo:]]
        size += adding
    if offsets:
        yield block()


def read_entry(con: sqlite3.Connection, index: int) -> tuple[bytes, bytes] | None:
    """(bytes, stored leaf hash) of entry ``index``, or None if the store holds none.

    Unchecked, as `read_entries`. From a segment only the entry's own bytes are read.
    """
    row = con.execute("SELECT data, leaf FROM entries WHERE idx = ?", (index,)).fetchone()
    if row is not None or not _has_segments(con):
        return None if row is None else (row[0], row[1])
    found = con.execute(
        "SELECT first, count, ends FROM segments WHERE first <= ? ORDER BY first DESC LIMIT 1",
        (index,),
    ).fetchone()
    if found is None or type(found[1]) is not int or index - found[0] >= found[1]:
        return None
    first, count, ends = found
    k = index - first
    if type(ends) is not bytes or len(ends) != 4 * count:
        raise LedgerTampered(f"the segment at entry {first} is malformed: its ends")
    lo = _U32.unpack_from(ends, 4 * (k - 1))[0] if k else 0
    hi = _U32.unpack_from(ends, 4 * k)[0]
    if hi <= lo:
        raise LedgerTampered(f"the segment at entry {first} is malformed: its ends")
    data, leaf = con.execute(
        "SELECT substr(data, ?, ?), substr(leaves, ?, ?) FROM segments WHERE first = ?",
        (lo + 1, hi - lo, HASH_SIZE * k + 1, HASH_SIZE, first),
    ).fetchone()
    return data, leaf


def stored_size(con: sqlite3.Connection) -> int:
    """One past the highest stored index (the log's size, if it has no gap)."""
    (rows,) = con.execute("SELECT coalesce(max(idx) + 1, 0) FROM entries").fetchone()
    if not _has_segments(con):
        return int(rows)
    (segments,) = con.execute("SELECT coalesce(max(first + count), 0) FROM segments").fetchone()
    return max(int(rows), int(segments))


def entries_containing(
    con: sqlite3.Connection, needles: Sequence[bytes]
) -> list[tuple[int, bytes, bytes]]:
    """(index, bytes, stored leaf hash) of every entry holding any of ``needles``, in order.

    SQLite's ``instr`` finds the rows and segments; a segment's entries are then
    searched one by one. Unchecked, as `read_entries`.
    """
    if not needles:
        return []
    where = " OR ".join(["instr(data, ?) > 0"] * len(needles))
    found = con.execute(f"SELECT idx, data, leaf FROM entries WHERE {where}", needles).fetchall()
    if _has_segments(con):
        for first, count, data, ends, leaves in con.execute(
            f"SELECT first, count, data, ends, leaves FROM segments WHERE {where}", needles
        ):
            try:
                items, hashes = _split(count, data, ends, leaves)
            except _Malformed as problem:
                raise _tampered(first, problem) from None
            found.extend(
                (first + k, item, hashes[k])
                for k, item in enumerate(items)
                if any(needle in item for needle in needles)
            )
    return sorted(found, key=lambda row: int(row[0]))


# --- verification -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store; ``index`` is the first entry concerned, if known."""

    index: int | None
    what: str

    def __str__(self) -> str:
        return self.what if self.index is None else f"entry {self.index}: {self.what}"


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found.

    ``entries``: one past the highest stored index; ``root``: the root recomputed from
    the entries' bytes over the gap-free start of the log; ``checkpoints``: how many
    were checked; ``problems``: the first `MAX_REPORTED_PROBLEMS` found, in log order;
    ``problem_count``: all of them; ``first_bad_index``: the lowest entry index any
    problem names (None when none does, e.g. a checkpoint root alone disagrees).
    """

    entries: int
    root: bytes
    checkpoints: int
    problems: tuple[Problem, ...] = ()
    problem_count: int = 0
    first_bad_index: int | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return self.problem_count == 0

    def raise_if_bad(self) -> None:
        """Raise `LedgerTampered` naming the first bad index and the first problem."""
        if self.ok:
            return
        first = self.first_bad_index
        named = [p for p in self.problems if first is not None and p.index == first]
        lead = named[0] if named else self.problems[0]
        raise LedgerTampered(f"{lead} ({self.problem_count} problem(s) in all)")

    def lines(self) -> list[str]:
        """The report as lines of text, for a CLI."""
        head = (
            f"{self.entries} entries, {self.checkpoints} checkpoints, root {self.root.hex()}: "
            + ("ok" if self.ok else f"{self.problem_count} problem(s)")
        )
        rest = [f"  {p}" for p in self.problems]
        if self.problem_count > len(self.problems):
            rest.append(f"  … and {self.problem_count - len(self.problems)} more")
        return [head, *rest]


class _Problems:
    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.count = 0
        self.first_index: int | None = None

    def add(self, index: int | None, what: str) -> None:
        self.count += 1
        if index is not None and (self.first_index is None or index < self.first_index):
            self.first_index = index
        if len(self.kept) < MAX_REPORTED_PROBLEMS:
            self.kept.append(Problem(index, what))


def _verify_row(
    found: _Problems,
    idx: int,
    data: object,
    leaf: object,
    seal: object,
    leaves: list[bytes] | None,
) -> bool:
    """Check one row; add its recomputed leaf hash to ``leaves`` (the intact prefix's).

    Returns whether the prefix is still intact after it.
    """
    # 2. The entry's bytes hash to the stored leaf hash.
    recomputed: bytes | None = None
    if type(data) is not bytes:
        found.add(idx, f"data is {type(data).__name__}, not a blob")
    else:
        recomputed = leaf_hash(data)
    if type(leaf) is not bytes or len(leaf) != HASH_SIZE:
        size = len(leaf) if isinstance(leaf, bytes | str) else "?"
        found.add(idx, f"stored leaf hash is malformed ({type(leaf).__name__}, {size} long)")
    elif recomputed is not None and recomputed != leaf:
        found.add(idx, "stored leaf hash does not match the entry's data")
    # 3. The seal binds this leaf hash to this index (catches moved rows).
    if type(leaf) is not bytes or type(seal) is not bytes or row_seal(idx, leaf) != seal:
        found.add(idx, "row seal does not match its index and leaf hash (row moved or altered)")
    if leaves is None or recomputed is None:
        return False
    leaves.append(recomputed)
    return True


def _verify_connection(
    con: sqlite3.Connection,
    checkpoint_check: CheckpointCheck | None,
    served: tuple[int, bytes] | None = None,
) -> VerifyReport:
    """Check everything the store holds, on one read snapshot of ``con``.

    ``served`` is (size, root) of the tree an open store answers from, if any.
    """
    found = _Problems()
    # Leaf hashes recomputed from the entries, over the gap-free prefix of the log.
    leaves: list[bytes] = []
    prefix_ok = True
    expected = 0
    for first, count, data, ends, leaf, seal in _pieces(con, 0, _END):
        # 1. Positions run 0, 1, 2, ... with no gaps (a deleted row leaves one) and no
        #    position held twice.
        if first < expected:
            what = "a row" if ends is None else "a segment"
            found.add(expected, f"{what} has index {first}, which is not a log position")
            continue
        if first > expected:
            missing = (
                f"entry {expected}" if first == expected + 1 else f"entries {expected}..{first - 1}"
            )
            found.add(expected, f"{missing} missing (next stored index is {first})")
            prefix_ok = False
        if ends is None:
            expected = first + 1
            prefix_ok = _verify_row(found, first, data, leaf, seal, leaves if prefix_ok else None)
            continue
        # A segment: its parts fit, its seal binds them to its position, and each entry
        # hashes to its stored leaf hash, as a row's does.
        expected = first + (count if type(count) is int and count > 0 else 1)
        try:
            items, stored = _split(count, data, ends, leaf)
        except _Malformed as problem:
            found.add(first, f"the segment here is malformed: {problem}")
            prefix_ok = False
            continue
        assert type(ends) is bytes and type(leaf) is bytes
        if type(seal) is not bytes or segment_seal(first, len(items), ends, leaf) != seal:
            found.add(
                first,
                "segment seal does not match its position, ends and leaf hashes"
                " (segment moved or altered)",
            )
        recomputed = [leaf_hash(item) for item in items]
        for k in itertools.compress(range(len(items)), map(bytes.__ne__, recomputed, stored)):
            found.add(first + k, "stored leaf hash does not match the entry's data")
        if prefix_ok:
            leaves.extend(recomputed)
    tree = MerkleTree(leaves)

    # 4. Every checkpoint: sizes never shrink, each covers entries the store holds, each
    #    root is the root of the recomputed tree at its size, and its note checks out.
    checked = 0
    last_size, last_good = 0, 0
    for seq, size, root, note in con.execute(
        "SELECT seq, size, root, note FROM checkpoints ORDER BY seq"
    ):
        checked += 1
        name = f"checkpoint {seq}"
        if type(size) is not int or size < 0:
            found.add(None, f"{name}: size {size!r} is not a tree size")
            continue
        if type(root) is not bytes or len(root) != HASH_SIZE:
            found.add(None, f"{name}: root is not a {HASH_SIZE}-byte hash")
            continue
        if size < last_size:
            found.add(None, f"{name}: size {size} shrinks the log from {last_size}")
        last_size = max(last_size, size)
        if size > len(tree):
            found.add(
                len(tree),
                f"{name} covers {size} entries but only {len(tree)} are intact from the start",
            )
        elif tree.root(size) != root:
            # A rewrite consistent row by row: only the checkpoints can bound where.
            found.add(
                None,
                f"{name}: the root of the first {size} entries differs from the checkpoint "
                f"(a change at or after entry {last_good})",
            )
        else:
            last_good = max(last_good, size)
        if checkpoint_check is not None and type(note) is str:
            try:
                checkpoint_check(StoredCheckpoint(size, root, note))
            except LedgerError as problem:
                found.add(None, f"{name}: note rejected: {problem}")
        elif type(note) is not str:
            found.add(None, f"{name}: note is not text")
    # 5. The open store's tree (built at open, grown by commits) is still what is on disk.
    if served is not None:
        served_size, served_root = served
        if served_size > len(tree):
            found.add(len(tree), f"entry {len(tree)}, acknowledged by this store, is not intact")
        elif tree.root(served_size) != served_root:
            found.add(None, f"the first {served_size} entries on disk are not the ones served")
    return VerifyReport(
        entries=expected,
        root=tree.root(),
        checkpoints=checked,
        problems=tuple(found.kept),
        problem_count=found.count,
        first_bad_index=found.first_index,
    )


def verify_store(path: Path, *, checkpoint_check: CheckpointCheck | None = None) -> VerifyReport:
    """Verify the store at ``path`` read-only, even one that no longer opens; never writes.

    Returns the report (see `LedgerStore.verify`); raises `LedgerError` only when the
    file is not a ledger store at all.
    """
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"no ledger store at {path}")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        _check_format(con, path)
        con.execute("BEGIN")
        try:
            return _verify_connection(con, checkpoint_check)
        finally:
            con.execute("COMMIT")
    except sqlite3.DatabaseError as problem:
        raise LedgerError(f"cannot read ledger store {path}: {problem}") from problem
    finally:
        con.close()


def _check_format(
    con: sqlite3.Connection, path: Path, *, formats: tuple[int, ...] = (1, 2)
) -> None:
    (version,) = con.execute("PRAGMA user_version").fetchone()
    if version not in formats:
        raise LedgerError(f"{path} is not a ledger store of format {STORE_FORMAT} ({version})")


# --- the store ----------------------------------------------------------------------


class _Done:
    """A job's outcome, from the sequencer to the one caller waiting for it.

    The part of `concurrent.futures.Future` the store uses (``set_result``,
    ``set_exception``, ``done``, ``result``) on one lock taken at creation: the caller
    blocks taking it again, the sequencer releases it once, after setting the outcome.
    A Future builds a condition and a waiter lock per wait; single appends pay for
    that thousands of times a second. Only the sequencer sets an outcome, once.
    """

    __slots__ = ("_done", "_error", "_lock", "_result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False
        self._result: list[int] = []
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done  # not the lock: a woken caller holds it for a moment

    def set_result(self, result: list[int]) -> None:
        self._result, self._done = result, True
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error, self._done = error, True
        self._lock.release()

    def result(self) -> list[int]:
        with self._lock:  # held until the sequencer releases it: the outcome is set
            pass
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class _Job:
    """Queued work for the sequencer: entries to append, or one checkpoint to record."""

    items: Sequence[bytes] = ()
    checkpoint: StoredCheckpoint | None = None
    done: _Done = field(default_factory=_Done)
    placed: Callable[[int], None] | None = None  # see `append_many`


class LedgerStore:
    """The ledger on disk: group-committed appends, the Merkle tree, proofs, checkpoints.

    Open with ``LedgerStore(path)`` (the file is created if missing; its folder must
    exist) and `close` it, or use it as a context manager. Thread-safe: any number of
    threads may append and read at once.

    A failed commit reaches every caller in its batch as `StoreFailed` (the cause
    chained), and every later write raises `StoreFailed` too, until reopened.

    ``before_commit`` is called by the sequencer with the batch's entry count just
    before each commit; if it raises, the commit fails (a test's failing disk).
    ``checkpoint_check`` is run on the latest checkpoint when opening. ``max_batch``
    bounds the entries per transaction (a larger `append_many` gets one of its own);
    ``max_wait`` (seconds) bounds how long the sequencer waits for more callers once
    the last commit showed several (its batch plus those queued behind it).
    """

    def __init__(
        self,
        path: Path,
        *,
        before_commit: Callable[[int], None] | None = None,
        checkpoint_check: CheckpointCheck | None = None,
        max_batch: int = 4096,
        max_wait: float = 0.002,
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait not negative")
        self.path = Path(path)
        self._before_commit = before_commit
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._lock_fd: int | None = _lock_writer(self.path)
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            self._writer = self._connect_writer()
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._reader.execute("PRAGMA query_only = ON")
            self._tree = self._load_tree()
            self._size = len(self._tree)  # durable entries: the tree never serves past it
            self._latest = self._load_latest()
            if self._latest is not None:
                self._check_against(self._latest, checkpoint_check)
        except BaseException:
            self._close_connections()
            raise
        # _tree_lock guards the tree (readers vs the sequencer extending it); _reader_lock
        # the reading connection; _cond the queue and the open/failed state.
        self._tree_lock = threading.Lock()
        self._reader_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._closing = False
        self._failure: BaseException | None = None
        self._callers = 1  # how many callers the last commit showed; see _take_batch
        self._wake_at = 1  # the queue length at which `_submit` wakes the sequencer
        self._sequencer = threading.Thread(
            target=self._run, name=f"ledger-sequencer:{self.path.name}", daemon=True
        )
        self._sequencer.start()

    # --- opening --------------------------------------------------------------------

    def _connect_writer(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # Larger pages for a new file (a no-op on an existing one): a caseload appends
            # a million ~250-byte rows at once, and 16 KiB pages cut its B-tree work.
            con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"{self.path}: SQLite refused WAL mode ({mode})")
            con.execute("PRAGMA synchronous = FULL")
            con.execute("PRAGMA busy_timeout = 5000")
            con.execute("BEGIN IMMEDIATE")
            try:
                (version,) = con.execute("PRAGMA user_version").fetchone()
                if version == 0:
                    # A fresh file. CREATE TABLE (not IF NOT EXISTS) fails on a foreign one.
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version = {STORE_FORMAT}")
                elif version == 1:  # format 1 had no segments: add the (empty) table
                    con.execute(_SEGMENTS)
                    con.execute(f"PRAGMA user_version = {STORE_FORMAT}")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            _check_format(con, self.path, formats=(STORE_FORMAT,))
            if not _has_segments(con):
                raise LedgerTampered(f"{self.path} has lost its segments table; run verify")
        except sqlite3.DatabaseError as problem:
            con.close()
            raise LedgerError(f"cannot open ledger store {self.path}: {problem}") from problem
        except BaseException:
            con.close()
            raise
        return con

    def _load_tree(self) -> MerkleTree:
        assert self._reader is not None
        leaves: list[bytes] = []
        # Rows (a NULL count marks one) and segments in index order: leaf hashes only.
        for first, count, stored in self._reader.execute(
            "SELECT idx, NULL, leaf FROM entries UNION ALL "
            "SELECT first, count, leaves FROM segments ORDER BY 1"
            if _has_segments(self._reader)
            else "SELECT idx, NULL, leaf FROM entries ORDER BY 1"
        ):
            if first != len(leaves):
                what = "is missing" if first > len(leaves) else "is stored twice"
                raise LedgerTampered(f"entry {len(leaves)} {what} in {self.path}; run verify")
            if count is None:
                if type(stored) is not bytes or len(stored) != HASH_SIZE:
                    raise LedgerTampered(
                        f"entry {first}: stored leaf hash is malformed; run verify"
                    )
                leaves.append(stored)
            elif type(count) is int and type(stored) is bytes and len(stored) == HASH_SIZE * count:
                leaves.extend(stored[i : i + HASH_SIZE] for i in range(0, len(stored), HASH_SIZE))
            else:
                raise LedgerTampered(f"the segment at entry {first} is malformed; run verify")
        return MerkleTree(leaves)

    def _load_latest(self) -> StoredCheckpoint | None:
        assert self._reader is not None
        row = self._reader.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        size, root, note = row
        if type(size) is not int or type(root) is not bytes or type(note) is not str:
            raise LedgerTampered(f"the latest checkpoint in {self.path} is malformed")
        return StoredCheckpoint(size, root, note)

    def _check_against(self, checkpoint: StoredCheckpoint, check: CheckpointCheck | None) -> None:
        if checkpoint.size > len(self._tree):
            raise LedgerTampered(
                f"the latest checkpoint covers {checkpoint.size} entries but {self.path} holds "
                f"{len(self._tree)}: entry {len(self._tree)} onwards is missing"
            )
        if self._tree.root(checkpoint.size) != checkpoint.root:
            raise LedgerTampered(
                f"the tree of the first {checkpoint.size} entries in {self.path} does not have "
                "the latest checkpoint's root; run verify"
            )
        if check is not None:
            try:
                check(checkpoint)
            except LedgerError as problem:
                raise LedgerTampered(f"the latest checkpoint is rejected: {problem}") from problem

    # --- writing --------------------------------------------------------------------

    def append(self, data: bytes) -> int:
        """Append one entry; return its index once it is durable (group-committed)."""
        return self._submit(_Job(items=[_check_entry_bytes(data)]))[0]

    def append_many(
        self, items: Sequence[bytes], *, placed: Callable[[int], None] | None = None
    ) -> list[int]:
        """Append entries in one transaction, at consecutive indexes; return them once durable.

        At least `SEGMENT_MIN` of them are stored as segments (see the module docstring).
        ``placed``, if given, is called by the sequencer with the first index once the
        entries have their place, before they are written: a caller may start work that
        needs the indexes (elsewhere: it must return at once) while they become durable,
        and must still not act on them before this returns. If it raises, the commit
        fails, as a failing disk would fail it.
        """
        checked = list(items)
        if not checked:
            return []
        # `_check_entry_bytes` of each, column-wise: a caseload is a million entries.
        if set(map(type, checked)) != {bytes}:
            for data in checked:
                _check_entry_bytes(data)  # raises, naming the wrong type
        if min(map(len, checked)) == 0 or max(map(len, checked)) > MAX_ENTRY_BYTES:
            for data in checked:
                _check_entry_bytes(data)  # raises, naming the wrong size
        return self._submit(_Job(items=checked, placed=placed))

    def record_checkpoint(self, size: int, root: bytes, note_text: str) -> None:
        """Record a signed checkpoint of this log.

        Raises `CheckpointMismatch` unless ``root`` is this log's root at ``size`` and
        ``size`` is at least the latest checkpoint's: a store never records a
        checkpoint of a tree it does not hold, nor one that goes backwards.
        """
        if type(size) is not int or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        if type(root) is not bytes or len(root) != HASH_SIZE:
            raise ValueError(f"root must be {HASH_SIZE} bytes")
        if not isinstance(note_text, str) or not note_text:
            raise ValueError("note_text must be a non-empty str")
        self._submit(_Job(checkpoint=StoredCheckpoint(size, root, note_text)))

    def _submit(self, job: _Job) -> list[int]:
        with self._cond:
            if self._failure is not None:
                raise StoreFailed(
                    f"{self.path}: an earlier commit failed; reopen the store"
                ) from self._failure.__cause__
            if self._closing:
                raise StoreClosed(f"{self.path} is closed")
            self._queue.append(job)
            if len(self._queue) >= self._wake_at:  # else the sequencer sleeps on
                self._cond.notify()
        return job.done.result()

    def close(self) -> None:
        """Commit what is queued, stop the sequencer, close the file. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._sequencer.join()
        with self._reader_lock:  # not under a reader's feet
            self._close_connections()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_connections(self) -> None:
        for con in (self._writer, self._reader):
            if con is not None:
                con.close()
        self._writer = self._reader = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- the sequencer --------------------------------------------------------------

    def _run(self) -> None:
        batch: list[_Job] | None = []
        try:
            while (batch := self._take_batch()) is not None:
                if batch[0].checkpoint is not None:
                    self._record(batch[0])
                else:
                    self._commit(batch)
        except BaseException as problem:  # a bug here must not leave callers waiting
            # Including the batch in hand: it has left the queue, and a raise outside
            # `_commit`'s own try (the tree's thread not starting, memory running out
            # while hashing a caseload) would otherwise never answer its callers.
            self._fail(problem, batch or [])

    def _take_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if self._queue[0].checkpoint is not None:
                return [self._queue.popleft()]
            # Group commit: once the last commit showed several callers (its batch plus
            # those queued behind it), wait briefly for that many to be back before
            # committing, so they share one fsync. A lone caller never waits.
            wanted = min(self._callers, self._max_batch)
            if wanted > 1 and self._max_wait > 0:
                deadline = time.monotonic() + self._max_wait
                self._wake_at = wanted  # one wake-up when they are all there, not one each
                while len(self._queue) < wanted and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._wake_at = 1
            batch: list[_Job] = []
            count = 0
            while self._queue and self._queue[0].checkpoint is None:
                job = self._queue[0]
                if batch and count + len(job.items) > self._max_batch:
                    break
                batch.append(self._queue.popleft())
                count += len(job.items)
            return batch

    def _commit(self, batch: list[_Job]) -> None:
        assert self._writer is not None
        start = self._size  # only this thread changes the size
        items = [item for job in batch for item in job.items]
        # leaf_hash inlined: a caseload commits a million entries at once.
        sha256, leaf_prefix = hashlib.sha256, LEAF_PREFIX
        leaves = [sha256(leaf_prefix + data).digest() for data in items]
        rows: list[tuple[int, bytes, bytes, bytes]] = []
        segments: list[tuple[int, int, bytes, bytes, bytes, bytes]] = []
        placements: list[tuple[Callable[[int], None], int]] = []
        at = 0  # position in items
        for job in batch:
            count = len(job.items)
            if job.placed is not None:
                placements.append((job.placed, start + at))
            if count >= SEGMENT_MIN:
                segments.extend(_segments(start + at, job.items, leaves[at : at + count]))
            else:  # fewer than SEGMENT_MIN per job: rows, each with its seal
                rows.extend(
                    (i, data, leaf, row_seal(i, leaf))
                    for i, data, leaf in zip(
                        range(start + at, start + at + count),
                        job.items,
                        leaves[at : at + count],
                        strict=True,
                    )
                )
            at += count
        # A bulk append grows the tree while SQLite writes and syncs (which leaves the
        # interpreter lock free): the tree may run ahead of ``_size``, but nothing reads
        # past ``_size``, which moves only once the commit is durable.
        grower = _Grower(self._tree, self._tree_lock, leaves) if segments else None
        try:
            for placed, first in placements:
                placed(first)
            self._writer.execute("BEGIN IMMEDIATE")
            if rows:
                self._writer.executemany(
                    "INSERT INTO entries (idx, data, leaf, seal) VALUES (?, ?, ?, ?)", rows
                )
            if segments:
                self._writer.executemany(
                    "INSERT INTO segments (first, count, data, ends, leaves, seal)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    segments,
                )
            if self._before_commit is not None:
                self._before_commit(len(items))
            self._writer.execute("COMMIT")
        except BaseException as problem:
            if grower is not None:
                grower.join()
            self._fail(problem, batch)
            return
        # Durable: now (and only now) the log's size grows and the callers hear their
        # indexes.
        if grower is not None and (failure := grower.join()) is not None:
            self._fail(failure, batch)
            return
        with self._tree_lock:
            if grower is None:
                self._tree.extend(leaves)
            self._size = start + len(items)
        with self._cond:
            self._callers = len(batch) + len(self._queue)
        next_index = start
        for job in batch:
            job.done.set_result(list(range(next_index, next_index + len(job.items))))
            next_index += len(job.items)

    def _record(self, job: _Job) -> None:
        assert self._writer is not None and job.checkpoint is not None
        cp = job.checkpoint
        with self._tree_lock:
            size = self._size
            actual = self._tree.root(cp.size) if cp.size <= size else None
        latest = self._latest
        if actual is None:
            problem = f"checkpoint size {cp.size} is beyond the log's {size} entries"
        elif actual != cp.root:
            problem = f"the log's root at size {cp.size} is not the checkpoint's root"
        elif latest is not None and cp.size < latest.size:
            problem = f"checkpoint size {cp.size} is below the latest checkpoint's {latest.size}"
        else:
            problem = ""
        if problem:
            job.done.set_exception(CheckpointMismatch(problem))
            return
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            self._writer.execute(
                "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)",
                (cp.size, cp.root, cp.note),
            )
            self._writer.execute("COMMIT")
        except BaseException as failure:
            self._fail(failure, [job])
            return
        self._latest = cp
        job.done.set_result([])

    def _fail(self, problem: BaseException, batch: list[_Job]) -> None:
        """Fail closed: the batch and everything queued get the error; no more writes."""
        assert self._writer is not None
        with contextlib.suppress(sqlite3.Error):
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
        failure = StoreFailed(
            f"{self.path}: a commit failed ({type(problem).__name__}: {problem}); "
            "nothing in it was acknowledged, and the store takes no writes until reopened"
        )
        failure.__cause__ = problem
        with self._cond:
            self._failure = failure
            waiting = [*batch, *self._queue]
            self._queue.clear()
        for job in waiting:
            if not job.done.done():
                job.done.set_exception(failure)

    # --- reading --------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of durable entries."""
        with self._tree_lock:
            return self._size

    def _size_arg(self, size: int | None, current: int) -> int:
        if size is None:
            return current
        if type(size) is not int or not 0 <= size <= current:
            raise ValueError(f"size {size!r} is not a tree size of this log (0..{current})")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first ``size`` entries (default: all)."""
        with self._tree_lock:
            tree_size = self._size_arg(size, self._size)
            return self._tree.root(tree_size) if tree_size else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash of entry ``index``."""
        with self._tree_lock:
            self._index_arg(index, self._size)
            return self._tree[index]

    def _index_arg(self, index: int, size: int) -> None:
        if type(index) is not int or not 0 <= index < size:
            raise ValueError(f"index {index!r} is not an entry of this log (0..{size - 1})")

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``, checked against its leaf hash in the tree.

        Raises `LedgerTampered` if the stored bytes no longer hash to the leaf the
        tree holds (the file changed under the store).
        """
        expected = self.leaf_hash(index)
        with self._reader_lock:
            if self._reader is None:
                raise StoreClosed(f"{self.path} is closed")
            row = read_entry(self._reader, index)
        if row is None or type(row[0]) is not bytes or leaf_hash(row[0]) != expected:
            raise LedgerTampered(f"entry {index} in {self.path} does not match its leaf hash")
        data: bytes = row[0]
        return data

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        with self._tree_lock:
            tree_size = self._size_arg(size, self._size)
            self._index_arg(index, tree_size)
            return proofs.inclusion_proof(self._tree, index, size=tree_size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from tree size ``size1`` to ``size2`` (default: all)."""
        with self._tree_lock:
            second = self._size_arg(size2, self._size)
            first = self._size_arg(size1, second)
            return proofs.consistency_proof(self._tree, first, second)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint recorded last, or None."""
        return self._latest

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        """Every recorded checkpoint, oldest first."""
        with self._reader_lock:
            if self._reader is None:
                raise StoreClosed(f"{self.path} is closed")
            rows = self._reader.execute(
                "SELECT size, root, note FROM checkpoints ORDER BY seq"
            ).fetchall()
        return iter([StoredCheckpoint(*row) for row in rows])

    def verify(self, *, checkpoint_check: CheckpointCheck | None = None) -> VerifyReport:
        """Check every entry, hash, seal and checkpoint on disk; return what was found.

        Rehashes every entry and compares with its stored leaf hash, checks each row's
        seal and that indexes run 0..n-1, recomputes the root at every checkpoint's
        size and compares, and runs ``checkpoint_check`` (signatures) on each note.
        Also compares the disk with the tree this store serves from. Never raises for
        what it finds: see `VerifyReport.ok`, `first_bad_index`, `raise_if_bad`.
        """
        # The served tree only ever holds committed entries, so the snapshot taken
        # first is a prefix of what the read transaction below sees.
        with self._tree_lock:
            served = (self._size, self._tree.root(self._size))
        with self._reader_lock:
            if self._reader is None:
                raise StoreClosed(f"{self.path} is closed")
            self._reader.execute("BEGIN")
            try:
                return _verify_connection(self._reader, checkpoint_check, served)
            finally:
                self._reader.execute("COMMIT")


def _check_entry_bytes(data: object) -> bytes:
    if type(data) is not bytes:
        raise TypeError(f"a ledger entry is bytes, got {type(data).__name__}")
    if not 0 < len(data) <= MAX_ENTRY_BYTES:
        raise ValueError(f"a ledger entry is 1..{MAX_ENTRY_BYTES} bytes, got {len(data)}")
    return data


class _Grower:
    """Extends a tree by some leaves in a thread of its own; `join` returns its error."""

    def __init__(self, tree: MerkleTree, lock: threading.Lock, leaves: list[bytes]) -> None:
        self._failure: BaseException | None = None

        def grow() -> None:
            try:
                with lock:
                    tree.extend(leaves)
            except BaseException as problem:  # handed to the sequencer by join
                self._failure = problem

        self._thread = threading.Thread(target=grow, name="ledger-tree", daemon=True)
        self._thread.start()

    def join(self) -> BaseException | None:
        self._thread.join()
        return self._failure


def _segments(
    first: int, items: Sequence[bytes], leaves: Sequence[bytes]
) -> Iterator[tuple[int, int, bytes, bytes, bytes, bytes]]:
    """``items`` (at ``first`` on) as segment rows: (first, count, data, ends, leaves, seal)."""
    lo = 0
    while lo < len(items):
        ends = list(itertools.accumulate(map(len, items[lo : lo + SEGMENT_ENTRIES])))
        count = max(1, bisect.bisect_right(ends, SEGMENT_BYTES))  # one entry fits always
        ends_blob = struct.pack(f">{count}I", *ends[:count])
        leaves_blob = b"".join(leaves[lo : lo + count])
        yield (
            first + lo,
            count,
            b"".join(items[lo : lo + count]),
            ends_blob,
            leaves_blob,
            segment_seal(first + lo, count, ends_blob, leaves_blob),
        )
        lo += count


def _lock_writer(path: Path) -> int:
    """Take the store's writer lock (a ``.lock`` file beside it) or raise `StoreBusy`."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusy(f"{path} is already open for writing") from None
    except BaseException:
        os.close(fd)
        raise
    return fd
