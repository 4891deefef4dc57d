"""The Merkle tree hash of RFC 6962 §2.1 / RFC 9162 §2.1.1, over SHA-256.

The log is a list of entries ``D[n] = {d(0), ..., d(n-1)}``. Its Merkle Tree Hash is

    MTH({})      = SHA-256()                                  the empty tree
    MTH({d(0)})  = SHA-256(0x00 || d(0))                      a leaf
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))   for n > 1

where ``k`` is the largest power of two strictly smaller than ``n``. The left subtree
is therefore always complete (``k`` leaves, a power of two) and any unevenness sits on
the right: a tree of 7 leaves is ``(4 | (2 | 1))``. A lone node on the right edge is
not paired with a copy of itself (as Bitcoin does) but promoted unchanged, so no two
logs of different sizes share a root by construction.

The one-byte prefixes (0x00 for leaves, 0x01 for interior nodes) separate the two
domains: without them a leaf whose data is the 64-byte concatenation of two hashes
would hash the same as the interior node above them (a second preimage).

Functions here take *leaf hashes* (``leaf_hash(entry)``), not entries, so callers that
store hashes never rehash data. Everything is pure: no I/O, no clock, no state except
in `MerkleTree`, which is an in-memory cache of complete subtree hashes.

Errors: these are primitives, so malformed input (a hash that is not 32 bytes, a range
outside the tree) raises `ValueError`. Checking a proof someone else sent is the job
of `ledger.proofs`, which raises `ledger.errors.ProofError` instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, overload

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "MerkleTree",
    "largest_power_of_two_below",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_root",
]

HASH_SIZE: Final = 32
"""Bytes in every hash of the tree (SHA-256)."""

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}): the root of the empty tree is SHA-256 of the empty string, not of a prefix."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes | bytearray | memoryview) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)`` of one log entry."""
    h = _sha256(LEAF_PREFIX)
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash ``SHA-256(0x01 || left || right)``.

    Raises `ValueError` unless both children are `HASH_SIZE` bytes: any other length
    cannot be a node of this tree, and hashing it anyway would hide a caller's bug.
    """
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise ValueError(
            f"node_hash needs two {HASH_SIZE}-byte hashes, got {len(left)} and {len(right)} bytes"
        )
    h = _sha256(NODE_PREFIX)
    h.update(left)
    h.update(right)
    return h.digest()


def largest_power_of_two_below(n: int) -> int:
    """Return the RFC's ``k``: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    if n < 2:
        raise ValueError(f"no power of two is strictly below {n} and at least 1")
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaf_hashes(leaf_hashes: Iterable[bytes]) -> list[bytes]:
    """Copy the leaf hashes into a list, refusing anything that is not a 32-byte `bytes`."""
    hashes = list(leaf_hashes)
    for i, h in enumerate(hashes):
        # `type(...) is bytes` rather than isinstance: a bytearray could be mutated after
        # it was hashed into a cached tree, silently desynchronising the cache.
        if type(h) is not bytes or len(h) != HASH_SIZE:
            raise ValueError(
                f"leaf hash {i} must be {HASH_SIZE} bytes, got {type(h).__name__} "
                f"of length {len(h) if isinstance(h, bytes | bytearray) else '?'}"
            )
    return hashes


