"""Merkle inclusion and consistency proofs, RFC 9162 §2.1.3-§2.1.4 (the proofs of RFC 6962).

An *inclusion proof* (audit path) for leaf ``m`` of a tree of ``n`` leaves is the list
of sibling subtree roots from the leaf up to the root, lowest first: PATH(m, D[n]).
A *consistency proof* between sizes ``m < n`` is SUBPROOF(m, D[n], true): the fewest
subtree roots from which both MTH(D[0:m]) and MTH(D[0:n]) can be recomputed, which
shows the bigger tree is the smaller one with entries appended and nothing rewritten.

Generation takes the log's leaf hashes. For a plain sequence it costs O(n) hashes per
proof (the siblings' subtrees are rehashed from their leaves; together they cover
fewer than n leaves); for a `ledger.merkle.MerkleTree` it costs O(log² n) using the
tree's cached complete subtrees. `inclusion_path` and `consistency_path` take any
function that returns a subtree root, so a store with its own cache (tiles) can reuse
the same code. Bad arguments to the generators are the caller's bug: `ValueError`.

Verification follows the iterative algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step
by step, and raises `ledger.errors.ProofError` on every failure; it never returns a
boolean, so a forgotten check cannot pass silently. A verified proof shows the leaf (or
the older tree) belongs to the tree whose root was given; binding that root to its tree
size is the signed checkpoint's job, not the proof's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger import merkle
from ledger.errors import ProofError
from ledger.merkle import EMPTY_ROOT, HASH_SIZE, largest_power_of_two_below, node_hash

__all__ = [
    "HashLike",
    "SubtreeRoot",
    "consistency_path",
    "consistency_proof",
    "consistency_proof_length",
    "inclusion_path",
    "inclusion_proof",
    "inclusion_proof_length",
    "verify_consistency",
    "verify_inclusion",
]

SubtreeRoot = Callable[[int, int], bytes]
"""``subtree(start, end)`` returns MTH(D[start:end]) of the log's entries."""

HashLike = bytes | bytearray | memoryview
"""What the verifiers take as a hash; anything else, or any length but 32, fails."""


# --- generation -------------------------------------------------------------------


def _require_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def inclusion_path(index: int, size: int, subtree: SubtreeRoot) -> list[bytes]:
    """Return PATH(index, D[size]) (RFC 9162 §2.1.3.1), sibling roots from the leaf up.

    Walks from the root down instead of recursing, so depth is never a concern. At
    each level the leaf lies in the left part ``[start, start+k)`` or the right part
    ``[start+k, end)``; the other part's root is the sibling at that level.
    """
    _require_size("index", index)
    _require_size("size", size)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    top_down: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if index < start + k:
            # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            top_down.append(subtree(start + k, end))
            end = start + k
        else:
            # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            top_down.append(subtree(start, start + k))
            start += k
    # The RFC lists the deepest sibling first; we collected them root first.
    top_down.reverse()
    return top_down


def consistency_path(size1: int, size2: int, subtree: SubtreeRoot) -> list[bytes]:
    """Return PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1); empty if size1 is 0 or size2.

    The RFC defines the proof only for ``0 < size1 < size2``; the two degenerate cases
    need no hashes, and `verify_consistency` accepts exactly an empty proof for them.
    """
    _require_size("size1", size1)
    _require_size("size2", size2)
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0 or size1 == size2:
        return []
    top_down: list[bytes] = []
    start, end = 0, size2
    # b: whether the current subtree's left edge is the original tree's (the RFC flag).
    complete_so_far = True
    while True:
        if size1 == end:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}.
            # With b true the verifier already holds this root (it is MTH(D[0:m])).
            if not complete_so_far:
                top_down.append(subtree(start, end))
            break
        k = largest_power_of_two_below(end - start)
        if size1 - start <= k:
            # m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            top_down.append(subtree(start + k, end))
            end = start + k
        else:
            # m > k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            top_down.append(subtree(start, start + k))
            start += k
            complete_so_far = False
    top_down.reverse()
    return top_down


