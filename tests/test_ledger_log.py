"""The ledger's safe API (`ledger.log`): append, checkpoint, prove, verify, receipts.

Evidence, in order:

1. Known answers: the c2sp.org/tlog-proof vectors of transparency-dev/formats
   ``proof/tlog_proof_test.go`` (TestMarshal, TestUnmarshalErrors), and a two-entry
   receipt whose hashes are computed here with hashlib, not with ``ledger.merkle``.
2. Round trips: append -> checkpoint -> prove -> verify_receipt, for every index.
3. Tampering with every part of a receipt (entry bytes, index, each proof hash, each
   checkpoint line, the signature, the key), each of which must raise `ProofError`.
4. The log's own guarantees: receipts only once a checkpoint covers the entry,
   consistency across reopening, refusing a store whose checkpoint was re-signed by
   another key, witness cosignatures with the injected time, and `verify` finding a
   forged checkpoint signed by the log's own key.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import (
    Checkpoint,
    CheckpointInvalid,
    CheckpointRefused,
    CosignatureVerifier,
    Witness,
    WitnessRefused,
    cosignature_timestamp,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from ledger.entries import Entry, encode
from ledger.errors import LedgerError, ProofError
from ledger.log import (
    RECEIPT_HEADER,
    Log,
    NotYetCovered,
    Receipt,
    ReceiptInvalid,
    format_receipt,
    parse_receipt,
    verify_receipt,
)
from ledger.merkle import MerkleTree, leaf_hash
from ledger.note import Signer, parse_note
from ledger.proofs import consistency_proof, verify_consistency
from ledger.store import LedgerStore, LedgerTampered, StoreClosed

ORIGIN = "onceonly.example/ledger"
OTHER_ORIGIN = "elsewhere.example/ledger"
WITNESS = "audit-office.example/witness"
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2030, 6, 7, 8, 9, 10, tzinfo=UTC)


def fixed_key(label: str) -> Ed25519PrivateKey:
    """A deterministic key, so failures replay exactly."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def publication(n: int) -> Entry:
    """A distinct, valid entry (publication n of births)."""
    return Entry.publication(
        department="civil-registry",
        principal="steward:civil-registry/alice",
        dataset="births",
        dataset_version=f"1.0.{n}",
        outcome="answered",
        publication_id=n + 1,
        manifest_digest=hashlib.sha256(f"manifest {n}".encode()).digest(),
        now=T0,
    )


@pytest.fixture
def log_key() -> Signer:
    return Signer(ORIGIN, fixed_key("log"))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def log(path: Path, log_key: Signer) -> Iterator[Log]:
    with Log.open(path, origin=ORIGIN, signer=log_key) as opened:
        yield opened


# --- the receipt format: known answers ----------------------------------------------

# transparency-dev/formats proof/tlog_proof_test.go, TestMarshal.
H1 = hashlib.sha256(b"hash1").digest()
H2 = hashlib.sha256(b"hash2").digest()
GO_VECTORS = [
    (
        Receipt(5, (H1, H2), "test checkpoint\n"),
        f"c2sp.org/tlog-proof@v1\nindex 5\n{b64(H1)}\n{b64(H2)}\n\ntest checkpoint\n",
    ),
    (
        Receipt(10, (H1,), "checkpoint data\n", extra=b"extra information"),
        f"c2sp.org/tlog-proof@v1\nextra {b64(b'extra information')}\nindex 10\n{b64(H1)}\n\n"
        "checkpoint data\n",
    ),
    (Receipt(0, (), "checkpoint\n"), "c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n"),
]


@pytest.mark.parametrize(("receipt", "text"), GO_VECTORS)
def test_receipt_text_matches_go_formats_byte_for_byte(receipt: Receipt, text: str) -> None:
    assert receipt.text() == text
    assert parse_receipt(text) == receipt
    assert parse_receipt(text.encode("utf-8")) == receipt


def test_empty_extra_data_is_an_empty_extra_line_as_in_go() -> None:
    # Go's TLogProof.Marshal writes "extra " for non-nil, empty ExtraData.
    text = format_receipt(3, [H1], "cp\n", extra=b"")
    assert text == f"c2sp.org/tlog-proof@v1\nextra \nindex 3\n{b64(H1)}\n\ncp\n"
    assert parse_receipt(text) == Receipt(3, (H1,), "cp\n", extra=b"")