def _fold(level: list[bytes]) -> bytes:
    """Hash a non-empty level up to one root, pairing left to right, promoting an odd tail.

    Pairing bottom-up and carrying a lone right-most node up unchanged builds exactly
    the RFC tree: the complete left subtrees are the aligned power-of-two blocks, and
    the right edge is the same chain of promoted remainders the recursion produces.
    """
    prefix = NODE_PREFIX
    sha = _sha256
    while len(level) > 1:
        # zip stops at the shorter half, so an odd tail is handled after the pairs.
        paired = [
            sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH of the tree with these leaf hashes (`EMPTY_ROOT` when there are none).

    Iterative, n - 1 node hashes, memory O(n); a `MerkleTree` answers from its cache.
    """
    if isinstance(leaf_hashes, MerkleTree):
        return leaf_hashes.root()
    hashes = _check_leaf_hashes(leaf_hashes)
    if not hashes:
        return EMPTY_ROOT
    return _fold(hashes)


def subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """Return MTH(D[start:end]), the root of the tree made of leaves ``start .. end-1``.

    O(end - start) hashes for a plain sequence; O(log n) for a `MerkleTree` whenever
    the range is a subtree of the RFC tree (every range a proof needs is one).
    """
    if not 0 <= start <= end <= len(leaf_hashes):
        raise ValueError(f"range [{start}, {end}) is not within a tree of {len(leaf_hashes)}")
    if isinstance(leaf_hashes, MerkleTree):
        return leaf_hashes.subtree_root(start, end)
    return root(leaf_hashes[start:end])


class MerkleTree(Sequence[bytes]):
    """Leaf hashes plus the hash of every complete subtree, so roots and proofs are O(log n).

    ``levels[h][i]`` is the root of the complete subtree of ``2**h`` leaves starting at
    leaf ``i * 2**h``. Those hashes never change as the log grows, so one cache serves
    every past tree size too: the root of size ``s`` is the fold of the complete
    subtrees that tile ``[0, s)``. Appending is amortised O(1) hashes; memory is about
    two hashes per leaf.

    It is a ``Sequence`` of leaf hashes, so it can be passed wherever the list-based
    functions of this module and `ledger.proofs` take one, and they use the cache.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self.extend(leaf_hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash at the end, completing whichever subtrees it closes."""
        (checked,) = _check_leaf_hashes((leaf_hash,))
        levels = self._levels
        levels[0].append(checked)
        height = 0
        # A subtree of height h+1 is complete once level h holds an even number of nodes.
        while len(levels[height]) % 2 == 0:
            below = levels[height]
            if height + 1 == len(levels):
                levels.append([])
            levels[height + 1].append(_sha256(NODE_PREFIX + below[-2] + below[-1]).digest())
            height += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes, hashing level by level (as `append` would, in bulk).

        ``levels[h + 1]`` always holds ``len(levels[h]) // 2`` nodes, so after the new
        leaves each level gains exactly the pairs of the level below that became complete.
        """
        hashes = _check_leaf_hashes(leaf_hashes)
        levels = self._levels
        levels[0].extend(hashes)
        prefix = NODE_PREFIX
        sha = _sha256
        height = 0
        while len(levels[height]) > 1:
            below = levels[height]
            if height + 1 == len(levels):
                levels.append([])
            above = levels[height + 1]
            start, stop = 2 * len(above), len(below) - len(below) % 2
            if start == stop:
                break  # nothing new completed here, so nothing above either
            pairs = zip(below[start:stop:2], below[start + 1 : stop : 2], strict=True)
            above.extend([sha(prefix + a + b).digest() for a, b in pairs])
            height += 1

    def __len__(self) -> int:
        return len(self._levels[0])

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        return self._levels[0][index]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._levels[0])

    def _complete(self, height: int, start: int) -> bytes:
        """Return the cached root of the complete subtree of ``2**height`` leaves at ``start``."""
        return self._levels[height][start >> height]

    def subtree_root(self, start: int, end: int) -> bytes:
        """Return MTH(D[start:end]); O(log n) when the range is aligned like an RFC subtree."""
        size = len(self)
        if not 0 <= start <= end <= size:
            raise ValueError(f"range [{start}, {end}) is not within a tree of {size}")
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        largest = 1 << (n.bit_length() - 1)
        if start % largest:
            # Not a subtree of the RFC tree (its own complete halves are not cached
            # blocks), so hash it from the leaves; proofs never ask for such a range.
            return _fold(self._levels[0][start:end])
        # The tree over n leaves is the complete blocks given by n's binary digits, from
        # the largest at the left to the smallest at the right, folded right to left
        # (each promoted right remainder becomes the right child of the next block up).
        blocks: list[bytes] = []
        offset = start
        for height in range(n.bit_length() - 1, -1, -1):
            if n >> height & 1:
                blocks.append(self._complete(height, offset))
                offset += 1 << height
        acc = blocks.pop()
        while blocks:
            acc = _sha256(NODE_PREFIX + blocks.pop() + acc).digest()
        return acc

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the tree's first ``size`` leaves (default: all of them)."""
        return self.subtree_root(0, len(self) if size is None else size)