def _subtree_of(leaf_hashes: Sequence[bytes]) -> SubtreeRoot:
    if isinstance(leaf_hashes, merkle.MerkleTree):
        return leaf_hashes.subtree_root
    return lambda start, end: merkle.subtree_root(leaf_hashes, start, end)


def inclusion_proof(
    leaf_hashes: Sequence[bytes], index: int, *, size: int | None = None
) -> list[bytes]:
    """Return the inclusion proof for leaf ``index`` in the tree of the first ``size`` leaves.

    ``size`` defaults to all of ``leaf_hashes``; a smaller one proves inclusion in an
    earlier tree head. O(n) hashes for a plain sequence, O(log² n) for a `MerkleTree`.
    """
    tree_size = len(leaf_hashes) if size is None else size
    _require_size("size", tree_size)
    if tree_size > len(leaf_hashes):
        raise ValueError(f"size {tree_size} exceeds the {len(leaf_hashes)} leaves given")
    return inclusion_path(index, tree_size, _subtree_of(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """Return the consistency proof from tree size ``size1`` to ``size2`` of this log.

    Empty when ``size1`` is 0 or equals ``size2``. O(n) hashes for a plain sequence,
    O(log² n) for a `MerkleTree`.
    """
    _require_size("size2", size2)
    if size2 > len(leaf_hashes):
        raise ValueError(f"size2 {size2} exceeds the {len(leaf_hashes)} leaves given")
    return consistency_path(size1, size2, _subtree_of(leaf_hashes))


def inclusion_proof_length(index: int, size: int) -> int:
    """Return how many hashes the inclusion proof of leaf ``index`` in ``size`` leaves has.

    The paths to ``index`` and to the last leaf ``size - 1`` share their top part and
    part ways at the highest bit where the two indices differ. Below that split every
    level has a sibling (``inner`` of them); above it the path runs along the right
    edge, where a level has a sibling only where ``index`` has a 1 bit (``border``).
    """
    _require_size("index", index)
    _require_size("size", size)
    if index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def consistency_proof_length(size1: int, size2: int) -> int:
    """Return how many hashes the consistency proof from ``size1`` to ``size2`` has."""
    _require_size("size1", size1)
    _require_size("size2", size2)
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0 or size1 == size2:
        return 0
    # The proof is the inclusion proof of leaf size1 - 1 in size2 leaves, minus the
    # lowest levels that lie inside the largest complete subtree ending at size1 (whose
    # root replaces them), plus that root unless it is the whole old tree (size1 a
    # power of two), which the verifier already holds.
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length() - shift
    border = ((size1 - 1) >> (inner + shift)).bit_count()
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner + border


# --- verification -----------------------------------------------------------------


def _check_size(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProofError(f"{name} must be bytes, got {type(value).__name__}")
    digest = bytes(value)
    if len(digest) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes, got {len(digest)}")
    return digest


def _check_proof(proof: object) -> list[bytes]:
    # bytes and str are sequences too (of ints, of characters): never a list of hashes.
    if isinstance(proof, bytes | bytearray | memoryview | str) or not isinstance(proof, Sequence):
        raise ProofError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    return [_check_hash(f"proof[{i}]", h) for i, h in enumerate(proof)]


def verify_inclusion(
    leaf_hash: HashLike, index: int, size: int, proof: Sequence[HashLike], root: HashLike
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the ``size``-leaf tree with ``root``.

    Implements RFC 9162 §2.1.3.2. Returns None on success; raises `ProofError` if the
    index is out of range, any hash is not 32 bytes, the proof has the wrong number of
    hashes, or it does not lead to ``root``.
    """
    index = _check_size("index", index)
    size = _check_size("size", size)
    leaf = _check_hash("leaf hash", leaf_hash)
    expected_root = _check_hash("root", root)
    path = _check_proof(proof)

    # 1. If leaf_index >= tree_size, fail.
    if index >= size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    # The RFC loop below also catches a wrong length (steps 4a and 5), but only as a
    # root mismatch; checking it first gives the reason, and costs no hashing.
    want = inclusion_proof_length(index, size)
    if len(path) != want:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} needs {want} hashes, got {len(path)}"
        )

    # 2. Set fn to leaf_index and sn to tree_size - 1.
    fn, sn = index, size - 1
    # 3. Set r to hash.
    r = leaf
    # 4. For each value p in the inclusion_path array:
    for p in path:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # ii. If LSB(fn) is not set, right-shift fn and sn equally until either
            #     LSB(fn) is set or fn is 0 (skipping levels where the right edge has
            #     no sibling because the lone node was promoted).
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set r to HASH(0x01 || r || p).
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1

    # 5. Succeed only if sn is 0 and r equals root_hash.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != expected_root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[HashLike], root1: HashLike, root2: HashLike
) -> None:
    """Check that the ``size2`` tree with ``root2`` extends the ``size1`` tree with ``root1``.

    Implements RFC 9162 §2.1.4.2 for ``0 < size1 < size2``. The cases the RFC leaves
    out need no hashes, so they accept only an empty proof: ``size1 == size2`` needs
    ``root1 == root2``; ``size1 == 0`` needs ``root1`` to be the empty tree's root
    (the only root a tree of size 0 has; every tree extends it). Raises `ProofError`
    on any failure, including ``size1 > size2`` and any hash that is not 32 bytes.
    """
    size1 = _check_size("size1", size1)
    size2 = _check_size("size2", size2)
    first_hash = _check_hash("root1", root1)
    second_hash = _check_hash("root2", root2)
    path = _check_proof(proof)

    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}: a log never shrinks")
    if size1 == 0 or size1 == size2:
        if path:
            raise ProofError(
                f"consistency proof from {size1} to {size2} must be empty, got {len(path)} hashes"
            )
        if size1 == 0 and first_hash != EMPTY_ROOT:
            raise ProofError("root1 of a tree of size 0 must be the empty tree's root")
        if size1 == size2 and first_hash != second_hash:
            raise ProofError(f"two trees of size {size1} have different roots")
        return

    # 1. If consistency_path is an empty array, fail.
    if not path:
        raise ProofError(f"consistency proof from {size1} to {size2} is empty")
    # A wrong length would surface below as a mismatch; checking it first says why.
    want = consistency_proof_length(size1, size2)
    if len(path) != want:
        raise ProofError(
            f"consistency proof from {size1} to {size2} needs {want} hashes, got {len(path)}"
        )

    # 2. If first is an exact power of 2, prepend first_hash to the consistency_path
    #    (the old tree is then one complete subtree, which the proof leaves out).
    if size1 & (size1 - 1) == 0:
        path.insert(0, first_hash)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = size1 - 1, size2 - 1
    # 4. If LSB(fn) is set, right-shift fn and sn equally until LSB(fn) is not set
    #    (climb to the root of the largest complete subtree ending at leaf first - 1).
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, stop the iteration and fail.
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # i. Set fr to HASH(0x01 || c || fr).
            fr = node_hash(c, fr)
            # ii. Set sr to HASH(0x01 || c || sr).
            sr = node_hash(c, sr)
            # iii. If LSB(fn) is not set, right-shift fn and sn equally until either
            #      LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        # Otherwise:
        else:
            # i. Set sr to HASH(0x01 || sr || c) (c was appended after the old tree,
            #    so it counts towards the new root only).
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1

    # 7. Succeed only if fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != first_hash:
        raise ProofError(f"consistency proof does not lead to root1 of the tree of size {size1}")
    if sr != second_hash:
        raise ProofError(f"consistency proof does not lead to root2 of the tree of size {size2}")
