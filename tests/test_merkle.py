"""The Merkle tree and its proofs against RFC 6962 / RFC 9162.

Three kinds of evidence:

1. Known answers published by others (Certificate Transparency's test vectors).
2. A naive reference written straight from the RFC's recursive definitions of MTH,
   PATH and SUBPROOF, compared with the library for every tree size up to 300.
3. Tampered proofs, sizes, indices and roots, each of which must raise `ProofError`
   (and nothing else: another exception type fails the test, it is not a rejection).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    root,
    subtree_root,
)
from ledger.proofs import (
    consistency_path,
    consistency_proof,
    consistency_proof_length,
    inclusion_path,
    inclusion_proof,
    inclusion_proof_length,
    verify_consistency,
    verify_inclusion,
)

# --- known-answer vectors -----------------------------------------------------------
#
# Source: transparency-dev/merkle (the Go library behind Trillian and the CT logs),
# proof/verify_test.go (`leaves`, `roots`, `inclusionProofs`, `consistencyProofs`, read
# at commit 02194e9afb6c1d95b5381350007963aa70fff472) and rfc6962/rfc6962_test.go (the
# hasher vectors, commit 78493b07ef9b552e3379abf9e23d4da26fbe797c). The same eight-leaf
# tree is the test tree of the original certificate-transparency C++ merkle_tree_test.cc
# and of Chromium's ct_log_verifier_unittest.cc. The Go file numbers leaves from 1 in
# its inclusion vectors ({leaf: 2, size: 8} is index 1); they are 0-based below.


def h(hex_digest: str) -> bytes:
    digest = bytes.fromhex(hex_digest)
    assert len(digest) == HASH_SIZE
    return digest


CT_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

CT_ROOTS = {
    0: h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    1: h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    2: h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    3: h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    4: h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    5: h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    6: h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    7: h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    8: h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
}

# (index, size, proof)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (size1, size2, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]


# --- the naive reference, straight from RFC 9162 §2.1 --------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Reference:
    """MTH, PATH and PROOF exactly as the RFC writes them, recursive, on ``D[lo:hi]``.

    It uses hashlib directly, not the library's hashing helpers. Subtree hashes are
    memoised (they depend only on the range), which is what makes sweeping every size
    and index affordable; the definitions themselves are untouched.
    """

    def __init__(self, data: list[bytes]) -> None:
        self.data = data
        self._mth: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def k(n: int) -> int:
        """The largest power of two smaller than n, by counting."""
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def mth(self, lo: int, hi: int) -> bytes:
        key = (lo, hi)
        if key not in self._mth:
            n = hi - lo
            if n == 0:
                value = sha256(b"")
            elif n == 1:
                value = sha256(b"\x00" + self.data[lo])
            else:
                k = self.k(n)
                value = sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))
            self._mth[key] = value
        return self._mth[key]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]), m relative to lo."""
        n = hi - lo
        if n == 1:
            return []
        k = self.k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b), m relative to lo."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = self.k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), defined for 0 < m < n."""
        return self.subproof(m, 0, n, True)


MAX = 300
# Distinct entries, so no two subtrees hash alike and a proof cannot be replayed
# against another position by accident.
DATA = [b"entry %d" % i for i in range(MAX + 8)]
LEAF_HASHES = [leaf_hash(d) for d in DATA]
REF = Reference(DATA)
TREE = MerkleTree(LEAF_HASHES)
CT_REF = Reference(CT_LEAVES)


def rejected(verify: Callable[..., None], *args: object) -> bool:
    """True if verification raised ProofError; any other exception propagates and fails."""
    try:
        verify(*args)
    except ProofError:
        return True
    return False


def flip(digest: bytes, bit: int) -> bytes:
    out = bytearray(digest)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


OTHER_HASH = sha256(b"not part of any tree")


# --- known answers ------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT
    assert MerkleTree().root() == EMPTY_ROOT


def test_leaf_hash_known_answers() -> None:
    # rfc6962_test.go: the empty leaf is not the empty tree, and "L123456".
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert leaf_hash(bytearray(b"L123456")) == leaf_hash(memoryview(b"L123456"))


