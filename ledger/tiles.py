"""The log as static files for third parties: C2SP tlog-tiles (https://c2sp.org/tlog-tiles).

An export folder is the log's URL prefix, ready to be served by any static web server::

    checkpoint                   the latest signed checkpoint, verbatim (the one mutable file)
    tile/<L>/<N>                 a full hash tile: 256 hashes of 32 bytes (8,192 bytes)
    tile/<L>/<N>.p/<W>           a partial hash tile: the W hashes there are (1 <= W <= 255)
    tile/entries/<N>[.p/<W>]     an entry bundle: per entry, a big-endian uint16 length
                                 followed by the entry's bytes

Hash ``i`` of tile ``N`` at level ``L`` is ``MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L])``:
level 0 holds leaf hashes, level ``L`` the roots of the full tiles of level ``L-1`` (tree
height ``8*L``). A tree of ``s`` entries has ``s // 256**L`` hashes at level ``L``; the last
tile of a level is partial when that count is not a multiple of 256, and a level with no
hash has no tile (a tree of 256 entries: one full level-0 tile and ``tile/1/000.p/1``; the
empty tree: no tile at all). ``N`` is written as 3-digit path elements, all but the last
prefixed with ``x`` (1234067 is ``x001/x234/067``), so the tree maps onto a file system
without a file and a folder ever sharing a name.

Export (`export_tiles`) covers exactly what the log's latest checkpoint covers, and is
incremental and atomic per file: every file is written to a temporary name, synced and
renamed into place; a full tile or bundle, and a partial one of a given width, never
changes once written (their contents follow from the tree), so one already present is
compared and skipped, and one present with other contents stops the export (the folder
holds another log's tiles, or was altered). The checkpoint is written last, after the
folders are synced, so a reader never sees a checkpoint whose tiles are not all there.
Partial tiles are replaced by the full tile: once it is written, that tile's ``.p``
folder goes (the spec allows it, and tells clients to fall back to the full tile); a
narrower partial tile left by an older checkpoint stays until then, because the spec
requires partial tiles for every size a checkpoint was produced at.

Reading back needs the folder and the log's public keys only (`verify_tiles`,
`tiles_root`, `inclusion_proof_from_tiles`, `verify_entry_from_tiles`,
`prove_from_tiles`): nothing read from the folder is trusted until it hashes up to the
root of a checkpoint signed by a given key.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ledger import merkle, proofs
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import LedgerError, ProofError
from ledger.log import format_receipt, verify_receipt
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash
from ledger.note import NoteVerifier, parse_note

__all__ = [
    "CHECKPOINT_PATH",
    "MAX_BUNDLE_ENTRY",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "CheckpointedLog",
    "ExportRefused",
    "ExportResult",
    "TileError",
    "TileReader",
    "TilesReport",
    "bundle_path",
    "consistency_proof_from_tiles",
    "export_checkpoint",
    "export_tiles",
    "inclusion_proof_from_tiles",
    "index_path",
    "parse_bundle",
    "parse_index_path",
    "prove_from_tiles",
    "read_checkpoint",
    "tile_path",
    "tiles_of",
    "tiles_root",
    "verify_entry_from_tiles",
    "verify_tiles",
]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
"""Hashes in a full tile (and entries in a full bundle)."""
MAX_LEVEL: Final = 63
MAX_BUNDLE_ENTRY: Final = 0xFFFF
"""The largest entry a bundle can hold: its length is a uint16."""
CHECKPOINT_PATH: Final = "checkpoint"

_U16 = struct.Struct(">H")
_ELEMENT = re.compile(r"[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")


class TileError(ProofError):
    """Exported tiles are missing, malformed, or do not add up to the signed checkpoint."""


class ExportRefused(LedgerError):
    """An export would rewrite an immutable file or roll the folder back, or cannot be done."""


# --- paths ---------------------------------------------------------------------------


def index_path(index: int) -> str:
    """Return tile index ``index`` as path elements: 1234067 -> ``x001/x234/067``, 0 -> ``000``."""
    if type(index) is not int or index < 0:
        raise ValueError(f"a tile index is a non-negative integer, got {index!r}")
    elements = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        elements.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(elements))


def parse_index_path(text: str) -> int:
    """Read `index_path`'s encoding back; ``ValueError`` unless it is the one spelling."""
    *upper, last = text.split("/")
    if not _ELEMENT.fullmatch(last) or not all(
        e.startswith("x") and _ELEMENT.fullmatch(e[1:]) for e in upper
    ):
        raise ValueError(f"{text!r} is not a tile index path")
    value = int("".join([e[1:] for e in upper] + [last]))
    if index_path(value) != text:  # "x000/001" would be a second spelling of 1
        raise ValueError(f"{text!r} is not the canonical path of tile {value}")
    return value


