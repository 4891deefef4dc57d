"""Segments: a bulk append stored as a few SQLite rows, read and verified like rows.

1. The layout: appends of `SEGMENT_MIN` entries or more become segments (cut at
   `SEGMENT_ENTRIES` entries and `SEGMENT_BYTES` bytes), smaller ones rows; the seal is
   the documented hash (computed here from its definition).
2. Whatever the mix, every way of reading — `entry`, `read_entries`, `read_entry`,
   `entries_containing`, `stored_size`, reopening, `verify_store` — gives back the
   appended bytes, their leaf hashes and the Merkle root computed here from them alone.
3. Tampering with a segment directly in SQLite — a bit of its data, ends, leaf hashes
   or seal, its position or count, the segment deleted, a row put where it stands, a
   consistent rewrite — is caught with the right first bad index.
4. A format-1 file (rows only) still verifies read-only and is upgraded on opening.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError
from ledger.merkle import root as merkle_root
from ledger.proofs import verify_inclusion
from ledger.store import (
    MAX_ENTRY_BYTES,
    SEGMENT_BYTES,
    SEGMENT_ENTRIES,
    SEGMENT_MIN,
    LedgerStore,
    LedgerTampered,
    StoreFailed,
    entries_containing,
    read_blocks,
    read_entries,
    read_entry,
    stored_size,
    verify_store,
)
from tests.test_ledger_store import leaf
from tests.test_ledger_store import seal as row_seal


def seal(first: int, count: int, ends: bytes, leaves: bytes) -> bytes:
    return hashlib.sha256(
        b"onceonly-ledger-segment-v1\x00"
        + first.to_bytes(8, "big")
        + count.to_bytes(8, "big")
        + ends
        + leaves
    ).digest()


def entries(count: int, tag: str = "e") -> list[bytes]:
    return [f"{tag}{i:06d}".encode() * (1 + i % 3) for i in range(count)]


def read_all(path: Path) -> list[tuple[int, bytes, bytes]]:
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return list(read_entries(con))
    finally:
        con.close()


def segment_rows(path: Path) -> list[tuple[int, int]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT first, count FROM segments ORDER BY first").fetchall()
    finally:
        con.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


# --- 1. the layout ---------------------------------------------------------------------


def test_bulk_appends_are_segments_and_small_ones_rows(path: Path) -> None:
    big = entries(SEGMENT_ENTRIES + 10, "b")
    with LedgerStore(path) as store:
        store.append(b"single")
        store.append_many(entries(SEGMENT_MIN - 1, "r"))
        assert store.append_many(big) == list(range(SEGMENT_MIN, SEGMENT_MIN + len(big)))
        store.append(b"after")
    start = SEGMENT_MIN
    assert segment_rows(path) == [(start, SEGMENT_ENTRIES), (start + SEGMENT_ENTRIES, 10)]
    con = sqlite3.connect(path)
    (rows,) = con.execute("SELECT count(*) FROM entries").fetchone()
    first, count, data, ends, leaves, stored_seal = con.execute(
        "SELECT * FROM segments ORDER BY first LIMIT 1"
    ).fetchone()
    con.close()
    assert rows == SEGMENT_MIN + 1  # the single, the small batch, the one after
    chunk = big[:SEGMENT_ENTRIES]
    assert data == b"".join(chunk)
    offsets = [sum(len(d) for d in chunk[: k + 1]) for k in range(len(chunk))]
    assert ends == struct.pack(f">{len(chunk)}I", *offsets)
    assert leaves == b"".join(leaf(d) for d in chunk)
    assert stored_seal == seal(first, count, ends, leaves)


def test_a_segment_is_cut_at_its_byte_bound(path: Path) -> None:
    # Entries of the largest size: as many as the bound holds, then the rest anew.
    fit = SEGMENT_BYTES // MAX_ENTRY_BYTES
    big = [bytes([65 + k % 26]) * MAX_ENTRY_BYTES for k in range(fit + 3)]
    with LedgerStore(path) as store:
        store.append_many(big)
        assert store.entry(len(big) - 1) == big[-1]
    assert segment_rows(path) == [(0, fit), (fit, 3)]
    assert verify_store(path).ok


# --- 2. reading it back, whatever the mix -------------------------------------------------


def unblocked(blocks: Iterator[tuple[int, bytes, bytes]]) -> list[tuple[int, bytes]]:
    """The entries of `read_blocks`' blocks, checking each block starts where the last ended."""
    out: list[tuple[int, bytes]] = []
    for first, data, ends in blocks:
        assert not out or first == out[-1][0] + 1
        stops = struct.unpack(f">{len(ends) // 4}I", ends)
        assert stops and stops[-1] == len(data)
        out += [(first + k, data[a:b]) for k, (a, b) in enumerate(itertools.pairwise((0, *stops)))]
    return out