@pytest.mark.parametrize(
    ("index", "proof", "checkpoint"),
    [(-1, [], "cp\n"), (2**64, [], "cp\n"), (0, [bytes(31)], "cp\n"), (0, [], "cp")],
)
def test_format_receipt_refuses_what_cannot_be_a_receipt(
    index: int, proof: list[bytes], checkpoint: str
) -> None:
    with pytest.raises(ValueError):
        format_receipt(index, proof, checkpoint)


@pytest.mark.parametrize(
    "text",
    [
        # transparency-dev/formats proof/tlog_proof_test.go, TestUnmarshalErrors.
        "wrong-header\nindex 0\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{b64(bytes(64))}\n\ncheckpoint\n",
        # Stricter than Go: one spelling per receipt.
        "c2sp.org/tlog-proof@v1\nindex 007\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex +1\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\ncheckpoint\n",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{b64(H1)[:-1]}9\n\ncheckpoint\n",  # padding bits
        "c2sp.org/tlog-proof@v1\r\nindex 0\r\n\r\ncheckpoint\r\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n",  # no checkpoint
        "c2sp.org/tlog-proof@v1\nindex 0\n\n",
        b"c2sp.org/tlog-proof@v1\nindex 0\n\n\xff\n",
    ],
)
def test_malformed_receipts_are_refused(text: str | bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        parse_receipt(text)


def test_a_two_entry_receipt_by_hand(log: Log, log_key: Signer) -> None:
    """The receipt's hashes, recomputed with hashlib from RFC 6962's definitions."""
    first, second = encode(publication(0)), encode(publication(1))
    log.append_many([publication(0), publication(1)])
    note = log.checkpoint()
    leaf0 = hashlib.sha256(b"\x00" + first).digest()
    leaf1 = hashlib.sha256(b"\x00" + second).digest()
    root = hashlib.sha256(b"\x01" + leaf0 + leaf1).digest()
    assert note.startswith(f"{ORIGIN}\n2\n{b64(root)}\n\n\u2014 {ORIGIN} ")
    assert log.prove(0) == f"{RECEIPT_HEADER}\nindex 0\n{b64(leaf1)}\n\n{note}"
    assert log.prove(1) == f"{RECEIPT_HEADER}\nindex 1\n{b64(leaf0)}\n\n{note}"


# --- the round trip -----------------------------------------------------------------

ENTRIES = [publication(n) for n in range(7)]  # seven: an uneven tree


def test_append_checkpoint_prove_verify_every_index(log: Log, log_key: Signer) -> None:
    assert [log.append(ENTRIES[0]), *log.append_many(ENTRIES[1:])] == list(range(7))
    note = log.checkpoint()
    assert log.latest_checkpoint() == note
    for index, entry in enumerate(ENTRIES):
        assert log.entry(index) == encode(entry)
        receipt = log.prove(index)
        assert receipt.startswith(f"{RECEIPT_HEADER}\nindex {index}\n")
        assert receipt.endswith("\n\n" + note)
        checkpoint = verify_receipt(receipt, encode(entry), log_key.verifier())
        assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 7)
        assert checkpoint.root == MerkleTree([leaf_hash(encode(e)) for e in ENTRIES]).root()


def test_an_entry_appended_before_a_failure_is_not_half_written(log: Log) -> None:
    with pytest.raises(LedgerError):
        log.append_many([publication(0), "not an entry"])  # type: ignore[list-item]
    assert log.size == 0


def test_not_yet_covered_until_a_checkpoint_covers_the_entry(log: Log, log_key: Signer) -> None:
    log.append_many(ENTRIES[:3])
    with pytest.raises(NotYetCovered):
        log.prove(0)
    log.checkpoint()
    log.append(ENTRIES[3])
    assert verify_receipt(log.prove(2), encode(ENTRIES[2]), log_key.verifier()).size == 3
    with pytest.raises(NotYetCovered) as caught:
        log.prove(3)
    assert isinstance(caught.value, LedgerError)
    with pytest.raises(NotYetCovered):
        log.prove(99)
    log.checkpoint()
    assert verify_receipt(log.prove(3), encode(ENTRIES[3]), log_key.verifier()).size == 4