def _suffix(width: int) -> str:
    if type(width) is not int or not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"a tile is 1..{TILE_WIDTH} hashes wide, got {width!r}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``: where the hash tile is, relative to the export folder."""
    if type(level) is not int or not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"a tile level is 0..{MAX_LEVEL}, got {level!r}")
    return f"tile/{level}/{index_path(index)}{_suffix(width)}"


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``: where the entry bundle is, relative to the export folder."""
    return f"tile/entries/{index_path(index)}{_suffix(width)}"


def tiles_of(size: int) -> Iterator[tuple[int, int, int]]:
    """Every hash tile of a tree of ``size`` entries, as (level, index, width), level by level."""
    if type(size) is not int or size < 0:
        raise ValueError(f"a tree size is a non-negative integer, got {size!r}")
    level = 0
    while count := size >> (TILE_HEIGHT * level):
        full, rest = divmod(count, TILE_WIDTH)
        for index in range(full):
            yield level, index, TILE_WIDTH
        if rest:
            yield level, full, rest
        level += 1


def _width(level: int, index: int, size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of ``size``; 0 if it has none."""
    count = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


# --- bundles -------------------------------------------------------------------------


def _bundle(entries: Sequence[bytes]) -> bytes:
    return b"".join(_U16.pack(len(data)) + data for data in entries)


def parse_bundle(data: bytes, count: int) -> list[bytes]:
    """Split an entry bundle of exactly ``count`` entries; `TileError` if it is not one."""
    entries: list[bytes] = []
    at = 0
    while len(entries) < count:
        if at + 2 > len(data):
            raise TileError(f"bundle ends after {len(entries)} of {count} entries")
        (length,) = _U16.unpack_from(data, at)
        at += 2
        if at + length > len(data):
            raise TileError(f"bundle entry {len(entries)} is cut short")
        entries.append(data[at : at + length])
        at += length
    if at != len(data):
        raise TileError(f"bundle has bytes after its {count} entries")
    return entries


# --- export --------------------------------------------------------------------------


class CheckpointedLog(Protocol):
    """What an export reads: the latest signed checkpoint and entries (`ledger.log.Log`)."""

    def latest_checkpoint(self) -> str | None:
        """The latest signed checkpoint note, None before the first."""
        ...

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``."""
        ...


@dataclass(frozen=True)
class ExportResult:
    """What an export did: paths relative to the folder, in the order they were written."""

    size: int
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]


def export_tiles(log: CheckpointedLog, out: Path) -> ExportResult:
    """Export what ``log``'s latest checkpoint covers into ``out`` (see the module docstring)."""
    signed = log.latest_checkpoint()
    if signed is None:
        raise ExportRefused("the log has no checkpoint yet: there is nothing to export")
    return export_checkpoint(out, signed, log.entry)


def _unverified(signed: str | bytes) -> Checkpoint:
    """The checkpoint a note states, signatures unchecked (the log's own, or to compare)."""
    return Checkpoint.parse(parse_note(signed).text)