def check_reads_back(path: Path, appended: list[bytes]) -> None:
    leaves = [leaf(d) for d in appended]
    expected_root = merkle_root(leaves)
    with LedgerStore(path) as store:
        assert store.size == len(appended)
        assert store.root() == expected_root
        for index in sorted({0, len(appended) // 2, len(appended) - 1}):
            assert store.entry(index) == appended[index]
            proof = store.inclusion_proof(index)
            verify_inclusion(leaves[index], index, len(appended), proof, expected_root)
    assert read_all(path) == [
        (i, d, h) for i, (d, h) in enumerate(zip(appended, leaves, strict=True))
    ]
    con = sqlite3.connect(path)
    try:
        assert stored_size(con) == len(appended)
        assert [read_entry(con, i) for i in range(len(appended))] == list(
            zip(appended, leaves, strict=True)
        )
        assert read_entry(con, len(appended)) is None
        assert list(read_entries(con, 3, 7)) == [(i, appended[i], leaves[i]) for i in range(3, 7)]
        for start, stop, size in ((0, None, 65536), (0, None, 7), (3, len(appended) - 2, 5)):
            assert (
                unblocked(read_blocks(con, start, stop, entries=size))
                == list(enumerate(appended))[start:stop]
            )
    finally:
        con.close()
    report = verify_store(path)
    assert report.ok and report.entries == len(appended) and report.root == expected_root


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.one_of(st.integers(1, 5), st.integers(SEGMENT_MIN, 3 * SEGMENT_MIN)),
        min_size=1,
        max_size=6,
    )
)
def test_any_mix_of_rows_and_segments_reads_back(tmp_path: Path, batches: list[int]) -> None:
    path = tmp_path / f"mix-{'-'.join(map(str, batches))}.sqlite"
    if path.exists():
        return
    appended: list[bytes] = []
    with LedgerStore(path) as store:
        for n, count in enumerate(batches):
            items = entries(count, f"m{n}-")
            if count == 1:
                assert store.append(items[0]) == len(appended)
            else:
                assert store.append_many(items) == list(range(len(appended), len(appended) + count))
            appended += items
    if len(appended) >= 7:
        check_reads_back(path, appended)
    else:
        assert read_all(path) == [(i, d, leaf(d)) for i, d in enumerate(appended)]


def test_reopened_store_serves_the_same_tree_and_appends_after_segments(path: Path) -> None:
    first = entries(3 * SEGMENT_MIN, "a")
    with LedgerStore(path) as store:
        store.append_many(first)
        store.record_checkpoint(len(first), store.root(), "note")
    with LedgerStore(path) as store:  # the tree is rebuilt from segments' leaf hashes
        assert store.root() == merkle_root([leaf(d) for d in first])
        assert store.append(b"one more") == len(first)
    check_reads_back(path, [*first, b"one more"])


