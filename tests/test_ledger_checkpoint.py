"""Signed notes, checkpoints, the log's checkpoint signer, and the witness.

Evidence, in order:

1. Known answers published by others, each cited where it is used:
   golang.org/x/mod ``sumdb/note/note_test.go`` and ``note.go`` (the PeterNeumann and
   EnochRoot keys and notes), transparency-dev/formats ``note/note_cosigv1_test.go``
   (a type-0x04 witness key, a verifier key whose base64 contains '+', a cosignature
   timestamp), and the C2SP specs ``tlog-checkpoint.md`` / ``tlog-cosignature.md``
   (their example checkpoint and cosignature line).
2. Round trips, and tampering with every part of a signed note, which must raise
   ``NoteInvalid`` (another exception type fails the test).
3. The log refusing rollbacks and forks, and the witness refusing them, on real trees
   built with ``ledger.merkle`` and proofs from ``ledger.proofs``; a hypothesis test
   grows random trees and checks every honest extension is cosigned and every forged
   one refused.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    Checkpoint,
    CheckpointInvalid,
    CheckpointRefused,
    CheckpointSigner,
    CosignatureSigner,
    CosignatureVerifier,
    Witness,
    WitnessRefused,
    WitnessStateError,
    cosignature_message,
    cosignature_timestamp,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from ledger.errors import LedgerError, ProofError
from ledger.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from ledger.note import (
    MAX_SIGNATURES,
    NoteInvalid,
    NoteSignature,
    Signer,
    Verifier,
    add_signatures,
    key_id,
    open_note,
    parse_note,
    sign_note,
    verify_note,
)
from ledger.proofs import consistency_proof

# --- known answers ------------------------------------------------------------------
# golang.org/x/mod, sumdb/note/note_test.go (TestNewSigner, TestSign, TestOpen) and the
# package documentation in sumdb/note/note.go.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG0"
    "1oOTGwnWLox33WWd1RvMc+QQ=\n"
)

# transparency-dev/formats, note/note_cosigv1_test.go (TestCoSigV1NewVerifier,
# TestCoSigV1Timestamp).
TEST_VKEY_WITH_PLUS = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
REMORA_COSIG_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
TRANSPARENCY_DEV_COSIG = (
    "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWW"
    "OworDcFiEBYJXORmnFBOBA=="
)

# C2SP tlog-cosignature.md (and tlog-checkpoint.md for the first signature line): the
# example checkpoint, its log signature and a witness cosignature made at 1679315147
# (the spec's example signed message reads "time 1679315147").
SPEC_COSIGNED = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URY"
    "N7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)

VKEY_FORMAT = re.compile(r"[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+={0,2}")
ORIGIN = "onceonly.example/ledger"
T0 = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)


def fixed_key(label: str) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key, so failures replay exactly."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def tree(n: int, tag: str = "honest") -> MerkleTree:
    return MerkleTree(leaf_hash(f"{tag} entry {i}".encode()) for i in range(n))


def forged(n: int, changed: int) -> MerkleTree:
    """The honest tree of ``n`` leaves with leaf ``changed`` rewritten."""
    leaves = list(tree(n))
    leaves[changed] = leaf_hash(f"forged entry {changed}".encode())
    return MerkleTree(leaves)


def replace_line(signed: str, old: str, new: str) -> str:
    assert old in signed
    return signed.replace(old, new)


# --- 1. known answers ---------------------------------------------------------------


def test_go_signer_key_parses_and_prints_back() -> None:
    signer = Signer.parse(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == bytes.fromhex("c74f20a3")
    assert signer.signer_key() == PETER_SKEY
    assert signer.verifier().verifier_key() == PETER_VKEY


def test_go_verifier_key_parses_and_prints_back() -> None:
    for vkey in (PETER_VKEY, ENOCH_VKEY):
        assert Verifier.parse(vkey).verifier_key() == vkey
    assert Verifier.parse(ENOCH_VKEY).key_id == bytes.fromhex("af0cfe78")


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    verifier = Verifier.parse(PETER_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_bytes).digest()[:4]
    assert key_id("PeterNeumann", verifier.public_key) == expected == bytes.fromhex("c74f20a3")


def test_go_sign_gives_the_published_note_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the signature line must match Go's exactly.
    assert sign_note(GO_TEXT, [Signer.parse(PETER_SKEY)]) == GO_TEXT + "\n" + PETER_SIG


def test_go_open_one_known_one_unknown_and_both_known() -> None:
    peter, enoch = Verifier.parse(PETER_VKEY), Verifier.parse(ENOCH_VKEY)
    signed = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(signed, [peter]) == (GO_TEXT, ["PeterNeumann"])
    result = verify_note(signed, [peter])
    assert [s.name for s in result.unverified] == ["EnochRoot"]
    assert result.unverified[0].key_id == bytes.fromhex("af0cfe78")
    text, names = open_note(signed, [peter, enoch])
    assert (text, names) == (GO_TEXT, ["PeterNeumann", "EnochRoot"])
    with pytest.raises(NoteInvalid, match="no verifiable signatures"):
        open_note(signed, [])


def test_go_invalid_signature_by_a_known_key_rejects_the_note() -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteInvalid, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(GO_TEXT + "\n" + bad, [Verifier.parse(PETER_VKEY)])


@pytest.mark.parametrize(
    "message",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUg"
        "YN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ],
)
def test_go_malformed_notes_are_rejected(message: str) -> None:
    # The badMsgs list of TestOpen in sumdb/note/note_test.go.
    with pytest.raises(NoteInvalid, match="malformed note"):
        open_note(message, [Verifier.parse(PETER_VKEY)])


def test_go_non_utf8_note_is_rejected() -> None:
    # "\xff" + text + "\n" + peterSig from the same badMsgs list, as bytes.
    message = b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode()
    with pytest.raises(NoteInvalid, match="malformed note"):
        open_note(message, [Verifier.parse(PETER_VKEY)])


def test_go_verifier_key_manglings_are_rejected() -> None:
    # TestNewVerifier: every proper substring and every one-byte increment must fail.
    manglings = [
        PETER_VKEY[i:j]
        for i in range(len(PETER_VKEY) + 1)
        for j in range(i + 1, len(PETER_VKEY) + 1)
        if (i, j) != (0, len(PETER_VKEY))
    ]
    manglings += [
        PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        for i in range(len(PETER_VKEY))
    ]
    # Wrong length key and unknown algorithm, each with a key ID adjusted to match.
    manglings += [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]
    accepted = []
    for key in manglings:
        try:
            Verifier.parse(key)
        except ValueError:
            continue
        accepted.append(key)
    assert accepted == []


def test_go_signer_key_manglings_are_rejected() -> None:
    # TestNewSigner: every proper substring and every one-byte increment must fail.
    manglings = [
        PETER_SKEY[i:j]
        for i in range(len(PETER_SKEY) + 1)
        for j in range(i + 1, len(PETER_SKEY) + 1)
        if (i, j) != (0, len(PETER_SKEY))
    ]
    manglings += [
        PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        for i in range(len(PETER_SKEY))
    ]
    accepted = []
    for key in manglings:
        try:
            Signer.parse(key)
        except ValueError:
            continue
        accepted.append(key)
    assert accepted == []


def test_verifier_key_whose_base64_contains_a_plus() -> None:
    # transparency-dev/formats note_cosigv1_test.go: only the first two '+' separate.
    verifier = Verifier.parse(TEST_VKEY_WITH_PLUS)
    assert (verifier.name, verifier.key_id.hex()) == ("TEST", "7997405c")
    assert verifier.verifier_key() == TEST_VKEY_WITH_PLUS


def test_published_witness_key_of_type_0x04() -> None:
    # transparency-dev/formats note_cosigv1_test.go: a native cosignature/v1 key.
    witness = CosignatureVerifier.parse(REMORA_COSIG_VKEY)
    assert witness.key_id == bytes.fromhex("da77ade7")
    raw = witness.public_key.public_bytes_raw()
    assert hashlib.sha256(b"remora.n621.de\n\x04" + raw).digest()[:4] == witness.key_id
    assert witness.verifier_key() == REMORA_COSIG_VKEY
    with pytest.raises(ValueError, match="signature type"):
        Verifier.parse(REMORA_COSIG_VKEY)  # not a plain Ed25519 (0x01) key


def test_published_cosignature_timestamps() -> None:
    # tlog-cosignature.md's example line, and TestCoSigV1Timestamp's signature.
    _, (log_sig, witness_sig) = parse_note(SPEC_COSIGNED)
    assert log_sig.name == "example.com/behind-the-sofa"
    assert witness_sig.name == "witness.example.com/w1"
    assert cosignature_timestamp(witness_sig) == 1679315147
    raw = base64.b64decode(TRANSPARENCY_DEV_COSIG)
    sig = NoteSignature("w", raw[:4], raw[4:])
    assert cosignature_timestamp(sig) == 1727964367
    assert sig.encoded == TRANSPARENCY_DEV_COSIG
    with pytest.raises(NoteInvalid, match="not an Ed25519 cosignature"):
        cosignature_timestamp(log_sig)  # a plain signature carries no timestamp


def test_spec_example_checkpoint_parses_and_prints_back() -> None:
    text, signatures = parse_note(SPEC_COSIGNED)
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.body() == text
    assert "".join(s.line() for s in signatures) == SPEC_COSIGNED[len(text) + 1 :]


# --- 2. signed notes ----------------------------------------------------------------


@pytest.fixture
def alice() -> Signer:
    return Signer("alice.example/key", fixed_key("alice"))


@pytest.fixture
def bob() -> Signer:
    return Signer("bob.example/key", fixed_key("bob"))


@pytest.mark.parametrize(
    "text",
    [
        "one line\n",
        "\n",
        "a\n\nblank line inside\n",
        "ends with a blank line\n\n",
        "a\n\n— looks like a signature line\n",
        "无需证明你妈是你妈\n",
    ],
)
def test_note_round_trip(alice: Signer, text: str) -> None:
    signed = sign_note(text, [alice])
    assert signed.startswith(text + "\n— alice.example/key ")
    assert open_note(signed, [alice.verifier()]) == (text, [alice.name])
    assert open_note(signed.encode(), [alice.verifier()]).text == text


note_text = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"]) | st.just("\n"), max_size=80
).map(lambda s: s + "\n")


@given(text=note_text)
def test_note_round_trip_property(text: str) -> None:
    signer = Signer("prop.example", fixed_key("prop"))
    assert open_note(sign_note(text, [signer]), [signer.verifier()]) == (text, [signer.name])


def test_tampered_body_is_rejected(alice: Signer) -> None:
    signed = sign_note("size 10\n", [alice])
    with pytest.raises(NoteInvalid, match="invalid signature"):
        open_note(signed.replace("size 10", "size 11"), [alice.verifier()])


def test_tampered_signature_is_rejected(alice: Signer) -> None:
    (sig,) = parse_note(sign_note("x\n", [alice])).signatures
    flipped = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(NoteInvalid, match="invalid signature"):
        open_note("x\n\n" + flipped.line(), [alice.verifier()])


def test_tampered_key_id_or_name_makes_the_signature_unknown(alice: Signer) -> None:
    (sig,) = parse_note(sign_note("x\n", [alice])).signatures
    other_id = NoteSignature(sig.name, bytes([sig.key_id[0] ^ 1]) + sig.key_id[1:], sig.signature)
    other_name = NoteSignature("mallory.example/key", sig.key_id, sig.signature)
    for tampered in (other_id, other_name):
        # Unknown keys are ignored, which leaves no verified signature.
        with pytest.raises(NoteInvalid, match="no verifiable signatures"):
            open_note("x\n\n" + tampered.line(), [alice.verifier()])


def test_only_unknown_signatures_are_rejected(alice: Signer, bob: Signer) -> None:
    with pytest.raises(NoteInvalid, match="no verifiable signatures"):
        open_note(sign_note("x\n", [alice]), [bob.verifier()])


def test_unknown_signatures_beside_a_verified_one_are_ignored(alice: Signer, bob: Signer) -> None:
    signed = sign_note("x\n", [bob, alice])
    assert open_note(signed, [alice.verifier()]) == ("x\n", [alice.name])


def test_bad_signature_by_a_known_key_rejects_even_with_a_good_one(
    alice: Signer, bob: Signer
) -> None:
    good = sign_note("x\n", [alice])
    bad_bob = parse_note(sign_note("y\n", [bob])).signatures[0].line()  # signs other text
    with pytest.raises(NoteInvalid, match=r"invalid signature for key bob\.example/key"):
        open_note(good + bad_bob, [alice.verifier(), bob.verifier()])
    # Without bob's key the same line is merely unknown, and ignored.
    assert open_note(good + bad_bob, [alice.verifier()]).names == [alice.name]


def test_duplicate_signature_lines_are_rejected(alice: Signer, bob: Signer) -> None:
    signed = sign_note("x\n", [alice])
    line = signed.split("\n\n", 1)[1]
    with pytest.raises(NoteInvalid, match="duplicate signature line"):
        open_note(signed + line, [alice.verifier()])
    unknown = parse_note(sign_note("x\n", [bob])).signatures[0].line()
    with pytest.raises(NoteInvalid, match="duplicate signature line"):
        open_note(signed + unknown + unknown, [alice.verifier()])


def test_ambiguous_verifiers_are_rejected(alice: Signer) -> None:
    @dataclass(frozen=True)
    class Impostor:
        name: str
        key_id: bytes

        def verify(self, message: bytes, signature: bytes) -> bool:
            return True

    impostor = Impostor(alice.name, alice.key_id)
    with pytest.raises(NoteInvalid, match="ambiguous key"):
        open_note(sign_note("x\n", [alice]), [alice.verifier(), impostor])
    # The same verifier twice is not ambiguous.
    assert open_note(sign_note("x\n", [alice]), [alice.verifier(), alice.verifier()]).names


def test_too_many_signatures_are_rejected(alice: Signer) -> None:
    signers = [Signer(f"k{i}.example", fixed_key(f"k{i}")) for i in range(MAX_SIGNATURES + 1)]
    signed = sign_note("x\n", signers)
    with pytest.raises(NoteInvalid, match="more than 100 signatures"):
        open_note(signed, [signers[0].verifier()])
    assert open_note(sign_note("x\n", signers[:16]), [signers[0].verifier()]).names


@pytest.mark.parametrize(
    "signed",
    [
        "x\n\n— alice.example/key",  # no final newline
        "x\n\n—alice.example/key AAAAAAA=\n",  # no space after the dash
        "x\n\n- alice.example/key AAAAAAA=\n",  # hyphen, not an EM DASH
        "x\n\n— alice.example/key AAAA\n",  # only a key ID, no signature
        "x\n\n— alice.example/key AAAAAAB=\n",  # non-canonical base64 (padding bits)
        "x\n\n— alice.example/key AAAAAAA\n",  # missing padding
        "x\n\n— alice.example/key  AAAAAAA=\n",  # two spaces
        "x\n\n— a+b AAAAAAA=\n",  # '+' in the name
        "x\r\n\n— alice.example/key AAAAAAA=\n",  # carriage return
        "x\n\n\n",  # blank line, no signatures
        "x\ud800\n\n— alice.example/key AAAAAAA=\n",  # lone surrogate: not UTF-8
    ],
)
def test_malformed_notes_are_rejected(alice: Signer, signed: str) -> None:
    with pytest.raises(NoteInvalid, match="malformed note"):
        open_note(signed, [alice.verifier()])


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "ideographic\u3000space", "nl\n"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid key name"):
        Signer(name, fixed_key("n"))


@pytest.mark.parametrize("text", ["no newline", "", "bell\x07\n", "cr\r\n", "\ud800\n"])
def test_sign_note_refuses_texts_that_cannot_be_notes(alice: Signer, text: str) -> None:
    with pytest.raises(ValueError, match="note text"):
        sign_note(text, [alice])


def test_sign_note_needs_distinct_signers(alice: Signer) -> None:
    with pytest.raises(ValueError, match="at least one signer"):
        sign_note("x\n", [])
    with pytest.raises(ValueError, match="given twice"):
        sign_note("x\n", [alice, alice])


def test_verifier_and_signer_key_strings_round_trip() -> None:
    signer = Signer.generate("onceonly.example/ledger")
    vkey = signer.verifier().verifier_key()
    assert VKEY_FORMAT.fullmatch(vkey)
    name, hex_id, material = vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert (name, len(raw), raw[0]) == ("onceonly.example/ledger", 33, 0x01)
    assert hex_id == signer.key_id.hex()
    assert Verifier.parse(vkey) == signer.verifier()
    again = Signer.parse(signer.signer_key())
    assert again.key_id == signer.key_id
    assert again.signer_key() == signer.signer_key()
    assert signer.signer_key() not in repr(signer)


def test_add_signatures_appends_and_replaces_the_same_key(alice: Signer, bob: Signer) -> None:
    signed = sign_note("x\n", [alice])
    both = add_signatures(signed, [bob])
    assert both == signed + parse_note(sign_note("x\n", [bob])).signatures[0].line()
    assert open_note(both, [alice.verifier(), bob.verifier()]).names == [alice.name, bob.name]
    assert add_signatures(both, [alice]).count(alice.name) == 1


# --- 3. checkpoints -----------------------------------------------------------------


def test_checkpoint_body_is_exactly_three_lines() -> None:
    root = tree(5).root()
    b64 = base64.b64encode(root).decode()
    assert Checkpoint(ORIGIN, 5, root).body() == f"{ORIGIN}\n5\n{b64}\n"
    assert Checkpoint(ORIGIN, 0, EMPTY_ROOT).body() == (
        f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    with_ext = Checkpoint(ORIGIN, 5, root, ("ext one", "ext two"))
    assert with_ext.body() == f"{ORIGIN}\n5\n{b64}\next one\next two\n"
    for checkpoint in (Checkpoint(ORIGIN, 5, root), with_ext):
        assert Checkpoint.parse(checkpoint.body()) == checkpoint


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n05\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # leading zero
        f"{ORIGIN}\n+5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        f"{ORIGIN}\n 5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        f"{ORIGIN}\n-1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        f"{ORIGIN}\n\u0665\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # Arabic five
        f"{ORIGIN}\n{2**64}\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # over uint64
        f"{ORIGIN}\n5\nAAAA\n",  # root not 32 bytes
        f"{ORIGIN}\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n",  # non-canonical
        f"{ORIGIN}\n5\n",  # no root line
        f"{ORIGIN}\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",  # no final newline
        "\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",  # empty origin
        f"{ORIGIN}\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",  # empty extension
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(body: str) -> None:
    with pytest.raises(CheckpointInvalid):
        Checkpoint.parse(body)


@pytest.fixture
def log_key() -> Signer:
    return Signer(ORIGIN, fixed_key("log key 2025"))


def test_sign_and_open_checkpoint(log_key: Signer) -> None:
    checkpoint = Checkpoint(ORIGIN, 7, tree(7).root())
    signed = sign_checkpoint(checkpoint, [log_key])
    assert signed.startswith(checkpoint.body() + "\n— " + ORIGIN + " ")
    assert open_checkpoint(signed, [log_key.verifier()]) == checkpoint
    assert open_checkpoint(signed, [log_key.verifier()], origin=ORIGIN) == checkpoint
    with pytest.raises(CheckpointInvalid, match="is not"):
        open_checkpoint(signed, [log_key.verifier()], origin="other.example/log")
    tampered = signed.replace("\n7\n", "\n8\n")
    with pytest.raises(CheckpointInvalid, match="invalid signature"):
        open_checkpoint(tampered, [log_key.verifier()])


def test_a_key_of_another_origin_does_not_vouch_for_a_checkpoint() -> None:
    other = Signer("other.example/log", fixed_key("other"))
    signed = sign_checkpoint(Checkpoint(ORIGIN, 1, tree(1).root()), [other])
    with pytest.raises(CheckpointInvalid, match="no verified signature by a key of"):
        open_checkpoint(signed, [other.verifier()])


def test_key_rotation_two_lines_either_key_verifies(log_key: Signer) -> None:
    new_key = Signer(ORIGIN, fixed_key("log key 2026"))
    third = Signer(ORIGIN, fixed_key("log key never used"))
    assert len({log_key.key_id, new_key.key_id, third.key_id}) == 3
    log = CheckpointSigner(ORIGIN, [log_key, new_key])
    signed = log.sign(4, tree(4).root())
    _, signatures = parse_note(signed)
    assert [(s.name, s.key_id) for s in signatures] == [
        (ORIGIN, log_key.key_id),
        (ORIGIN, new_key.key_id),
    ]
    expected = Checkpoint(ORIGIN, 4, tree(4).root())
    assert open_checkpoint(signed, [log_key.verifier()]) == expected
    assert open_checkpoint(signed, [new_key.verifier()]) == expected
    assert open_note(signed, [log_key.verifier(), new_key.verifier()]).names == [ORIGIN, ORIGIN]
    with pytest.raises(CheckpointInvalid, match="no verifiable signatures"):
        open_checkpoint(signed, [third.verifier()])


# --- 4. the log never signs an inconsistent checkpoint ------------------------------


def test_checkpoint_signer_signs_extensions_and_refuses_rollback_and_forks(
    log_key: Signer,
) -> None:
    honest = tree(20)
    log = CheckpointSigner(ORIGIN, [log_key])
    assert log.previous is None
    log.sign(6, honest.root(6))
    signed = log.sign(13, honest.root(13), consistency_proof(honest, 6, 13))
    assert open_checkpoint(signed, [log_key.verifier()]) == Checkpoint(ORIGIN, 13, honest.root(13))

    with pytest.raises(CheckpointRefused, match="rollback"):
        log.sign(12, honest.root(12))
    with pytest.raises(CheckpointRefused, match="fork"):
        log.sign(13, forged(13, 2).root())
    fork = forged(20, 5)  # rewrites history below 13, then grows
    with pytest.raises(CheckpointRefused, match="inconsistent"):
        log.sign(20, fork.root(), consistency_proof(fork, 13, 20))
    with pytest.raises(CheckpointRefused, match="inconsistent"):
        log.sign(20, honest.root(20), consistency_proof(honest, 12, 20))  # proof of other sizes
    with pytest.raises(CheckpointRefused, match="inconsistent"):
        log.sign(20, honest.root(20))  # no proof at all

    assert log.previous == Checkpoint(ORIGIN, 13, honest.root(13))  # refusals change nothing
    log.sign(13, honest.root(13))  # the same tree again is fine
    log.sign(20, honest.root(20), consistency_proof(honest, 13, 20))
    assert log.previous == Checkpoint(ORIGIN, 20, honest.root(20))


def test_checkpoint_signer_restarts_from_the_last_published_checkpoint(log_key: Signer) -> None:
    honest = tree(9)
    log = CheckpointSigner(ORIGIN, [log_key], previous=Checkpoint(ORIGIN, 5, honest.root(5)))
    with pytest.raises(CheckpointRefused, match="rollback"):
        log.sign(4, honest.root(4))
    log.sign(9, honest.root(9), consistency_proof(honest, 5, 9))


def test_checkpoint_signer_keys_are_named_after_the_origin(log_key: Signer) -> None:
    with pytest.raises(ValueError, match="not named after origin"):
        CheckpointSigner("other.example/log", [log_key])
    with pytest.raises(CheckpointRefused, match="nothing to prove"):
        CheckpointSigner(ORIGIN, [log_key]).sign(3, tree(3).root(), [tree(3).root()])


def test_refusals_are_ledger_errors() -> None:
    assert issubclass(CheckpointRefused, LedgerError)
    assert issubclass(WitnessRefused, LedgerError)
    assert issubclass(NoteInvalid, ProofError)
    assert issubclass(CheckpointInvalid, ProofError)


# --- 5. cosignatures and the witness ------------------------------------------------

WITNESS = "audit-office.example/witness"


@pytest.fixture
def witness_key() -> Ed25519PrivateKey:
    return fixed_key("audit office witness")


@pytest.fixture
def witness(tmp_path: Path, witness_key: Ed25519PrivateKey, log_key: Signer) -> Witness:
    return Witness(WITNESS, witness_key, tmp_path / "witness.json", [log_key.verifier()])


def signed_at(log_key: Signer, t: MerkleTree, size: int) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, t.root(size)), [log_key])


def test_cosignature_line_layout_and_message(witness: Witness, log_key: Signer) -> None:
    honest = tree(3)
    signed = signed_at(log_key, honest, 3)
    cosigned = witness.cosign(signed, [], now=T0)
    assert cosigned.startswith(signed)  # the log's line stays, the witness's is appended
    text, (log_sig, cosig) = parse_note(cosigned)
    assert log_sig.name == ORIGIN and cosig.name == WITNESS

    # Rebuild everything from the spec, without the library's cosignature code.
    public: Ed25519PublicKey = witness.verifier().public_key
    raw = public.public_bytes_raw()
    assert cosig.key_id == hashlib.sha256(WITNESS.encode() + b"\n\x04" + raw).digest()[:4]
    assert len(cosig.signature) == 8 + 64
    timestamp = int.from_bytes(cosig.signature[:8], "big")
    assert timestamp == int(T0.timestamp())
    message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
    assert message == cosignature_message(text, timestamp)
    public.verify(cosig.signature[8:], message)  # raises if wrong

    assert verify_cosignature(cosigned, witness.verifier()) == T0
    assert verify_cosignature(cosigned, witness.verifier(), log_verifiers=[log_key.verifier()])
    assert open_checkpoint(cosigned, [log_key.verifier()]) == Checkpoint.parse(text)


def test_cosignature_is_not_a_plain_note_signature(witness: Witness, log_key: Signer) -> None:
    cosigned = witness.cosign(signed_at(log_key, tree(2), 2), [], now=T0)
    public = witness.verifier().public_key
    plain = Verifier(WITNESS, public)  # the same key as a type-0x01 verifier
    with pytest.raises(NoteInvalid, match="no verifiable signatures"):
        open_note(cosigned, [plain])  # its key ID differs: the line is unknown, ignored
    renamed = CosignatureVerifier("someone.else/witness", public)
    with pytest.raises(CheckpointInvalid, match="no cosignature by witness"):
        verify_cosignature(cosigned, renamed, log_verifiers=[log_key.verifier()])


def test_cosignature_time_and_body_are_covered(witness: Witness, log_key: Signer) -> None:
    cosigned = witness.cosign(signed_at(log_key, tree(2), 2), [], now=T0)
    text, (log_sig, cosig) = parse_note(cosigned)
    later = (int(T0.timestamp()) + 1).to_bytes(8, "big")
    moved = NoteSignature(cosig.name, cosig.key_id, later + cosig.signature[8:])
    with pytest.raises(CheckpointInvalid, match="invalid signature"):
        verify_cosignature(text + "\n" + log_sig.line() + moved.line(), witness.verifier())
    body = text.replace("\n2\n", "\n3\n")
    with pytest.raises(CheckpointInvalid, match="invalid signature"):
        verify_cosignature(body + "\n" + cosig.line(), witness.verifier())


def test_cosignature_verifier_key_string(witness: Witness) -> None:
    vkey = witness.verifier().verifier_key()
    assert VKEY_FORMAT.fullmatch(vkey)
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert CosignatureVerifier.parse(vkey) == witness.verifier()
    # A plain 0x01 key string of the same key is accepted and gives the 0x04 key ID.
    plain = Verifier(WITNESS, witness.verifier().public_key).verifier_key()
    assert CosignatureVerifier.parse(plain).key_id == witness.verifier().key_id


def test_witness_first_cosign_is_trust_on_first_use(
    witness: Witness, log_key: Signer, tmp_path: Path
) -> None:
    honest = tree(5)
    assert witness.latest(ORIGIN) is None
    with pytest.raises(WitnessRefused, match="proof must be empty") as refused:
        witness.cosign(signed_at(log_key, honest, 5), [honest.root(5)], now=T0)
    assert refused.value.reason == "proof"
    witness.cosign(signed_at(log_key, honest, 5), [], now=T0)
    assert witness.latest(ORIGIN) == Checkpoint(ORIGIN, 5, honest.root(5))

    state = tmp_path / "witness.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    data = json.loads(state.read_text())
    assert data["logs"][ORIGIN] == {
        "size": 5,
        "root": base64.b64encode(honest.root(5)).decode(),
        "cosigned_at": int(T0.timestamp()),
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_witness_second_cosign_with_a_valid_proof(witness: Witness, log_key: Signer) -> None:
    honest = tree(40)
    witness.cosign(signed_at(log_key, honest, 11), [], now=T0)
    later = T0 + timedelta(minutes=5)
    cosigned = witness.cosign(
        signed_at(log_key, honest, 40), consistency_proof(honest, 11, 40), now=later
    )
    assert verify_cosignature(cosigned, witness.verifier()) == later
    assert witness.latest(ORIGIN) == Checkpoint(ORIGIN, 40, honest.root(40))
    # The same checkpoint again is a fresh statement at a new time, not a fork.
    again = witness.cosign(signed_at(log_key, honest, 40), [], now=later + timedelta(hours=1))
    assert verify_cosignature(again, witness.verifier()) == later + timedelta(hours=1)


def test_witness_refuses_a_fork_at_the_same_size(witness: Witness, log_key: Signer) -> None:
    witness.cosign(signed_at(log_key, tree(8), 8), [], now=T0)
    with pytest.raises(WitnessRefused, match="another root") as refused:
        witness.cosign(signed_at(log_key, forged(8, 3), 8), [], now=T0)
    assert refused.value.reason == "fork"


def test_witness_refuses_a_bigger_tree_from_another_history(
    witness: Witness, log_key: Signer
) -> None:
    witness.cosign(signed_at(log_key, tree(8), 8), [], now=T0)
    fork = forged(15, 6)
    with pytest.raises(WitnessRefused, match="consistency proof does not lead") as refused:
        witness.cosign(signed_at(log_key, fork, 15), consistency_proof(fork, 8, 15), now=T0)
    assert refused.value.reason == "fork"
    other_log = tree(15, tag="another log entirely")
    with pytest.raises(WitnessRefused) as refused:
        witness.cosign(
            signed_at(log_key, other_log, 15), consistency_proof(other_log, 8, 15), now=T0
        )
    assert refused.value.reason == "fork"


def test_witness_refuses_a_rollback(witness: Witness, log_key: Signer) -> None:
    honest = tree(30)
    witness.cosign(signed_at(log_key, honest, 30), [], now=T0)
    with pytest.raises(WitnessRefused, match="smaller than cosigned 30") as refused:
        witness.cosign(signed_at(log_key, honest, 29), [], now=T0)
    assert refused.value.reason == "rollback"


def test_witness_refuses_untrusted_or_mislabelled_checkpoints(
    witness: Witness, log_key: Signer
) -> None:
    impostor = Signer(ORIGIN, fixed_key("not the log's key"))
    with pytest.raises(WitnessRefused, match="no verifiable signatures") as refused:
        witness.cosign(signed_at(impostor, tree(3), 3), [], now=T0)
    assert refused.value.reason == "signature"
    # Signed by the trusted key, but claiming another log's origin.
    mislabelled = sign_checkpoint(Checkpoint("other.example/log", 3, tree(3).root()), [log_key])
    with pytest.raises(WitnessRefused) as refused:
        witness.cosign(mislabelled, [], now=T0)
    assert refused.value.reason == "origin"
    not_a_checkpoint = sign_note("hello\n", [log_key])
    with pytest.raises(WitnessRefused) as refused:
        witness.cosign(not_a_checkpoint, [], now=T0)
    assert refused.value.reason == "signature"


def test_refusals_leave_the_state_file_untouched(
    witness: Witness, log_key: Signer, tmp_path: Path
) -> None:
    honest = tree(10)
    witness.cosign(signed_at(log_key, honest, 6), [], now=T0)
    before = (tmp_path / "witness.json").read_bytes()
    # A rollback, a same-size fork, and a bigger tree without its proof.
    for attempt in (
        signed_at(log_key, honest, 5),
        signed_at(log_key, forged(6, 0), 6),
        signed_at(log_key, honest, 10),
    ):
        with pytest.raises(WitnessRefused):
            witness.cosign(attempt, [], now=T0)
        assert (tmp_path / "witness.json").read_bytes() == before


def test_witness_state_survives_a_restart(
    tmp_path: Path, witness_key: Ed25519PrivateKey, log_key: Signer
) -> None:
    honest = tree(25)
    state = tmp_path / "state" / "witness.json"
    first = Witness(WITNESS, witness_key, state, [log_key.verifier()])
    first.cosign(signed_at(log_key, honest, 12), [], now=T0)

    restarted = Witness(WITNESS, witness_key, state, [log_key.verifier()])
    assert restarted.latest(ORIGIN) == Checkpoint(ORIGIN, 12, honest.root(12))
    with pytest.raises(WitnessRefused) as refused:
        restarted.cosign(signed_at(log_key, honest, 11), [], now=T0)
    assert refused.value.reason == "rollback"
    with pytest.raises(WitnessRefused) as refused:
        restarted.cosign(signed_at(log_key, forged(12, 1), 12), [], now=T0)
    assert refused.value.reason == "fork"
    restarted.cosign(signed_at(log_key, honest, 25), consistency_proof(honest, 12, 25), now=T0)


def test_a_broken_or_foreign_state_file_fails_closed(
    tmp_path: Path, witness_key: Ed25519PrivateKey, log_key: Signer
) -> None:
    state = tmp_path / "witness.json"
    Witness(WITNESS, witness_key, state, [log_key.verifier()]).cosign(
        signed_at(log_key, tree(4), 4), [], now=T0
    )
    with pytest.raises(WitnessStateError, match="another witness key"):
        Witness(WITNESS, fixed_key("another witness"), state, [log_key.verifier()])
    state.write_text("{ not json")
    with pytest.raises(WitnessStateError, match="corrupt"):
        Witness(WITNESS, witness_key, state, [log_key.verifier()])


def test_witness_time_must_be_timezone_aware(witness: Witness, log_key: Signer) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        witness.cosign(signed_at(log_key, tree(2), 2), [], now=datetime(2025, 1, 1))
    plus_two = datetime(2025, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    cosigned = witness.cosign(signed_at(log_key, tree(2), 2), [], now=plus_two)
    assert verify_cosignature(cosigned, witness.verifier()) == datetime(2025, 1, 1, tzinfo=UTC)


def test_recosigning_replaces_the_witness_line(witness: Witness, log_key: Signer) -> None:
    first = witness.cosign(signed_at(log_key, tree(2), 2), [], now=T0)
    second = witness.cosign(first, [], now=T0 + timedelta(seconds=30))
    assert second.count(WITNESS) == 1
    assert verify_cosignature(second, witness.verifier()) == T0 + timedelta(seconds=30)


def test_cosignature_signer_refuses_non_checkpoints() -> None:
    cosigner = CosignatureSigner(WITNESS, fixed_key("w"))
    with pytest.raises(CheckpointInvalid):
        sign_note("not a checkpoint\n", [cosigner.at(T0)])


# --- 6. property: honest extensions are cosigned, forged ones refused ---------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[int], list[tuple[str, int, int]]]:
    """Growing tree sizes, and before each step after the first, one forgery to try."""
    sizes = [draw(st.integers(1, 24))]
    for _ in range(draw(st.integers(1, 5))):
        sizes.append(sizes[-1] + draw(st.integers(0, 24)))
    forgeries = []
    for prev, new in itertools.pairwise(sizes):
        kind = draw(st.sampled_from(["rollback", "rewrite", "bad-proof"]))
        if kind == "rollback":
            forgeries.append((kind, draw(st.integers(0, prev - 1)), 0))
        elif kind == "rewrite" or new == prev:  # a same-size step has no proof to spoil
            forgeries.append(("rewrite", new, draw(st.integers(0, prev - 1))))
        else:
            forgeries.append((kind, new, draw(st.integers(0, 100))))
    return sizes, forgeries


@settings(max_examples=60)
@given(history=histories())
def test_witness_cosigns_every_honest_extension_and_refuses_every_forgery(
    history: tuple[list[int], list[tuple[str, int, int]]],
) -> None:
    sizes, forgeries = history
    log_key = Signer(ORIGIN, fixed_key("property log"))
    honest = tree(sizes[-1])
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory) / "witness.json"
        witness = Witness(WITNESS, fixed_key("property witness"), state, [log_key.verifier()])
        witness.cosign(signed_at(log_key, honest, sizes[0]), [], now=T0)
        for step, (prev, new) in enumerate(itertools.pairwise(sizes)):
            kind, size, detail = forgeries[step]
            before = state.read_bytes()
            with pytest.raises(WitnessRefused) as refused:
                if kind == "rollback":
                    witness.cosign(signed_at(log_key, honest, size), [], now=T0)
                elif kind == "rewrite":
                    fork = forged(size, detail)  # history below `prev` rewritten
                    witness.cosign(
                        signed_at(log_key, fork, size), consistency_proof(fork, prev, size), now=T0
                    )
                else:
                    proof = consistency_proof(honest, prev, size)
                    i = detail % len(proof)
                    proof[i] = hashlib.sha256(proof[i]).digest()
                    witness.cosign(signed_at(log_key, honest, size), proof, now=T0)
            assert refused.value.reason == ("rollback" if kind == "rollback" else "fork")
            assert state.read_bytes() == before

            when = T0 + timedelta(seconds=step + 1)
            cosigned = witness.cosign(
                signed_at(log_key, honest, new), consistency_proof(honest, prev, new), now=when
            )
            assert verify_cosignature(cosigned, witness.verifier()) == when
            assert witness.latest(ORIGIN) == Checkpoint(ORIGIN, new, honest.root(new))


def test_state_file_is_created_private_even_with_a_lax_umask(
    tmp_path: Path, witness_key: Ed25519PrivateKey, log_key: Signer
) -> None:
    old = os.umask(0o022)
    try:
        w = Witness(WITNESS, witness_key, tmp_path / "w.json", [log_key.verifier()])
        w.cosign(signed_at(log_key, tree(1), 1), [], now=T0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.json").stat().st_mode) == 0o600