# --- tampering with a receipt -------------------------------------------------------


@pytest.fixture
def receipt(log: Log) -> str:
    """The receipt of entry 2 of seven."""
    log.append_many(ENTRIES)
    log.checkpoint()
    return log.prove(2)


def flip_base64(text: str) -> str:
    """The canonical base64 of ``text``'s bytes with the lowest bit of the first byte flipped."""
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return b64(bytes(raw))


def test_the_untampered_receipt_verifies(receipt: str, log_key: Signer) -> None:
    verify_receipt(receipt, encode(ENTRIES[2]), log_key.verifier())


@pytest.mark.parametrize("position", [0, 1, -1])
def test_altered_entry_bytes_are_refused(receipt: str, log_key: Signer, position: int) -> None:
    data = bytearray(encode(ENTRIES[2]))
    data[position] ^= 1
    with pytest.raises(ProofError):
        verify_receipt(receipt, bytes(data), log_key.verifier())


def test_another_entry_is_refused(receipt: str, log_key: Signer) -> None:
    for other in (0, 1, 3):
        with pytest.raises(ProofError):
            verify_receipt(receipt, encode(ENTRIES[other]), log_key.verifier())


@pytest.mark.parametrize("index", [0, 1, 3, 6, 7, 100])
def test_an_altered_index_is_refused(receipt: str, log_key: Signer, index: int) -> None:
    altered = receipt.replace("\nindex 2\n", f"\nindex {index}\n", 1)
    assert altered != receipt
    with pytest.raises(ProofError):
        verify_receipt(altered, encode(ENTRIES[2]), log_key.verifier())


def test_every_altered_proof_hash_is_refused(receipt: str, log_key: Signer) -> None:
    lines = receipt.split("\n")
    proof_lines = range(2, lines.index(""))
    assert len(proof_lines) == 3  # leaf 2 of 7: three siblings
    for number in proof_lines:
        altered = lines.copy()
        altered[number] = flip_base64(lines[number])
        with pytest.raises(ProofError):
            verify_receipt("\n".join(altered), encode(ENTRIES[2]), log_key.verifier())


def test_a_dropped_or_added_proof_hash_is_refused(receipt: str, log_key: Signer) -> None:
    lines = receipt.split("\n")
    for altered in (lines[:2] + lines[3:], [*lines[:2], b64(bytes(32)), *lines[2:]]):
        with pytest.raises(ProofError):
            verify_receipt("\n".join(altered), encode(ENTRIES[2]), log_key.verifier())


def test_extra_data_is_unauthenticated_and_ignored(receipt: str, log_key: Signer) -> None:
    with_extra = receipt.replace("\nindex", f"\nextra {b64(b'anything')}\nindex", 1)
    assert parse_receipt(with_extra).extra == b"anything"
    verify_receipt(with_extra, encode(ENTRIES[2]), log_key.verifier())


def checkpoint_lines(receipt: str) -> tuple[str, list[str]]:
    head, _, note = receipt.partition("\n\n")
    return head, note.split("\n")


@pytest.mark.parametrize(
    "alter",
    [
        lambda lines: [OTHER_ORIGIN, *lines[1:]],
        lambda lines: [lines[0], "6", *lines[2:]],
        lambda lines: [lines[0], "8", *lines[2:]],
        lambda lines: [lines[0], lines[1], flip_base64(lines[2]), *lines[3:]],
        lambda lines: [*lines[:3], "an extension line", *lines[3:]],
    ],
    ids=["origin", "smaller size", "bigger size", "root", "extension line"],
)
def test_an_altered_checkpoint_body_is_refused(
    receipt: str, log_key: Signer, alter: Callable[[list[str]], list[str]]
) -> None:
    head, lines = checkpoint_lines(receipt)
    altered = alter(lines)
    assert altered != lines
    with pytest.raises(ProofError):
        verify_receipt(head + "\n\n" + "\n".join(altered), encode(ENTRIES[2]), log_key.verifier())