def test_entries_containing_searches_rows_and_segments(path: Path) -> None:
    needle = b"\x01NEEDLE\x02"
    items = entries(2 * SEGMENT_MIN, "s")
    items[5] = items[5] + needle
    items[SEGMENT_MIN + 7] = needle + items[SEGMENT_MIN + 7]
    with LedgerStore(path) as store:
        store.append(b"x" + needle)  # a row
        store.append_many(items)  # a segment
        store.append(b"nothing here")
    con = sqlite3.connect(path)
    try:
        found = entries_containing(con, [needle, b"absent"])
    finally:
        con.close()
    assert [(i, d) for i, d, _ in found] == [
        (0, b"x" + needle),
        (6, items[5]),
        (SEGMENT_MIN + 8, items[SEGMENT_MIN + 7]),
    ]
    assert all(h == leaf(d) for _, d, h in found)


def test_a_failed_bulk_commit_serves_nothing_of_it(path: Path) -> None:
    """The tree grows while SQLite commits; a failed commit must not show any of it."""
    failing = False

    def before_commit(count: int) -> None:
        if failing:
            raise OSError("no space left on device (simulated)")

    kept = entries(SEGMENT_MIN, "kept")
    store = LedgerStore(path, before_commit=before_commit)
    try:
        store.append_many(kept)
        root, proof = store.root(), store.inclusion_proof(5)
        failing = True
        with pytest.raises(StoreFailed):
            store.append_many(entries(5 * SEGMENT_MIN, "lost"))
        assert store.size == len(kept) and store.root() == root
        assert store.inclusion_proof(5) == proof
        with pytest.raises(ValueError):
            store.leaf_hash(len(kept))  # past the durable size, though the tree grew
        with pytest.raises(ValueError):
            store.root(len(kept) + 1)
        assert store.verify().ok
    finally:
        store.close()
    check_reads_back(path, kept)


# --- 3. tampering with a segment ------------------------------------------------------------

BEFORE = 3  # rows before the segment
COUNT = SEGMENT_MIN + 6