def export_checkpoint(
    out: Path, signed_checkpoint: str, entry: Callable[[int], bytes]
) -> ExportResult:
    """Export the tree of ``signed_checkpoint``, reading its entries with ``entry(index)``.

    Refuses (`ExportRefused`, writing nothing) when the entries do not hash to the
    checkpoint's root, when the folder's checkpoint is of another log, bigger, or not a
    prefix of this tree, or when an entry is too big for a bundle.
    """
    out = Path(out)
    checkpoint = _unverified(signed_checkpoint)
    size = checkpoint.size
    # 1. The folder, if already an export, is of this log and an earlier point of it.
    previous = _existing_checkpoint(out)
    if previous is not None:
        if previous.origin != checkpoint.origin:
            raise ExportRefused(
                f"{out} holds the tiles of {previous.origin!r}, not {checkpoint.origin!r}"
            )
        if previous.size > size:
            raise ExportRefused(
                f"{out} already holds a checkpoint of size {previous.size}; "
                f"exporting size {size} would roll it back"
            )
    # 2. Hash every entry and check the tree against the checkpoint (and the folder's
    #    checkpoint) before writing anything: a bad tile written once would be permanent.
    leaves = [_leaf(entry, index) for index in range(size)]
    if merkle.root(leaves) != checkpoint.root:
        raise ExportRefused(f"the log's first {size} entries do not hash to its checkpoint's root")
    if previous is not None and merkle.root(leaves[: previous.size]) != previous.root:
        raise ExportRefused(
            f"{out} holds a checkpoint of size {previous.size} that this log does not extend"
        )
    # Level L+1 holds the root of each full tile of level L; a partial one is not hashed up.
    levels = [leaves]
    while len(levels[-1]) >= TILE_WIDTH:
        below = levels[-1]
        full = len(below) - len(below) % TILE_WIDTH
        levels.append([merkle.root(below[i : i + TILE_WIDTH]) for i in range(0, full, TILE_WIDTH)])
    # 3. Bundles and tiles, bottom up; a full one replaces its partial ones.
    writer = _Writer(out)
    for level, index, width in tiles_of(size):
        if level == 0:
            first = index * TILE_WIDTH
            data = [entry(i) for i in range(first, first + width)]
            # Read twice (to keep memory to one bundle): what is written must be what was
            # checked against the root.
            if [leaf_hash(d) for d in data] != leaves[first : first + width]:
                raise ExportRefused(f"entries {first}..{first + width - 1} changed during export")
            writer.put(bundle_path(index, width), _bundle(data))
        hashes = levels[level][index * TILE_WIDTH : index * TILE_WIDTH + width]
        writer.put(tile_path(level, index, width), b"".join(hashes))
        if width == TILE_WIDTH:
            writer.remove_partials(tile_path(level, index) + ".p")
            if level == 0:
                writer.remove_partials(bundle_path(index) + ".p")
    # 4. The checkpoint last, once everything it covers is durably in place.
    writer.sync_folders()
    writer.replace(CHECKPOINT_PATH, signed_checkpoint.encode("utf-8"))
    return ExportResult(size, tuple(writer.written), writer.unchanged, tuple(writer.removed))


def _leaf(entry: Callable[[int], bytes], index: int) -> bytes:
    data = entry(index)
    if len(data) > MAX_BUNDLE_ENTRY:
        raise ExportRefused(
            f"entry {index} is {len(data)} bytes; an entry bundle holds at most {MAX_BUNDLE_ENTRY}"
        )
    return leaf_hash(data)


def _existing_checkpoint(out: Path) -> Checkpoint | None:
    path = out / CHECKPOINT_PATH
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _unverified(text)
    except ProofError as problem:
        raise ExportRefused(
            f"{path} is not a checkpoint ({problem}): not an export folder"
        ) from None


class _Writer:
    """Writes files atomically (temp, fsync, rename) under one folder; counts what it did."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: list[str] = []
        self.removed: list[str] = []
        self.unchanged = 0
        self._folders: set[Path] = set()

    def put(self, relative: str, data: bytes) -> None:
        """Write an immutable file, or skip it if present and identical."""
        path = self.root / relative
        try:
            present = path.read_bytes()
        except FileNotFoundError:
            self._write(path, data)
            self.written.append(relative)
            return
        if present != data:
            raise ExportRefused(
                f"{path} already exists with other contents: the folder holds another "
                "log's tiles or was altered; export into an empty folder"
            )
        self.unchanged += 1

    def replace(self, relative: str, data: bytes) -> None:
        """Write a mutable file (the checkpoint), unless it already holds ``data``."""
        path = self.root / relative
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                self.unchanged += 1
                return
        self._write(path, data)
        self.written.append(relative)
        _fsync_folder(path.parent)

    def remove_partials(self, relative: str) -> None:
        """Delete the ``.p`` folder of a tile whose full version is now written."""
        folder = self.root / relative
        if not folder.is_dir():
            return
        for partial in sorted(folder.iterdir()):
            partial.unlink()
            self.removed.append(f"{relative}/{partial.name}")
        folder.rmdir()
        self._folders.add(folder.parent)

    def sync_folders(self) -> None:
        """Make every rename and removal so far durable."""
        for folder in sorted(self._folders):
            _fsync_folder(folder)
        self._folders.clear()

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # Public files: readable by a web server (the umask still applies).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        self._folders.add(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading an export ---------------------------------------------------------------


def read_checkpoint(
    folder: Path, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> tuple[Checkpoint, str]:
    """The folder's checkpoint, verified with ``verifiers``, and its note text."""
    path = Path(folder) / CHECKPOINT_PATH
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TileError(f"no checkpoint at {path}") from None
    except UnicodeDecodeError:
        raise TileError(f"{path} is not UTF-8 text") from None
    return open_checkpoint(text, verifiers, origin=origin), text