def test_an_altered_signature_is_refused(receipt: str, log_key: Signer) -> None:
    head, lines = checkpoint_lines(receipt)
    signature = lines.index("") + 1
    prefix, _, encoded = lines[signature].rpartition(" ")
    raw = bytearray(base64.b64decode(encoded))
    for position in (4, len(raw) - 1):  # the first and last bytes of the signature proper
        altered = raw.copy()
        altered[position] ^= 0x80
        forged = [*lines[:signature], f"{prefix} {b64(bytes(altered))}", *lines[signature + 1 :]]
        with pytest.raises(CheckpointInvalid):
            verify_receipt(
                head + "\n\n" + "\n".join(forged), encode(ENTRIES[2]), log_key.verifier()
            )


def test_a_receipt_is_refused_under_another_logs_key(receipt: str) -> None:
    same_name = Signer(ORIGIN, fixed_key("another log, same name"))
    other_log = Signer(OTHER_ORIGIN, fixed_key("another log"))
    for verifier in (same_name.verifier(), other_log.verifier()):
        with pytest.raises(CheckpointInvalid):
            verify_receipt(receipt, encode(ENTRIES[2]), verifier)


def test_a_receipt_re_signed_by_another_key_is_refused(receipt: str, log_key: Signer) -> None:
    head, _, note = receipt.partition("\n\n")
    body = note[: note.index("\n\n") + 1]
    forged = sign_checkpoint(Checkpoint.parse(body), [Signer(ORIGIN, fixed_key("forger"))])
    with pytest.raises(CheckpointInvalid):
        verify_receipt(head + "\n\n" + forged, encode(ENTRIES[2]), log_key.verifier())


# --- the log across reopening -------------------------------------------------------


def test_checkpoints_are_consistent_across_reopen(path: Path, log_key: Signer) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:3])
        first_note = log.checkpoint()
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        assert log.latest_checkpoint() == first_note
        log.append_many(ENTRIES[3:])
        second_note = log.checkpoint()
        assert log.verify(verifiers=[log_key.verifier()]).ok
    first = open_checkpoint(first_note, [log_key.verifier()])
    second = open_checkpoint(second_note, [log_key.verifier()])
    assert (first.size, second.size) == (3, 7)
    # Proved on a tree rebuilt here from the entries, not the store's.
    leaves = [leaf_hash(encode(e)) for e in ENTRIES]
    verify_consistency(3, 7, consistency_proof(leaves, 3, 7), first.root, second.root)
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        assert verify_receipt(log.prove(1), encode(ENTRIES[1]), log_key.verifier()) == second


def test_a_store_cut_behind_its_checkpoint_does_not_open(path: Path, log_key: Signer) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:3])
        log.checkpoint()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("DELETE FROM entries WHERE idx = 2")
    con.close()
    with pytest.raises(LedgerTampered):
        Log.open(path, origin=ORIGIN, signer=log_key)