@pytest.fixture
def stored(path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """Three rows, one segment, two rows; a checkpoint over all of it."""
    with LedgerStore(path) as store:
        for k in range(BEFORE):
            store.append(f"row {k}".encode())
        store.append_many(entries(COUNT, "t"))
        store.append_many([b"after 1", b"after 2"])
        store.record_checkpoint(store.size, store.root(), "checkpoint")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous = OFF")
    yield path, con
    con.close()


def get(con: sqlite3.Connection, name: str) -> object:
    return con.execute(f"SELECT {name} FROM segments").fetchone()[0]


def put(con: sqlite3.Connection, name: str, value: object) -> None:
    con.execute(f"UPDATE segments SET {name} = ?", (value,))


def flipped(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def first_bad(path: Path) -> int | None:
    report = verify_store(path)
    assert not report.ok
    with pytest.raises(LedgerTampered):
        report.raise_if_bad()
    return report.first_bad_index


def refuses_to_open(path: Path) -> None:
    with pytest.raises(LedgerTampered):
        LedgerStore(path).close()


def test_untampered_segment_verifies(stored: tuple[Path, sqlite3.Connection]) -> None:
    path, _ = stored
    assert verify_store(path).ok
    assert segment_rows(path) == [(BEFORE, COUNT)]


def test_a_flipped_bit_in_an_entry_is_caught_at_that_entry(
    stored: tuple[Path, sqlite3.Connection],
) -> None:
    path, con = stored
    data = get(con, "data")
    ends = struct.unpack(f">{COUNT}I", get(con, "ends"))  # type: ignore[arg-type]
    assert isinstance(data, bytes)
    for k in (0, 1, COUNT // 2, COUNT - 1):
        start = ends[k - 1] if k else 0
        for bit in range(start * 8, ends[k] * 8, 5):
            put(con, "data", flipped(data, bit))
            assert first_bad(path) == BEFORE + k
        with LedgerStore(path) as store:  # opening reads leaf hashes; serving checks
            with pytest.raises(LedgerTampered):
                store.entry(BEFORE + k)
            assert store.entry(BEFORE + (k + 1) % COUNT) is not None
        put(con, "data", data)
    assert verify_store(path).ok


@pytest.mark.parametrize("name", ["ends", "leaves", "seal"])
def test_a_flipped_bit_in_ends_leaves_or_seal_is_caught_at_the_segment(
    stored: tuple[Path, sqlite3.Connection], name: str
) -> None:
    path, con = stored
    original = get(con, name)
    assert isinstance(original, bytes)
    step = len(original) * 8 // 200 | 1  # some 200 bits, spread over the whole value
    for bit in range(0, len(original) * 8, step):
        put(con, name, flipped(original, bit))
        assert first_bad(path) == BEFORE  # the seal (and the parts) name the segment
        if name == "leaves":  # the tree no longer has the checkpoint's root
            refuses_to_open(path)
    put(con, name, original)
    assert verify_store(path).ok


@pytest.mark.parametrize("name", ["data", "ends", "leaves", "seal"])
def test_a_cut_or_retyped_part_is_caught(
    stored: tuple[Path, sqlite3.Connection], name: str
) -> None:
    path, con = stored
    original = get(con, name)
    assert isinstance(original, bytes)
    for value in (original[: len(original) // 2], original[:-1], b"", "text, not a blob"):
        put(con, name, value)
        assert first_bad(path) == BEFORE
    put(con, name, original)
    assert verify_store(path).ok


@pytest.mark.parametrize(("column", "value", "bad"), [
    ("first", BEFORE + 1, BEFORE),  # moved: its position is a gap, its seal wrong
    ("first", BEFORE - 1, None),  # onto a row's position: held twice (either one named)
    ("count", COUNT - 1, BEFORE),  # shortened: parts do not fit
    ("count", COUNT + 1, BEFORE),
    ("count", 0, BEFORE),
])  # fmt: skip
def test_a_moved_or_recounted_segment_is_caught(
    stored: tuple[Path, sqlite3.Connection], column: str, value: int, bad: int | None
) -> None:
    path, con = stored
    original = get(con, column)
    put(con, column, value)
    found = first_bad(path)
    assert found == bad if bad is not None else found in (BEFORE - 1, BEFORE)
    refuses_to_open(path)
    put(con, column, original)
    assert verify_store(path).ok


def test_a_deleted_segment_or_a_row_in_its_place_is_caught(
    stored: tuple[Path, sqlite3.Connection],
) -> None:
    path, con = stored
    row = con.execute("SELECT * FROM segments").fetchone()
    con.execute("DELETE FROM segments")
    assert first_bad(path) == BEFORE
    refuses_to_open(path)
    blocks = [(first, len(ends) // 4) for first, _, ends in read_blocks(con)]
    assert blocks == [(0, BEFORE), (BEFORE + COUNT, 2)]  # the gap shows between blocks
    con.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)", row)
    assert verify_store(path).ok
    at = BEFORE + 5  # a well-formed row at a position the segment holds
    con.execute(
        "INSERT INTO entries VALUES (?, ?, ?, ?)", (at, b"x", leaf(b"x"), row_seal(at, leaf(b"x")))
    )
    assert first_bad(path) is not None
    refuses_to_open(path)


def test_a_consistent_rewrite_of_a_segment_is_caught_by_the_checkpoint(
    stored: tuple[Path, sqlite3.Connection],
) -> None:
    path, con = stored
    items = entries(COUNT, "forged")
    ends = struct.pack(f">{COUNT}I", *[sum(map(len, items[: k + 1])) for k in range(COUNT)])
    leaves = b"".join(leaf(d) for d in items)
    con.execute(
        "UPDATE segments SET data = ?, ends = ?, leaves = ?, seal = ?",
        (b"".join(items), ends, leaves, seal(BEFORE, COUNT, ends, leaves)),
    )
    report = verify_store(path)
    assert not report.ok and report.first_bad_index is None
    assert "checkpoint" in report.problems[0].what
    refuses_to_open(path)


# --- 4. format 1 ------------------------------------------------------------------------------


def test_a_format_one_file_verifies_and_is_upgraded_when_opened(path: Path) -> None:
    items = entries(5, "old")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL,"
        " leaf BLOB NOT NULL, seal BLOB NOT NULL)"
    )
    con.execute(
        "CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, size INTEGER NOT NULL,"
        " root BLOB NOT NULL, note TEXT NOT NULL)"
    )
    con.executemany(
        "INSERT INTO entries VALUES (?, ?, ?, ?)",
        [(i, d, leaf(d), row_seal(i, leaf(d))) for i, d in enumerate(items)],
    )
    con.execute("PRAGMA user_version = 1")
    con.close()
    assert verify_store(path).ok  # read-only: nothing changes
    assert read_all(path) == [(i, d, leaf(d)) for i, d in enumerate(items)]
    more = entries(SEGMENT_MIN, "new")
    with LedgerStore(path) as store:
        store.append_many(more)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    con.close()
    check_reads_back(path, [*items, *more])


# --- 5. review: edges of reading and of the sequencer ------------------------------------


def test_read_blocks_of_a_reversed_range_inside_a_segment_is_empty(path: Path) -> None:
    """As `read_entries`: a stop at or below the start reads nothing, even in a segment."""
    items = entries(2 * SEGMENT_MIN, "r")
    with LedgerStore(path) as store:
        store.append(b"row 0")
        store.append_many(items)  # one segment, entries 1 .. 2 * SEGMENT_MIN
    con = sqlite3.connect(path)
    try:
        for start, stop in ((40, 20), (30, 30), (2 * SEGMENT_MIN, 5), (1, 0)):
            assert list(read_entries(con, start, stop)) == []
            assert list(read_blocks(con, start, stop)) == []
    finally:
        con.close()


def test_a_raise_outside_the_commit_fails_its_callers_instead_of_hanging(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequencer's batch has left the queue: a raise before the commit's own error
    handling (here the tree's thread not starting) must still reach its callers."""
    import threading

    import ledger.store

    class NoThread:
        def __init__(self, *args: object) -> None:
            raise RuntimeError("can't start new thread")

    store = LedgerStore(path)
    try:
        store.append(b"kept")
        monkeypatch.setattr(ledger.store, "_Grower", NoThread)
        outcome: list[BaseException | list[int]] = []

        def bulk() -> None:
            try:
                outcome.append(store.append_many(entries(SEGMENT_MIN, "lost")))
            except BaseException as problem:
                outcome.append(problem)

        caller = threading.Thread(target=bulk, daemon=True)
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "the caller was left waiting"
        assert len(outcome) == 1 and isinstance(outcome[0], StoreFailed)
        assert isinstance(outcome[0].__cause__, RuntimeError)
        with pytest.raises(StoreFailed):
            store.append(b"after")
        assert store.size == 1
    finally:
        store.close()
    assert read_all(path) == [(0, b"kept", leaf(b"kept"))]


def test_a_format_number_set_back_does_not_hide_the_segments(
    stored: tuple[Path, sqlite3.Connection],
) -> None:
    path, con = stored
    con.execute("PRAGMA user_version = 1")
    assert len(read_all(path)) == BEFORE + COUNT + 2  # the readers still see them all
    assert verify_store(path).ok
    with pytest.raises(LedgerError):  # and the store does not open for writing
        LedgerStore(path).close()


def test_a_dropped_segments_table_is_caught_as_tampering(
    stored: tuple[Path, sqlite3.Connection],
) -> None:
    path, con = stored
    con.execute("DROP TABLE segments")
    assert first_bad(path) == BEFORE  # its entries are a gap now
    refuses_to_open(path)