def test_node_hash_known_answer_and_order() -> None:
    # The two-leaf root is one node hash over the first two leaf hashes.
    left, right = CT_LEAF_HASHES[0], CT_LEAF_HASHES[1]
    assert node_hash(left, right) == CT_ROOTS[2]
    assert node_hash(right, left) != CT_ROOTS[2]
    # A leaf over the concatenation must differ from the node: the prefixes at work.
    assert leaf_hash(left + right) != node_hash(left, right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (b"N123", b"N456"),  # rfc6962_test.go's node vector: not hashes, so refused here
        (b"\x00" * 31, b"\x00" * 32),
        (b"\x00" * 32, b"\x00" * 33),
        (b"", b""),
    ],
)
def test_node_hash_refuses_anything_but_two_hashes(left: bytes, right: bytes) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        node_hash(left, right)


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_roots_match_ct_vectors(size: int) -> None:
    leaves = CT_LEAF_HASHES[:size]
    assert root(leaves) == CT_ROOTS[size]
    assert MerkleTree(leaves).root() == CT_ROOTS[size]
    assert MerkleTree(CT_LEAF_HASHES).root(size) == CT_ROOTS[size]
    assert CT_REF.mth(0, size) == CT_ROOTS[size]  # the reference agrees with the world


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_proofs_match_ct_vectors(index: int, size: int, expected: list[bytes]) -> None:
    assert inclusion_proof(CT_LEAF_HASHES[:size], index) == expected
    assert inclusion_proof(MerkleTree(CT_LEAF_HASHES), index, size=size) == expected
    assert CT_REF.path(index, 0, size) == expected
    verify_inclusion(CT_LEAF_HASHES[index], index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_match_ct_vectors(size1: int, size2: int, expected: list[bytes]) -> None:
    assert consistency_proof(CT_LEAF_HASHES[:size2], size1, size2) == expected
    assert consistency_proof(MerkleTree(CT_LEAF_HASHES), size1, size2) == expected
    if size1 < size2:
        assert CT_REF.proof(size1, size2) == expected
    verify_consistency(size1, size2, expected, CT_ROOTS[size1], CT_ROOTS[size2])


# --- the library against the reference ----------------------------------------------


def test_largest_power_of_two_below_is_the_rfc_k() -> None:
    for n in range(2, 5000):
        assert largest_power_of_two_below(n) == Reference.k(n), n
    assert largest_power_of_two_below(2**64 + 1) == 2**64
    assert largest_power_of_two_below(2**64) == 2**63
    for n in (-1, 0, 1):
        with pytest.raises(ValueError):
            largest_power_of_two_below(n)


def test_leaf_hashes_match_the_reference() -> None:
    assert all(LEAF_HASHES[i] == REF.mth(i, i + 1) for i in range(len(DATA)))


def test_root_matches_reference_for_every_size() -> None:
    grown = MerkleTree()
    for size in range(MAX + 1):
        expected = REF.mth(0, size)
        assert root(LEAF_HASHES[:size]) == expected, size
        assert TREE.root(size) == expected, size
        assert grown.root() == expected, size
        grown.append(LEAF_HASHES[size])


def test_merkle_tree_built_any_way_is_the_same() -> None:
    one_by_one = MerkleTree()
    for leaf in LEAF_HASHES[:MAX]:
        one_by_one.append(leaf)
    in_pieces = MerkleTree(LEAF_HASHES[:37])
    in_pieces.extend(LEAF_HASHES[37:200])
    in_pieces.extend(LEAF_HASHES[200:MAX])
    at_once = MerkleTree(LEAF_HASHES[:MAX])
    for tree in (one_by_one, in_pieces):
        assert tree._levels == at_once._levels
    assert len(at_once) == MAX
    assert at_once[5] == LEAF_HASHES[5]
    assert at_once[-1] == LEAF_HASHES[MAX - 1]
    assert at_once[3:6] == LEAF_HASHES[3:6]
    assert list(at_once) == LEAF_HASHES[:MAX]


@given(st.lists(st.integers(0, 70), max_size=12))
def test_extend_in_any_chunks_equals_building_at_once(chunks: list[int]) -> None:
    """Bulk `extend` of a non-empty tree keeps every level as appending one by one would."""
    tree, used = MerkleTree(), 0
    for size in chunks:
        size = min(size, MAX - used)
        tree.extend(LEAF_HASHES[used : used + size])
        used += size
        assert tree._levels == MerkleTree(LEAF_HASHES[:used])._levels
        assert tree.root() == REF.mth(0, used)


@given(st.integers(0, MAX), st.integers(0, MAX))
def test_subtree_root_of_any_range_matches_reference(a: int, b: int) -> None:
    # Aligned ranges come from the cache, unaligned ones are hashed from the leaves.
    start, end = min(a, b), max(a, b)
    expected = REF.mth(start, end)
    assert subtree_root(LEAF_HASHES[:MAX], start, end) == expected
    assert subtree_root(TREE, start, end) == expected
    assert TREE.subtree_root(start, end) == expected


def test_inclusion_proofs_match_reference_for_every_size_and_index() -> None:
    # Every leaf of every tree up to MAX: ~45,000 proofs, generated from the cached
    # tree, compared with PATH and verified.
    for size in range(1, MAX + 1):
        tree_root = REF.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(TREE, index, size=size)
            assert proof == REF.path(index, 0, size), (index, size)
            assert len(proof) == inclusion_proof_length(index, size)
            verify_inclusion(LEAF_HASHES[index], index, size, proof, tree_root)


def test_list_based_inclusion_proofs_match_reference_exhaustively_to_64() -> None:
    for size in range(1, 65):
        for index in range(size):
            assert inclusion_proof(LEAF_HASHES[:size], index) == REF.path(index, 0, size)


@given(st.data())
def test_list_based_inclusion_proofs_match_reference(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(LEAF_HASHES[:size], index)
    assert proof == REF.path(index, 0, size)
    verify_inclusion(LEAF_HASHES[index], index, size, proof, REF.mth(0, size))


def _consistency_matches(leaves: MerkleTree | list[bytes], size1: int, size2: int) -> None:
    proof = consistency_proof(leaves, size1, size2)
    expected = REF.proof(size1, size2) if 0 < size1 < size2 else []
    assert proof == expected, (size1, size2)
    assert len(proof) == consistency_proof_length(size1, size2)
    verify_consistency(size1, size2, proof, REF.mth(0, size1), REF.mth(0, size2))


def test_consistency_proofs_match_reference_for_every_pair_to_128() -> None:
    for size2 in range(0, 129):
        for size1 in range(0, size2 + 1):
            _consistency_matches(TREE, size1, size2)


def test_list_based_consistency_proofs_match_reference_exhaustively_to_64() -> None:
    for size2 in range(0, 65):
        leaves = LEAF_HASHES[:size2]
        for size1 in range(0, size2 + 1):
            _consistency_matches(leaves, size1, size2)


@given(st.data())
def test_consistency_proofs_match_reference_beyond(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(0, MAX), label="size2")
    size1 = data.draw(st.integers(0, size2), label="size1")
    _consistency_matches(LEAF_HASHES[:size2], size1, size2)
    _consistency_matches(TREE, size1, size2)


def test_large_tree_proofs_agree_between_cache_and_leaves() -> None:
    # Past the reference's reach, the O(log n) cache and the O(n) list path must agree.
    n = 2**16 + 5
    leaves = [leaf_hash(b"big %d" % i) for i in range(n)]
    tree = MerkleTree(leaves)
    tree_root = root(leaves)
    assert tree.root() == tree_root
    for index in (0, 1, 2**15, 2**16 - 1, 2**16, n - 1):
        proof = inclusion_proof(tree, index)
        assert proof == inclusion_proof(leaves, index)
        verify_inclusion(leaves[index], index, n, proof, tree_root)
    for size1 in (1, 3, 2**16, 2**16 + 1):
        proof = consistency_proof(tree, size1, n)
        assert proof == consistency_proof(leaves, size1, n)
        verify_consistency(size1, n, proof, tree.root(size1), tree_root)


def test_generic_paths_take_any_subtree_source() -> None:
    calls: list[tuple[int, int]] = []

    def subtree(start: int, end: int) -> bytes:
        calls.append((start, end))
        return REF.mth(start, end)

    assert inclusion_path(6, 7, subtree) == REF.path(6, 0, 7)
    assert calls == [(0, 4), (4, 6)]  # one subtree per level, nothing else
    assert consistency_path(5, 7, subtree) == REF.proof(5, 7)


# --- tampering must fail ------------------------------------------------------------


def inclusion_probes(
    index: int, size: int, proof: list[bytes]
) -> Iterator[tuple[str, tuple[object, ...]]]:
    """Ways to tamper with a valid (leaf, index, size, proof, root), each of which must fail.

    A proof shows the leaf belongs to the tree with *that root*; the size and the root
    come together from one signed checkpoint. So a wrong size is paired with the true
    root of that size, or with sizes that change the proof's shape (x2, /2).
    """
    leaf, tree_root = LEAF_HASHES[index], REF.mth(0, size)
    n = len(proof)
    for i in range(n):
        for bit in (0, 7, 100, 255):
            bad = list(proof)
            bad[i] = flip(bad[i], bit)
            yield f"flip bit {bit} of proof[{i}]", (leaf, index, size, bad, tree_root)
        yield f"drop proof[{i}]", (leaf, index, size, proof[:i] + proof[i + 1 :], tree_root)
        short = [*proof[:i], proof[i][:31], *proof[i + 1 :]]
        yield f"truncate proof[{i}]", (leaf, index, size, short, tree_root)
        long = [*proof[:i], proof[i] + b"\x00", *proof[i + 1 :]]
        yield f"lengthen proof[{i}]", (leaf, index, size, long, tree_root)
    for i in range(n - 1):
        bad = list(proof)
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
        yield f"swap proof[{i}] and proof[{i + 1}]", (leaf, index, size, bad, tree_root)
    if n > 2:
        yield "reversed proof", (leaf, index, size, proof[::-1], tree_root)
    for extra in (OTHER_HASH, tree_root, leaf):
        yield "append a hash", (leaf, index, size, [*proof, extra], tree_root)
        yield "prepend a hash", (leaf, index, size, [extra, *proof], tree_root)
        yield "insert a hash", (leaf, index, size, [*proof[:1], extra, *proof[1:]], tree_root)
    yield "empty proof" if n else "one hash", (leaf, index, size, [] if n else [leaf], tree_root)
    for other in range(size + 3):
        if other != index:
            yield f"index {other}", (leaf, other, size, proof, tree_root)
    for other in range(index + 1, min(size + 4, MAX)):
        if other != size:
            yield f"size {other} with its root", (leaf, index, other, proof, REF.mth(0, other))
    yield "size x2", (leaf, index, size * 2, proof, tree_root)
    yield "size /2", (leaf, index, size // 2, proof, tree_root)
    yield "size 0", (leaf, index, 0, proof, tree_root)
    yield "other leaf", (LEAF_HASHES[index + 1], index, size, proof, tree_root)
    yield "entry hashed without prefix", (sha256(DATA[index]), index, size, proof, tree_root)
    yield "flipped leaf", (flip(leaf, 3), index, size, proof, tree_root)
    yield "flipped root", (leaf, index, size, proof, flip(tree_root, 250))
    yield "empty tree root", (leaf, index, size, proof, EMPTY_ROOT)
    yield "root of size - 1", (leaf, index, size, proof, REF.mth(0, size - 1))
    yield "root of size + 1", (leaf, index, size, proof, REF.mth(0, size + 1))
    yield "31-byte leaf", (leaf[:31], index, size, proof, tree_root)
    yield "31-byte root", (leaf, index, size, proof, tree_root[:31])
    yield "33-byte root", (leaf, index, size, proof, tree_root + b"\x00")


def test_tampered_inclusion_proofs_fail_for_every_leaf_to_33() -> None:
    accepted = []
    for size in range(1, 34):
        for index in range(size):
            proof = REF.path(index, 0, size)
            verify_inclusion(LEAF_HASHES[index], index, size, proof, REF.mth(0, size))
            for desc, args in inclusion_probes(index, size, proof):
                if not rejected(verify_inclusion, *args):
                    accepted.append((index, size, desc))
    assert accepted == []


def test_every_single_bit_flip_fails_an_inclusion_proof() -> None:
    index, size = 5, 13
    leaf, proof, tree_root = LEAF_HASHES[index], REF.path(index, 0, size), REF.mth(0, size)
    for i in range(len(proof)):
        for bit in range(HASH_SIZE * 8):
            bad = list(proof)
            bad[i] = flip(bad[i], bit)
            assert rejected(verify_inclusion, leaf, index, size, bad, tree_root), (i, bit)
    for bit in range(HASH_SIZE * 8):
        assert rejected(verify_inclusion, flip(leaf, bit), index, size, proof, tree_root)
        assert rejected(verify_inclusion, leaf, index, size, proof, flip(tree_root, bit))


MUTATIONS = ["flip", "drop", "duplicate", "swap", "replace", "truncate", "index", "size"]


@given(st.data())
def test_tampered_inclusion_proofs_fail_in_larger_trees(data: st.DataObject) -> None:
    size = data.draw(st.integers(2, MAX), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(TREE, index, size=size)
    leaf, tree_root = LEAF_HASHES[index], REF.mth(0, size)
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    i = data.draw(st.integers(0, len(proof) - 1), label="element")
    bad, bad_index, bad_size, bad_root = list(proof), index, size, tree_root
    if kind == "flip":
        bad[i] = flip(bad[i], data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit"))
    elif kind == "drop":
        del bad[i]
    elif kind == "duplicate":
        bad.insert(i, bad[i])
    elif kind == "swap":
        j = data.draw(st.integers(0, len(proof) - 1).filter(lambda j: j != i), label="other")
        bad[i], bad[j] = bad[j], bad[i]
    elif kind == "replace":
        bad[i] = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != proof[i]))
    elif kind == "truncate":
        bad[i] = bad[i][: data.draw(st.integers(0, 31), label="length")]
    elif kind == "index":
        bad_index = data.draw(st.integers(0, size + 5).filter(lambda j: j != index))
    else:
        bad_size = data.draw(st.integers(index + 1, MAX).filter(lambda s: s != size))
        bad_root = REF.mth(0, bad_size)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, bad_index, bad_size, bad, bad_root)


def consistency_probes(
    size1: int, size2: int, proof: list[bytes]
) -> Iterator[tuple[str, tuple[object, ...]]]:
    """Ways to tamper with a valid consistency proof (0 < size1 < size2), each must fail."""
    root1, root2 = REF.mth(0, size1), REF.mth(0, size2)
    n = len(proof)
    for i in range(n):
        for bit in (0, 7, 100, 255):
            bad = list(proof)
            bad[i] = flip(bad[i], bit)
            yield f"flip bit {bit} of proof[{i}]", (size1, size2, bad, root1, root2)
        yield f"drop proof[{i}]", (size1, size2, proof[:i] + proof[i + 1 :], root1, root2)
        short = [*proof[:i], proof[i][:31], *proof[i + 1 :]]
        yield f"truncate proof[{i}]", (size1, size2, short, root1, root2)
    for i in range(n - 1):
        bad = list(proof)
        bad[i], bad[i + 1] = bad[i + 1], bad[i]
        yield f"swap proof[{i}] and proof[{i + 1}]", (size1, size2, bad, root1, root2)
    if n > 2:
        yield "reversed proof", (size1, size2, proof[::-1], root1, root2)
    for extra in (OTHER_HASH, root1, root2, proof[0]):
        yield "append a hash", (size1, size2, [*proof, extra], root1, root2)
        yield "prepend a hash", (size1, size2, [extra, *proof], root1, root2)
    yield "empty proof", (size1, size2, [], root1, root2)
    for other in range(0, size2 + 2):
        if other != size1:
            yield f"size1 {other} with its root", (other, size2, proof, REF.mth(0, other), root2)
    for other in range(0, min(size2 + 4, MAX)):
        if other != size2:
            yield f"size2 {other} with its root", (size1, other, proof, root1, REF.mth(0, other))
    yield "size1 - 1", (size1 - 1, size2, proof, root1, root2)
    yield "size1 + 1", (size1 + 1, size2, proof, root1, root2)
    yield "size1 ^ 2", (size1 ^ 2, size2, proof, root1, root2)
    yield "size2 x2", (size1, size2 * 2, proof, root1, root2)
    yield "size2 / 2", (size1, size2 // 2, proof, root1, root2)
    yield "swapped roots", (size1, size2, proof, root2, root1)
    yield "same roots", (size1, size2, proof, root1, root1)
    yield "flipped root1", (size1, size2, proof, flip(root1, 9), root2)
    yield "flipped root2", (size1, size2, proof, root1, flip(root2, 9))
    yield "empty tree root1", (size1, size2, proof, EMPTY_ROOT, root2)
    yield "31-byte root1", (size1, size2, proof, root1[:31], root2)
    yield "31-byte root2", (size1, size2, proof, root1, root2[:31])


def test_tampered_consistency_proofs_fail_for_every_pair_to_33() -> None:
    accepted = []
    for size2 in range(2, 34):
        for size1 in range(1, size2):
            proof = REF.proof(size1, size2)
            verify_consistency(size1, size2, proof, REF.mth(0, size1), REF.mth(0, size2))
            for desc, args in consistency_probes(size1, size2, proof):
                if not rejected(verify_consistency, *args):
                    accepted.append((size1, size2, desc))
    assert accepted == []


def test_every_single_bit_flip_fails_a_consistency_proof() -> None:
    for size1, size2 in ((4, 13), (5, 13)):  # size1 a power of two, and not
        proof, root1, root2 = REF.proof(size1, size2), REF.mth(0, size1), REF.mth(0, size2)
        for i in range(len(proof)):
            for bit in range(HASH_SIZE * 8):
                bad = list(proof)
                bad[i] = flip(bad[i], bit)
                assert rejected(verify_consistency, size1, size2, bad, root1, root2), (i, bit)
        for bit in range(HASH_SIZE * 8):
            assert rejected(verify_consistency, size1, size2, proof, flip(root1, bit), root2)
            assert rejected(verify_consistency, size1, size2, proof, root1, flip(root2, bit))


@given(st.data())
def test_tampered_consistency_proofs_fail_in_larger_trees(data: st.DataObject) -> None:
    size2 = data.draw(st.integers(2, MAX), label="size2")
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    proof = consistency_proof(TREE, size1, size2)
    root1, root2 = REF.mth(0, size1), REF.mth(0, size2)
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    i = data.draw(st.integers(0, len(proof) - 1), label="element")
    bad, bad1, bad2, bad_root1, bad_root2 = list(proof), size1, size2, root1, root2
    if kind == "flip":
        bad[i] = flip(bad[i], data.draw(st.integers(0, HASH_SIZE * 8 - 1), label="bit"))
    elif kind == "drop":
        del bad[i]
    elif kind == "duplicate":
        bad.insert(i, bad[i])
    elif kind == "swap":
        if len(proof) == 1:
            bad = [root1, *bad] if data.draw(st.booleans()) else [*bad, root2]
        else:
            j = data.draw(st.integers(0, len(proof) - 1).filter(lambda j: j != i), label="other")
            bad[i], bad[j] = bad[j], bad[i]
    elif kind == "replace":
        bad[i] = data.draw(st.binary(min_size=32, max_size=32).filter(lambda b: b != proof[i]))
    elif kind == "truncate":
        bad[i] = bad[i][: data.draw(st.integers(0, 31), label="length")]
    elif kind == "index":
        bad1 = data.draw(st.integers(0, size2).filter(lambda s: s != size1), label="size1")
        bad_root1 = REF.mth(0, bad1)
    else:
        bad2 = data.draw(st.integers(0, MAX).filter(lambda s: s != size2), label="size2")
        bad_root2 = REF.mth(0, bad2)
    with pytest.raises(ProofError):
        verify_consistency(bad1, bad2, bad, bad_root1, bad_root2)


# --- edges of the verifiers and generators -------------------------------------------


def test_inclusion_edges() -> None:
    leaf = LEAF_HASHES[0]
    # A one-leaf tree: the root is the leaf hash, the proof is empty.
    verify_inclusion(leaf, 0, 1, [], leaf)
    for index, size in ((0, 0), (1, 0), (1, 1), (2, 1), (8, 8), (2**64, 2**64)):
        with pytest.raises(ProofError, match="not in a tree"):
            verify_inclusion(leaf, index, size, [], leaf)
    with pytest.raises(ProofError, match="needs 3 hashes, got 2"):
        verify_inclusion(leaf, 0, 8, [leaf, leaf], leaf)
    with pytest.raises(ProofError, match="proof\\[1\\] must be 32 bytes, got 31"):
        verify_inclusion(leaf, 0, 8, [leaf, leaf[:31], leaf], leaf)
    # Huge sizes fail on the length before any hashing.
    with pytest.raises(ProofError, match="needs 64 hashes"):
        verify_inclusion(leaf, 0, 2**64, [leaf], leaf)


def test_consistency_edges() -> None:
    r1, r2 = REF.mth(0, 1), REF.mth(0, 2)
    # Degenerate cases the RFC leaves out: empty proof only.
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, REF.mth(0, 5))
    verify_consistency(3, 3, [], REF.mth(0, 3), REF.mth(0, 3))
    bad_cases: list[tuple[int, int, list[bytes], bytes, bytes, str]] = [
        (0, 0, [], r1, r1, "size 0"),
        (0, 2, [], r1, r2, "size 0"),
        (0, 2, [r2], EMPTY_ROOT, r2, "must be empty"),
        (0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT, "must be empty"),
        (1, 1, [], r1, r2, "different roots"),
        (1, 1, [r1], r1, r1, "must be empty"),
        (2, 1, [], r2, r1, "larger than"),
        (1, 0, [], r1, EMPTY_ROOT, "larger than"),
        (1, 2, [], r1, r2, "is empty"),
        (1, 2, [LEAF_HASHES[1], LEAF_HASHES[1]], r1, r2, "needs 1 hashes, got 2"),
        (1, 2, [LEAF_HASHES[1]], r1[:31], r2, "root1 must be 32 bytes"),
        (1, 2, [LEAF_HASHES[1]], r1, r2 + b"\x00", "root2 must be 32 bytes"),
        # With size1 a power of two root1 seeds both computations, so a wrong root1
        # shows up as a root2 mismatch; with size1 = 3 it is caught as itself.
        (1, 2, [LEAF_HASHES[1]], r2, r2, "root2"),
        (1, 2, [LEAF_HASHES[1]], r1, r1, "root2"),
        (3, 4, REF.proof(3, 4), r2, REF.mth(0, 4), "root1"),
        (3, 4, REF.proof(3, 4), REF.mth(0, 3), r2, "root2"),
    ]
    for size1, size2, proof, root1, root2, message in bad_cases:
        with pytest.raises(ProofError, match=message):
            verify_consistency(size1, size2, proof, root1, root2)
    verify_consistency(1, 2, [LEAF_HASHES[1]], r1, r2)


@pytest.mark.parametrize(
    "args",
    [
        ("leaf", 0, 1, [], LEAF_HASHES[0]),  # a str leaf
        (LEAF_HASHES[0], 0, 1, [], None),  # no root
        (LEAF_HASHES[0], -1, 1, [], LEAF_HASHES[0]),
        (LEAF_HASHES[0], 0, -1, [], LEAF_HASHES[0]),
        (LEAF_HASHES[0], 0.0, 1, [], LEAF_HASHES[0]),
        (LEAF_HASHES[0], 0, 2, LEAF_HASHES[1], REF.mth(0, 2)),  # bytes, not a list
        (LEAF_HASHES[0], 0, 2, LEAF_HASHES[1].hex(), REF.mth(0, 2)),
        (LEAF_HASHES[0], 0, 2, None, REF.mth(0, 2)),
        (LEAF_HASHES[0], 0, 2, [LEAF_HASHES[1].hex()], REF.mth(0, 2)),
        (LEAF_HASHES[0], 0, 2, [None], REF.mth(0, 2)),
    ],
)
def test_malformed_inclusion_arguments_raise_proof_error(args: tuple[object, ...]) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [
        (1, 2, [LEAF_HASHES[1]], "root1", REF.mth(0, 2)),
        (1, 2, [LEAF_HASHES[1]], REF.mth(0, 1), None),
        (-1, 2, [], EMPTY_ROOT, REF.mth(0, 2)),
        (1, "2", [LEAF_HASHES[1]], REF.mth(0, 1), REF.mth(0, 2)),
        (1, 2, LEAF_HASHES[1], REF.mth(0, 1), REF.mth(0, 2)),
        (1, 2, [7], REF.mth(0, 1), REF.mth(0, 2)),
        (1, 2, None, REF.mth(0, 1), REF.mth(0, 2)),
    ],
)
def test_malformed_consistency_arguments_raise_proof_error(args: tuple[object, ...]) -> None:
    with pytest.raises(ProofError):
        verify_consistency(*args)  # type: ignore[arg-type]


def test_verifiers_accept_bytes_like_hashes() -> None:
    proof = REF.path(2, 0, 5)
    verify_inclusion(
        bytearray(LEAF_HASHES[2]), 2, 5, tuple(memoryview(p) for p in proof), REF.mth(0, 5)
    )


def test_proof_error_is_a_ledger_error() -> None:
    assert issubclass(ProofError, LedgerError)


def test_generators_refuse_bad_arguments() -> None:
    leaves = LEAF_HASHES[:8]
    for call in (
        lambda: inclusion_proof(leaves, 8),
        lambda: inclusion_proof(leaves, -1),
        lambda: inclusion_proof([], 0),
        lambda: inclusion_proof(leaves, 0, size=9),
        lambda: inclusion_proof(TREE, 5, size=5),
        lambda: consistency_proof(leaves, 3, 2),
        lambda: consistency_proof(leaves, 3, 9),
        lambda: consistency_proof(leaves, -1, 2),
        lambda: inclusion_proof_length(3, 3),
        lambda: consistency_proof_length(4, 3),
        lambda: subtree_root(leaves, 3, 9),
        lambda: subtree_root(leaves, 4, 3),
        lambda: TREE.root(len(TREE) + 1),
        lambda: root([b"\x00" * 31]),
        lambda: root([bytearray(32)]),  # type: ignore[list-item]
        lambda: MerkleTree().append(b"short"),
    ):
        with pytest.raises(ValueError):
            call()


def test_lengths_follow_the_proofs_at_size_2_to_the_64() -> None:
    # Sizes far past anything hashed: the length formulas are plain bit arithmetic.
    size = 2**64
    assert inclusion_proof_length(0, size) == 64
    assert inclusion_proof_length(size - 1, size) == 64
    assert inclusion_proof_length(size, size + 1) == 1  # a lone leaf on the right edge
    assert inclusion_proof_length(size - 1, size + 1) == 65
    assert consistency_proof_length(2**63, size) == 1  # one complete right half
    assert consistency_proof_length(1, size) == 64


@settings(max_examples=300)
@given(st.integers(1, 2**70), st.data())
def test_length_formulas_match_generated_proofs_on_a_lazy_huge_tree(
    size: int, data: st.DataObject
) -> None:
    # With a stand-in subtree function the generators run for any size, so the
    # length formulas the verifiers rely on are checked far beyond real trees.
    def fake(start: int, end: int) -> bytes:
        return sha256(b"%d-%d" % (start, end))

    index = data.draw(st.integers(0, size - 1), label="index")
    assert len(inclusion_path(index, size, fake)) == inclusion_proof_length(index, size)
    size1 = data.draw(st.integers(0, size), label="size1")
    assert len(consistency_path(size1, size, fake)) == consistency_proof_length(size1, size)
