"""C2SP tlog-tiles export and the third party's side of it (ledger.tiles).

1. Paths: the spec's vectors and a round trip; the tiles of a tree of a given size.
2. The root recomputed from tiles equals `ledger.merkle.root`, for sizes around every
   tile boundary and for every earlier size of a folder exported as the log grew.
3. Proofs made from tiles equal the log's own, and receipts made from tiles verify.
4. Tampering with any byte of any file is detected; re-export is idempotent; full tiles
   are written once; a folder of another log, a rollback or a fork is refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle, proofs
from ledger.checkpoint import Checkpoint, CheckpointInvalid, sign_checkpoint
from ledger.entries import Entry
from ledger.errors import ProofError
from ledger.log import Log, verify_receipt
from ledger.note import Signer
from ledger.tiles import (
    CHECKPOINT_PATH,
    ExportRefused,
    TileError,
    bundle_path,
    consistency_proof_from_tiles,
    export_checkpoint,
    export_tiles,
    inclusion_proof_from_tiles,
    index_path,
    parse_bundle,
    parse_index_path,
    prove_from_tiles,
    tile_path,
    tiles_of,
    tiles_root,
    verify_entry_from_tiles,
    verify_tiles,
)

ORIGIN = "onceonly.example/tiles-test"


class FakeLog:
    """Entries in memory and a signer: the smallest thing an export reads from."""

    def __init__(self, entries: list[bytes], signer: Signer) -> None:
        self.entries = entries
        self.signer = signer
        self.tree = merkle.MerkleTree(merkle.leaf_hash(e) for e in entries)

    def note(self, size: int) -> str:
        return sign_checkpoint(
            Checkpoint(self.signer.name, size, self.tree.root(size)), [self.signer]
        )

    def export(self, out: Path, size: int) -> tuple[str, object]:
        note = self.note(size)
        return note, export_checkpoint(out, note, self.entries.__getitem__)


def entries_for(count: int, tag: bytes = b"") -> list[bytes]:
    # Lengths vary (0 to 300 bytes), so bundle boundaries fall anywhere.
    return [tag + b"entry %d " % i + b"." * (i * 7 % 300) for i in range(count)]


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def big(signer: Signer) -> FakeLog:
    return FakeLog(entries_for(70_000), signer)


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


# --- 1. paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "path"),
    [
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1000, "x001/000"),
        (1234067, "x001/x234/067"),  # the spec's example
        (10**9, "x001/x000/x000/000"),
    ],
)
def test_index_paths_are_the_specs(index: int, path: str) -> None:
    assert index_path(index) == path
    assert parse_index_path(path) == index


def test_tile_and_bundle_paths() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(1, 0, 5) == "tile/1/000.p/5"
    assert tile_path(2, 1000, 255) == "tile/2/x001/000.p/255"
    assert bundle_path(0) == "tile/entries/000"
    assert bundle_path(3, 17) == "tile/entries/003.p/17"
    for bad in [(0, 0, 0), (0, 0, 257), (64, 0, 256), (-1, 0, 256), (0, -1, 256)]:
        with pytest.raises(ValueError):
            tile_path(*bad)


@given(st.integers(min_value=0, max_value=2**64))
def test_index_path_round_trip(index: int) -> None:
    path = index_path(index)
    assert parse_index_path(path) == index
    upper, last = path.split("/")[:-1], path.split("/")[-1]
    assert len(last) == 3 and all(e.startswith("x") and len(e) == 4 for e in upper)


@pytest.mark.parametrize(
    "text", ["", "1", "0000", "x000/001", "x1/001", "001/002", "x001", "x001/x002"]
)
def test_non_canonical_index_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_index_path(text)


def test_the_tiles_of_the_specs_examples() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
    # 17, and one partial level 2 tile of width 1"
    found = list(tiles_of(70_000))
    assert found == [
        *((0, n, 256) for n in range(273)),
        (0, 273, 112),
        (1, 0, 256),
        (1, 1, 17),
        (2, 0, 1),
    ]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level
    # 1 tile of width 1"
    assert list(tiles_of(256)) == [(0, 0, 256), (1, 0, 1)]
    assert list(tiles_of(0)) == []


def test_bundles_parse_exactly() -> None:
    bundle = b"\x00\x02ab\x00\x00\x00\x01c"
    assert parse_bundle(bundle, 3) == [b"ab", b"", b"c"]
    for bad, count in [(bundle, 2), (bundle, 4), (bundle[:-1], 3), (b"\x00", 1)]:
        with pytest.raises(TileError):
            parse_bundle(bad, count)


# --- 2. roots from tiles -------------------------------------------------------------


def test_the_empty_tree_has_a_checkpoint_and_no_tiles(tmp_path: Path, signer: Signer) -> None:
    log = FakeLog([], signer)
    note, _ = log.export(tmp_path, 0)
    assert files(tmp_path) == {CHECKPOINT_PATH: note.encode()}
    assert tiles_root(tmp_path, 0) == merkle.EMPTY_ROOT
    report = verify_tiles(tmp_path, [signer.verifier()])
    assert (report.checkpoint.size, report.tiles, report.bundles) == (0, 0, 0)


@settings(max_examples=40)
@given(size=st.integers(min_value=1, max_value=1300))
def test_root_from_tiles_is_the_merkle_root(size: int) -> None:
    signer = Signer.generate(ORIGIN)
    log = FakeLog(entries_for(size), signer)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        log.export(out, size)
        assert tiles_root(out, size) == merkle.root(list(log.tree))
        assert verify_tiles(out, [signer.verifier()]).checkpoint.size == size
        expected = {CHECKPOINT_PATH}
        expected |= {tile_path(*t) for t in tiles_of(size)}
        expected |= {bundle_path(n, w) for level, n, w in tiles_of(size) if level == 0}
        assert set(files(out)) == expected


def test_a_folder_exported_as_the_log_grows(tmp_path: Path, big: FakeLog, signer: Signer) -> None:
    sizes = [1, 2, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 70_000]
    for step, size in enumerate(sizes):
        big.export(tmp_path, size)
        assert verify_tiles(tmp_path, [signer.verifier()]).checkpoint.size == size
        # Every size exported so far still has its root in the folder: a partial tile
        # left by an older checkpoint, or the full tile that replaced it.
        for earlier in sizes[: step + 1]:
            assert tiles_root(tmp_path, earlier) == big.tree.root(earlier), (size, earlier)
    # The spec's example layout for 70,000 entries, and no partial tile of a full one.
    names = set(files(tmp_path))
    assert {
        "tile/0/272",
        "tile/0/273.p/112",
        "tile/1/000",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    } <= names
    assert "tile/entries/273.p/112" in names
    assert not any(
        n.startswith(("tile/0/000.p", "tile/1/000.p", "tile/entries/000.p")) for n in names
    )
    assert "tile/0/273.p/112" in names and "tile/entries/272" in names


# --- 3. proofs from tiles ------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(big: FakeLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiles")
    big.export(out, 66_000)
    return out


@pytest.mark.parametrize("index", [0, 1, 255, 256, 65_535, 65_536, 65_999])
def test_inclusion_proofs_from_tiles_are_the_logs(
    exported: Path, big: FakeLog, signer: Signer, index: int
) -> None:
    proof = inclusion_proof_from_tiles(exported, index, 66_000)
    assert proof == proofs.inclusion_proof(big.tree, index, size=66_000)
    checkpoint = verify_entry_from_tiles(exported, index, [signer.verifier()])
    assert checkpoint.size == 66_000
    receipt, entry = prove_from_tiles(exported, index, [signer.verifier()])
    assert entry == big.entries[index]
    assert verify_receipt(receipt, entry, signer.verifier()).root == big.tree.root(66_000)


@pytest.mark.parametrize(
    ("size1", "size2"), [(1, 66_000), (256, 66_000), (300, 65_537), (65_536, 66_000)]
)
def test_consistency_proofs_from_tiles_are_the_logs(
    exported: Path, big: FakeLog, size1: int, size2: int
) -> None:
    proof = consistency_proof_from_tiles(exported, size1, size2)
    assert proof == proofs.consistency_proof(big.tree, size1, size2)
    proofs.verify_consistency(size1, size2, proof, big.tree.root(size1), big.tree.root(size2))


def test_an_entry_not_in_the_bundle_does_not_verify(exported: Path, signer: Signer) -> None:
    with pytest.raises(ProofError):
        verify_entry_from_tiles(exported, 5, [signer.verifier()], entry=b"something else")
    with pytest.raises(TileError, match="not covered"):
        verify_entry_from_tiles(exported, 66_000, [signer.verifier()])


def test_a_real_log_exports_only_what_its_checkpoint_covers(tmp_path: Path, signer: Signer) -> None:
    def ask(n: int) -> Entry:
        return Entry.ask(
            department="civil_affairs",
            principal=f"caseworker:civil_affairs/u{n}",
            fact_id="person.is_alive",
            fact_version="1",
            service_matter="pension",
            case_ref=f"CASE-{n}",
            outcome="refused",
            reason="no grant for service matter",
        )

    with Log.open(tmp_path / "ledger.sqlite", origin=ORIGIN, signer=signer) as log:
        log.append_many([ask(n) for n in range(300)])
        log.checkpoint()
        log.append_many([ask(n) for n in range(300, 310)])  # not covered yet
        result = export_tiles(log, tmp_path / "out")
        assert result.size == 300
        assert (tmp_path / "out" / "tile/entries/001.p/44").is_file()
        assert not (tmp_path / "out" / "tile/entries/001.p/54").exists()
        # A receipt made from the tiles alone is the log's own receipt, byte for byte.
        for index in (0, 123, 299):
            receipt, entry = prove_from_tiles(tmp_path / "out", index, [signer.verifier()])
            assert receipt == log.prove(index) and entry == log.entry(index)


# --- 4. tampering, idempotence, refusals ---------------------------------------------


@pytest.fixture
def small(tmp_path: Path, signer: Signer) -> Iterator[tuple[Path, FakeLog]]:
    log = FakeLog(entries_for(600), signer)  # two full level-0 tiles, partials at 0 and 1
    log.export(tmp_path, 600)
    yield tmp_path, log


def test_every_byte_of_every_file_is_covered(small: tuple[Path, FakeLog], signer: Signer) -> None:
    out, _ = small
    exported = files(out)
    assert sorted(exported) == [
        "checkpoint",
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/000",
        "tile/entries/001",
        "tile/entries/002.p/88",
    ]
    for name, data in exported.items():
        # Flip the first, a middle and the last byte of each file in turn.
        for position in sorted({0, len(data) // 2, len(data) - 1}):
            altered = bytearray(data)
            altered[position] ^= 0x01
            (out / name).write_bytes(bytes(altered))
            with pytest.raises(ProofError):
                verify_tiles(out, [signer.verifier()])
            (out / name).write_bytes(data)
    assert verify_tiles(out, [signer.verifier()]).tiles == 4


@pytest.mark.parametrize("name", ["tile/0/000", "tile/0/002.p/88", "tile/1/000.p/2"])
def test_a_tampered_tile_fails_the_inclusion_proofs_that_use_it(
    small: tuple[Path, FakeLog], signer: Signer, name: str
) -> None:
    out, _ = small
    path = out / name
    data = bytearray(path.read_bytes())
    data[40] ^= 0x80  # the second hash of the tile
    path.write_bytes(bytes(data))
    failures = 0
    for index in range(600):
        try:
            verify_entry_from_tiles(out, index, [signer.verifier()])
        except ProofError:
            failures += 1
    assert failures > 0


def test_missing_and_short_files_are_named(small: tuple[Path, FakeLog], signer: Signer) -> None:
    out, _ = small
    (out / "tile/0/001").unlink()
    with pytest.raises(TileError, match="missing tile/0/001 "):
        verify_tiles(out, [signer.verifier()])
    (out / "tile/0/000").write_bytes((out / "tile/0/000").read_bytes()[:-1])
    with pytest.raises(TileError, match="tile/0/000 is 8191 bytes"):
        inclusion_proof_from_tiles(out, 3, 600)


def test_the_checkpoint_must_be_signed_by_a_given_key(small: tuple[Path, FakeLog]) -> None:
    out, _ = small
    with pytest.raises(CheckpointInvalid):
        verify_tiles(out, [Signer.generate(ORIGIN).verifier()])


def test_re_export_is_idempotent(small: tuple[Path, FakeLog]) -> None:
    out, log = small
    before = {
        p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in out.rglob("*")
        if p.is_file()
    }
    again = export_checkpoint(out, log.note(600), log.entries.__getitem__)
    assert again.written == () and again.removed == ()
    assert again.unchanged == 8
    after = {
        p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in out.rglob("*")
        if p.is_file()
    }
    assert after == before


def test_full_tiles_are_written_once_and_replace_their_partials(
    tmp_path: Path, signer: Signer
) -> None:
    log = FakeLog(entries_for(1000), signer)
    log.export(tmp_path, 260)
    full = tmp_path / "tile/0/000"
    stamp = (full.stat().st_mtime_ns, full.stat().st_ino)
    _, grown = log.export(tmp_path, 300)
    assert "tile/0/000" not in grown.written  # type: ignore[attr-defined]
    assert (full.stat().st_mtime_ns, full.stat().st_ino) == stamp
    # The older checkpoint's narrower partial stays (a client may still hold it) ...
    assert (tmp_path / "tile/0/001.p/4").is_file() and (tmp_path / "tile/0/001.p/44").is_file()
    _, completed = log.export(tmp_path, 512)
    # ... until the full tile exists: then the partials go, and clients read the full one.
    assert not (tmp_path / "tile/0/001.p").exists()
    assert not (tmp_path / "tile/entries/001.p").exists()
    assert set(completed.removed) >= {"tile/0/001.p/4", "tile/0/001.p/44"}  # type: ignore[attr-defined]
    for size in (260, 300, 512):
        assert tiles_root(tmp_path, size) == log.tree.root(size)
    _, entry = prove_from_tiles(tmp_path, 299, [signer.verifier()])
    assert entry == log.entries[299]


def test_no_temporary_files_are_left(small: tuple[Path, FakeLog]) -> None:
    out, _ = small
    assert [p for p in out.rglob("*") if p.name.startswith(".")] == []


def test_a_full_tile_with_other_contents_is_never_overwritten(
    small: tuple[Path, FakeLog], signer: Signer
) -> None:
    out, log = small
    tile = out / "tile/0/000"
    tile.write_bytes(b"\x00" * 8192)
    checkpoint = (out / CHECKPOINT_PATH).read_bytes()
    with pytest.raises(ExportRefused, match="already exists with other contents"):
        log.export(out, 600)
    assert tile.read_bytes() == b"\x00" * 8192
    assert (out / CHECKPOINT_PATH).read_bytes() == checkpoint


def test_a_rollback_is_refused(small: tuple[Path, FakeLog]) -> None:
    out, log = small
    with pytest.raises(ExportRefused, match="roll it back"):
        log.export(out, 300)


def test_a_fork_is_refused_before_anything_is_written(
    small: tuple[Path, FakeLog], signer: Signer
) -> None:
    out, _ = small
    before = files(out)
    fork = FakeLog(entries_for(700, tag=b"fork "), signer)  # same key, other entries
    with pytest.raises(ExportRefused, match="does not extend"):
        fork.export(out, 700)
    assert files(out) == before


def test_another_logs_folder_is_refused(small: tuple[Path, FakeLog]) -> None:
    out, _ = small
    other = FakeLog(entries_for(700), Signer.generate("other.example/log"))
    with pytest.raises(ExportRefused, match="holds the tiles of"):
        other.export(out, 700)


def test_entries_that_do_not_match_the_checkpoint_are_refused(
    tmp_path: Path, signer: Signer
) -> None:
    log = FakeLog(entries_for(10), signer)
    note = log.note(10)
    with pytest.raises(ExportRefused, match="do not hash to"):
        export_checkpoint(tmp_path, note, lambda i: b"not the entry %d" % i)
    assert list(tmp_path.iterdir()) == []


def test_an_entry_too_big_for_a_bundle_is_refused(tmp_path: Path, signer: Signer) -> None:
    log = FakeLog([b"x" * 65_535, b"y" * 65_536], signer)
    with pytest.raises(ExportRefused, match="65536 bytes"):
        log.export(tmp_path, 2)
    log.export(tmp_path, 1)  # the largest entry a bundle holds
    assert verify_tiles(tmp_path, [signer.verifier()]).bundles == 1


def test_file_modes_are_public(small: tuple[Path, FakeLog]) -> None:
    out, _ = small
    umask = os.umask(0)
    os.umask(umask)
    for path in out.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644 & ~umask


def test_entries_that_change_between_reads_are_refused(tmp_path: Path, signer: Signer) -> None:
    log = FakeLog(entries_for(10), signer)
    reads: dict[int, int] = {}

    def shifty(index: int) -> bytes:
        reads[index] = reads.get(index, 0) + 1
        return log.entries[index] if reads[index] == 1 else b"changed"

    with pytest.raises(ExportRefused, match="changed during export"):
        export_checkpoint(tmp_path, log.note(10), shifty)
    assert not (tmp_path / CHECKPOINT_PATH).exists()