def test_after_reopening_the_signer_refuses_a_tree_that_does_not_extend_the_last(
    path: Path, log_key: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer restarts from the recorded checkpoint, not from nothing."""
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:3])
        log.checkpoint()
    forged = MerkleTree([leaf_hash(b"forged " + encode(e)) for e in ENTRIES]).root()
    with LedgerStore(path) as store:
        log = Log(store=store, origin=ORIGIN, signer=log_key)
        log.append_many(ENTRIES[3:])
        # A store that (by a bug, or an attacker in the process) reports another tree.
        monkeypatch.setattr(store, "root", lambda size=None: forged)
        with pytest.raises(CheckpointRefused):
            log.checkpoint()
        assert [c.size for c in store.checkpoints()] == [3]


def replace_latest_note(path: Path, note: str) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(
        "UPDATE checkpoints SET note = ? WHERE seq = (SELECT max(seq) FROM checkpoints)", (note,)
    )
    con.close()


def test_a_checkpoint_re_signed_by_a_foreign_key_is_refused_on_open(
    path: Path, log_key: Signer
) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:4])
        note = log.checkpoint()
    # Control: the honest store opens.
    Log.open(path, origin=ORIGIN, signer=log_key).close()
    body = Checkpoint.parse(note[: note.index("\n\n") + 1])
    replace_latest_note(path, sign_checkpoint(body, [Signer(ORIGIN, fixed_key("foreign"))]))
    with pytest.raises(LedgerTampered) as caught:
        Log.open(path, origin=ORIGIN, signer=log_key)
    assert isinstance(caught.value.__cause__, CheckpointInvalid)
    # And the honest store does not open under another key of the same name.
    replace_latest_note(path, note)
    with pytest.raises(LedgerTampered):
        Log.open(path, origin=ORIGIN, signer=Signer(ORIGIN, fixed_key("foreign")))


@pytest.mark.parametrize(
    ("size", "of_entries"),
    [(3, 3), (5, 4), (4, 3)],
    ids=["an earlier tree", "the same root at another size", "another root at this size"],
)
def test_a_checkpoint_note_saying_something_else_is_refused_on_open(
    path: Path, log_key: Signer, size: int, of_entries: int
) -> None:
    """Signed by the right key, but not the size and root the store recorded beside it."""
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:4])
        log.checkpoint()
    root = MerkleTree([leaf_hash(encode(e)) for e in ENTRIES[:of_entries]]).root()
    replace_latest_note(path, sign_checkpoint(Checkpoint(ORIGIN, size, root), [log_key]))
    with pytest.raises(LedgerTampered) as caught:
        Log.open(path, origin=ORIGIN, signer=log_key)
    assert isinstance(caught.value.__cause__, CheckpointInvalid)


def test_the_constructor_checks_an_open_store_as_open_does(path: Path, log_key: Signer) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:4])
        note = log.checkpoint()
    body = Checkpoint.parse(note[: note.index("\n\n") + 1])
    replace_latest_note(path, sign_checkpoint(body, [Signer(ORIGIN, fixed_key("foreign"))]))
    # A store opened without the signature check:
    with LedgerStore(path) as store, pytest.raises(LedgerTampered):
        Log(store=store, origin=ORIGIN, signer=log_key)


def test_the_log_key_is_named_after_the_origin(path: Path, log_key: Signer) -> None:
    with pytest.raises(ValueError):
        Log.open(path, origin=OTHER_ORIGIN, signer=log_key)


def test_a_closed_log_takes_no_entries(path: Path, log_key: Signer) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append(ENTRIES[0])
    with pytest.raises(StoreClosed):
        log.append(ENTRIES[1])


# --- verify -------------------------------------------------------------------------


def test_verify_finds_a_forged_earlier_checkpoint_signed_by_the_log_key(
    path: Path, log_key: Signer
) -> None:
    """A log that signed a fork: each note is genuine, the pair is inconsistent."""
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES[:3])
        log.checkpoint()
        log.append_many(ENTRIES[3:])
        log.checkpoint()
        assert log.verify(verifiers=[log_key.verifier()]).ok
    fork = MerkleTree([leaf_hash(b"forked " + encode(e)) for e in ENTRIES[:3]]).root()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(
        "UPDATE checkpoints SET root = ?, note = ? WHERE seq = 1",
        (fork, sign_checkpoint(Checkpoint(ORIGIN, 3, fork), [log_key])),
    )
    con.close()
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:  # the latest is intact
        report = log.verify(verifiers=[log_key.verifier()])
    assert not report.ok
    assert any("not consistent" in str(p) for p in report.problems), report.lines()


def test_verify_checks_every_note_against_the_given_keys(log: Log, log_key: Signer) -> None:
    log.append_many(ENTRIES[:2])
    log.checkpoint()
    log.append_many(ENTRIES[2:])
    log.checkpoint()
    assert log.verify(verifiers=[log_key.verifier()]).checkpoints == 2
    stranger = Signer(ORIGIN, fixed_key("stranger")).verifier()
    report = log.verify(verifiers=[stranger])
    assert report.problem_count == 2, report.lines()


def test_verify_finds_an_altered_entry(path: Path, log_key: Signer) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key) as log:
        log.append_many(ENTRIES)
        log.checkpoint()
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("UPDATE entries SET data = ? WHERE idx = 4", (encode(publication(40)),))
        con.close()
        report = log.verify(verifiers=[log_key.verifier()])
    assert report.first_bad_index == 4, report.lines()


# --- witnesses and time -------------------------------------------------------------


@pytest.fixture
def witness(tmp_path: Path, log_key: Signer) -> Witness:
    return Witness(WITNESS, fixed_key("witness"), tmp_path / "witness.json", [log_key.verifier()])


def test_witness_cosigns_each_checkpoint_at_the_injected_time(
    path: Path, log_key: Signer, witness: Witness
) -> None:
    wv = witness.verifier()
    with Log.open(path, origin=ORIGIN, signer=log_key, witnesses=[witness]) as log:
        log.append_many(ENTRIES[:3])
        first = log.checkpoint(now=T0)
        log.append_many(ENTRIES[3:])
        second = log.checkpoint(now=T1)  # the witness needs a consistency proof from 3
        assert log.latest_checkpoint() == second
        receipt = log.prove(5)
        assert log.verify(verifiers=[log_key.verifier(), wv]).ok
    assert verify_cosignature(first, wv, log_verifiers=[log_key.verifier()]) == T0
    assert verify_cosignature(second, wv, log_verifiers=[log_key.verifier()]) == T1
    cosignatures = [s for s in parse_note(second).signatures if s.name == WITNESS]
    assert [cosignature_timestamp(s) for s in cosignatures] == [int(T1.timestamp())]
    checkpoint = verify_receipt(
        receipt, encode(ENTRIES[5]), log_key.verifier(), witness_verifiers=[wv]
    )
    assert checkpoint.size == 7
    latest = witness.latest(ORIGIN)
    assert latest is not None and (latest.size, latest.root) == (7, checkpoint.root)


def test_verify_receipt_requires_each_named_witness(
    path: Path, log_key: Signer, witness: Witness
) -> None:
    with Log.open(path, origin=ORIGIN, signer=log_key, witnesses=[witness]) as log:
        log.append_many(ENTRIES)
        log.checkpoint(now=T0)
        receipt = log.prove(0)
    entry = encode(ENTRIES[0])
    stranger = CosignatureVerifier("stranger.example/witness", fixed_key("stranger").public_key())
    impostor = CosignatureVerifier(WITNESS, fixed_key("impostor").public_key())
    for verifiers in ([stranger], [impostor], [witness.verifier(), stranger]):
        with pytest.raises(CheckpointInvalid):
            verify_receipt(receipt, entry, log_key.verifier(), witness_verifiers=verifiers)
    # The cosignature's timestamp is signed: move it and the witness's line fails.
    head, _, note = receipt.partition("\n\n")
    lines = note.split("\n")
    number = next(i for i, line in enumerate(lines) if line.startswith(f"\u2014 {WITNESS} "))
    prefix, _, encoded = lines[number].rpartition(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[4 + 7] ^= 1  # the low byte of the timestamp, after the key ID
    lines[number] = f"{prefix} {b64(bytes(raw))}"
    moved = head + "\n\n" + "\n".join(lines)
    verify_receipt(moved, entry, log_key.verifier())  # the log's signature alone still holds
    with pytest.raises(CheckpointInvalid):
        verify_receipt(moved, entry, log_key.verifier(), witness_verifiers=[witness.verifier()])


def test_a_witness_refusal_records_nothing(
    tmp_path: Path, log_key: Signer, witness: Witness
) -> None:
    """Two stores under one log key (a fork): the witness cosigns one, refuses the other."""
    with Log.open(tmp_path / "a.sqlite", origin=ORIGIN, signer=log_key, witnesses=[witness]) as a:
        a.append_many(ENTRIES[:3])
        a.checkpoint(now=T0)
    with Log.open(tmp_path / "b.sqlite", origin=ORIGIN, signer=log_key, witnesses=[witness]) as b:
        b.append_many([publication(n) for n in range(10, 14)])
        with pytest.raises(WitnessRefused) as caught:
            b.checkpoint(now=T1)
        assert caught.value.reason == "fork"
        assert b.latest_checkpoint() is None
        with pytest.raises(NotYetCovered):
            b.prove(0)