class TileReader:
    """Hashes and entries of the tree of ``size`` entries, read from an export folder.

    Nothing it returns is verified: a caller hashes it up to a signed root. A partial
    tile (or bundle) that is gone is read from the prefix of its full tile, as the spec
    lets clients do, unless ``exact`` (an audit of the folder's own checkpoint, whose
    files must all be there).
    """

    def __init__(self, folder: Path, size: int, *, exact: bool = False) -> None:
        if type(size) is not int or size < 0:
            raise ValueError(f"a tree size is a non-negative integer, got {size!r}")
        self.folder = Path(folder)
        self.size = size
        self.exact = exact
        self._tiles: dict[tuple[int, int], bytes] = {}

    def _read(self, relative: str, width: int) -> tuple[str, bytes | None, int]:
        """The file at ``relative``, else (for a partial one) its full version's.

        Returns the path read, its bytes (None if neither exists) and how many hashes or
        entries that file holds.
        """
        try:
            return relative, (self.folder / relative).read_bytes(), width
        except FileNotFoundError:
            pass
        if width == TILE_WIDTH or self.exact:
            return relative, None, width
        full = relative[: relative.rindex(".p/")]
        try:
            return full, (self.folder / full).read_bytes(), TILE_WIDTH
        except FileNotFoundError:
            return relative, None, width

    def tile(self, level: int, index: int) -> bytes:
        """The hashes of tile (level, index) in this tree, concatenated (cached)."""
        key = (level, index)
        cached = self._tiles.get(key)
        if cached is not None:
            return cached
        width = _width(level, index, self.size)
        if width == 0:
            raise ValueError(f"a tree of {self.size} has no tile {level}/{index}")
        relative, data, holds = self._read(tile_path(level, index, width), width)
        if data is None:
            raise TileError(f"missing {relative} in {self.folder}")
        if len(data) != holds * HASH_SIZE:
            raise TileError(f"{relative} is {len(data)} bytes, not {holds} hashes")
        data = data[: width * HASH_SIZE]
        self._tiles[key] = data
        return data

    def entries(self, index: int) -> list[bytes]:
        """The entries of bundle ``index`` in this tree."""
        width = _width(0, index, self.size)
        if width == 0:
            raise ValueError(f"a tree of {self.size} has no entry bundle {index}")
        relative, data, holds = self._read(bundle_path(index, width), width)
        if data is None:
            raise TileError(f"missing {relative} in {self.folder}")
        try:
            return parse_bundle(data, holds)[:width]
        except TileError as problem:
            raise TileError(f"{relative}: {problem}") from None

    def hash_at(self, level: int, index: int) -> bytes:
        """Hash ``index`` of tile level ``level`` (tree height ``8 * level``)."""
        tile = self.tile(level, index // TILE_WIDTH)
        at = (index % TILE_WIDTH) * HASH_SIZE
        return tile[at : at + HASH_SIZE]

    def node(self, height: int, index: int) -> bytes:
        """The root of the complete subtree of ``2**height`` leaves from ``index * 2**height``."""
        level, within = divmod(height, TILE_HEIGHT)
        # The subtree is 2**within consecutive hashes of one tile at ``level`` (2**within
        # divides 256 and the run starts at a multiple of it, so it never spans two tiles).
        first = index << within
        tile = self.tile(level, first // TILE_WIDTH)
        at = (first % TILE_WIDTH) * HASH_SIZE
        run = tile[at : at + (HASH_SIZE << within)]
        hashes = [run[i : i + HASH_SIZE] for i in range(0, len(run), HASH_SIZE)]
        if len(hashes) != 1 << within:
            raise TileError(f"tile {level}/{first // TILE_WIDTH} is too short for this size")
        return merkle.root(hashes)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges proofs ask for (a `ledger.proofs.SubtreeRoot`)."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"range [{start}, {end}) is not within a tree of {self.size}")
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if start % (1 << (n.bit_length() - 1)):
            raise ValueError(f"range [{start}, {end}) is not a subtree of the RFC 6962 tree")
        # n's binary digits, largest first, are the complete subtrees making up the range;
        # they fold right to left, as in `ledger.merkle.MerkleTree.subtree_root`.
        blocks = []
        offset = start
        for height in range(n.bit_length() - 1, -1, -1):
            if n >> height & 1:
                blocks.append(self.node(height, offset >> height))
                offset += 1 << height
        acc = blocks.pop()
        while blocks:
            acc = merkle.node_hash(blocks.pop(), acc)
        return acc

    def root(self) -> bytes:
        """The root of the tree of ``size`` entries, from O(log size) tiles."""
        return self.subtree(0, self.size)


def tiles_root(folder: Path, size: int) -> bytes:
    """The root of the tree of ``size`` entries as the folder's tiles give it (unverified)."""
    return TileReader(folder, size).root()


def inclusion_proof_from_tiles(folder: Path, index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``, from tiles."""
    return proofs.inclusion_path(index, size, TileReader(folder, size).subtree)


def consistency_proof_from_tiles(folder: Path, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof from size ``size1`` to ``size2``, from tiles."""
    return proofs.consistency_path(size1, size2, TileReader(folder, size2).subtree)


def _entry_at(reader: TileReader, index: int) -> bytes:
    if not 0 <= index < reader.size:
        raise TileError(f"entry {index} is not covered by the checkpoint of size {reader.size}")
    return reader.entries(index // TILE_WIDTH)[index % TILE_WIDTH]


def verify_entry_from_tiles(
    folder: Path,
    index: int,
    verifiers: Sequence[NoteVerifier],
    *,
    entry: bytes | None = None,
) -> Checkpoint:
    """Check that entry ``index`` (its bundle's, or ``entry`` if given) is in the signed tree.

    1. the folder's checkpoint is signed by one of ``verifiers``; 2. the entry's leaf hash
    is recomputed from its bytes; 3. the inclusion proof built from the tiles leads from
    it to the signed root. Returns the checkpoint; `ProofError` on any failure.
    """
    checkpoint, _ = read_checkpoint(folder, verifiers)
    reader = TileReader(folder, checkpoint.size)
    data = _entry_at(reader, index) if entry is None else entry
    proof = proofs.inclusion_path(index, checkpoint.size, reader.subtree)
    proofs.verify_inclusion(leaf_hash(data), index, checkpoint.size, proof, checkpoint.root)
    return checkpoint


def prove_from_tiles(
    folder: Path, index: int, verifiers: Sequence[NoteVerifier]
) -> tuple[str, bytes]:
    """A c2sp.org/tlog-proof receipt for entry ``index``, and the entry, made from tiles alone.

    The receipt is checked with `ledger.log.verify_receipt` before it is returned.
    """
    checkpoint, text = read_checkpoint(folder, verifiers)
    reader = TileReader(folder, checkpoint.size)
    data = _entry_at(reader, index)
    receipt = format_receipt(
        index, proofs.inclusion_path(index, checkpoint.size, reader.subtree), text
    )
    last: ProofError | None = None
    for verifier in verifiers:
        try:
            verify_receipt(receipt, data, verifier)
            return receipt, data
        except ProofError as problem:
            last = problem
    raise last or TileError("no verifier given")


@dataclass(frozen=True)
class TilesReport:
    """What `verify_tiles` checked: the signed checkpoint, hash tiles and entry bundles."""

    checkpoint: Checkpoint
    tiles: int
    bundles: int


def verify_tiles(folder: Path, verifiers: Sequence[NoteVerifier]) -> TilesReport:
    """Audit a whole export against its signed checkpoint; `TileError` names the first bad file.

    Every byte of every tile the checkpoint needs is checked: each entry hashes to its
    leaf hash in the level-0 tile, each full tile hashes to its hash one level up, and
    the tiles' root is the signed root.
    """
    folder = Path(folder)
    # 1. The checkpoint is signed by a trusted key; its size says which tiles must exist.
    checkpoint, _ = read_checkpoint(folder, verifiers)
    reader = TileReader(folder, checkpoint.size, exact=True)
    tiles = bundles = 0
    for level, index, width in tiles_of(checkpoint.size):
        tile = reader.tile(level, index)
        tiles += 1
        # 2. Entries hash to the leaf hashes of their level-0 tile.
        if level == 0:
            bundles += 1
            for i, data in enumerate(reader.entries(index)):
                if leaf_hash(data) != tile[i * HASH_SIZE : (i + 1) * HASH_SIZE]:
                    raise TileError(
                        f"entry {index * TILE_WIDTH + i}: {bundle_path(index, width)} does not "
                        f"hash to its leaf in {tile_path(0, index, width)}"
                    )
        # 3. A full tile hashes to its hash in the tile above.
        if width == TILE_WIDTH:
            hashes = [tile[i : i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]
            if merkle.root(hashes) != reader.hash_at(level + 1, index):
                parent = tile_path(
                    level + 1,
                    index // TILE_WIDTH,
                    _width(level + 1, index // TILE_WIDTH, checkpoint.size),
                )
                raise TileError(
                    f"{tile_path(level, index)} does not hash to hash {index % TILE_WIDTH} "
                    f"of {parent}"
                )
    # 4. The tiles add up to the signed root.
    if reader.root() != checkpoint.root:
        raise TileError(
            f"the tiles' root is not the root the checkpoint signs for size {checkpoint.size}"
        )
    return TilesReport(checkpoint, tiles, bundles)
