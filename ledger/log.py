"""The ledger's small safe API: append, checkpoint, prove, verify.

`Log` wraps one `ledger.store.LedgerStore` (durable, group-committed entries) and one
`ledger.checkpoint.CheckpointSigner` (which never signs a tree inconsistent with the
last one it signed), and optionally witnesses that cosign each checkpoint::

    with Log.open(path, origin="onceonly.example/ledger", signer=log_key) as log:
        index = log.append(entry)        # durable when it returns
        log.checkpoint()                 # signed (and cosigned) C2SP checkpoint
        receipt = log.prove(index)       # c2sp.org/tlog-proof text, offline-verifiable

    verify_receipt(receipt, entry_bytes, log_verifier)   # what an auditor runs

On open, the store checks its tree against its latest recorded checkpoint (size and
root) and `Log` checks that checkpoint's note is signed by this log's key, then
restarts the signer from it: a store whose checkpoint someone re-signed, or whose
entries no longer match it, does not open (`LedgerTampered`).

Receipts follow c2sp.org/tlog-proof (v1), so other tools can check them::

    c2sp.org/tlog-proof@v1
    [extra <base64 opaque data>]      optional, unauthenticated; `Log.prove` omits it
    index <decimal, no leading zeros>
    <base64 hash>                     RFC 6962 inclusion proof, leaf's sibling first,
    ...                               one SHA-256 hash per line, zero or more lines
    <empty line>
    <signed checkpoint, verbatim>     with any witness cosignature lines

`format_receipt`, `parse_receipt` and `verify_receipt` are pure functions: the
receipt and the public keys are all a verifier needs.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from ledger.checkpoint import (
    Checkpoint,
    CheckpointInvalid,
    CheckpointSigner,
    CosignatureVerifier,
    open_checkpoint,
    verify_cosignature,
)
from ledger.entries import Entry, encode, encode_answer_columns, encode_answers
from ledger.errors import LedgerError, ProofError
from ledger.merkle import HASH_SIZE, leaf_hash
from ledger.note import NoteVerifier, Signer, b64decode_canonical
from ledger.proofs import HashLike, verify_consistency, verify_inclusion
from ledger.store import (
    MAX_REPORTED_PROBLEMS,
    CheckpointCheck,
    LedgerStore,
    LedgerTampered,
    Problem,
    StoredCheckpoint,
    VerifyReport,
)

__all__ = [
    "RECEIPT_HEADER",
    "Cosigner",
    "Log",
    "NotYetCovered",
    "Receipt",
    "ReceiptInvalid",
    "checkpoint_note_check",
    "format_receipt",
    "parse_receipt",
    "verify_receipt",
]

RECEIPT_HEADER: Final = "c2sp.org/tlog-proof@v1"
"""First line of every receipt (c2sp.org/tlog-proof, "Format")."""

MAX_INDEX: Final = 2**64 - 1
MAX_PROOF_HASHES: Final = 64
"""An inclusion proof in a tree of fewer than 2**64 leaves has at most 64 hashes."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only, no leading zeros


class NotYetCovered(LedgerError):
    """The entry exists (or will) but no checkpoint covers it yet: checkpoint, then prove."""


class ReceiptInvalid(ProofError):
    """A receipt is not well-formed c2sp.org/tlog-proof text."""


# --- receipts: pure functions ------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A parsed c2sp.org/tlog-proof: index, inclusion proof, signed checkpoint, extra data.

    Nothing in it is verified: `verify_receipt` does that. ``extra`` is opaque and
    unauthenticated by the spec's own rule; nothing here relies on it.
    """

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def text(self) -> str:
        """Return the receipt in its text form (see `format_receipt`)."""
        return format_receipt(self.index, self.proof, self.checkpoint, extra=self.extra)


def format_receipt(
    index: int, proof: Sequence[HashLike], signed_checkpoint: str, *, extra: bytes | None = None
) -> str:
    """Return the c2sp.org/tlog-proof text for entry ``index``; ``ValueError`` on bad input."""
    if type(index) is not int or not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be an integer in [0, 2**64), got {index!r}")
    hashes = [bytes(h) for h in proof]
    if any(len(h) != HASH_SIZE for h in hashes) or len(hashes) > MAX_PROOF_HASHES:
        raise ValueError(f"a proof is at most {MAX_PROOF_HASHES} hashes of {HASH_SIZE} bytes")
    if not isinstance(signed_checkpoint, str) or not signed_checkpoint.endswith("\n"):
        raise ValueError("the signed checkpoint is a note ending in a newline")
    lines = [RECEIPT_HEADER]
    if extra is not None:  # b"" gives "extra " with nothing after, as Go's formats does
        lines.append("extra " + base64.b64encode(bytes(extra)).decode("ascii"))
    lines.append(f"index {index}")
    lines += [base64.b64encode(h).decode("ascii") for h in hashes]
    # The empty line, then the checkpoint verbatim (it brings its own final newline).
    return "\n".join(lines) + "\n\n" + signed_checkpoint


def parse_receipt(receipt: str | bytes) -> Receipt:
    """Split c2sp.org/tlog-proof text into its parts; `ReceiptInvalid` if malformed.

    Strict: one spelling per receipt (canonical base64, no leading zeros, no stray
    lines). The checkpoint part is only cut out here; `verify_receipt` opens it.
    """
    if isinstance(receipt, bytes | bytearray | memoryview):
        try:
            receipt = bytes(receipt).decode("utf-8")
        except UnicodeDecodeError:
            raise ReceiptInvalid("receipt is not UTF-8") from None
    if not isinstance(receipt, str):
        raise ReceiptInvalid(f"a receipt is text, got {type(receipt).__name__}")
    # The header block holds no empty line, so the first one ends it; the signed
    # checkpoint after it has an empty line of its own (before its signatures).
    split = receipt.find("\n\n")
    if split < 0:
        raise ReceiptInvalid("receipt has no empty line before the checkpoint")
    lines = receipt[:split].split("\n")
    checkpoint = receipt[split + 2 :]
    if lines[0] != RECEIPT_HEADER:
        raise ReceiptInvalid(f"receipt does not start with {RECEIPT_HEADER!r}")
    rest = lines[1:]
    extra: bytes | None = None
    if rest and rest[0].startswith("extra "):
        extra = b64decode_canonical(rest[0][len("extra ") :])
        if extra is None:
            raise ReceiptInvalid("receipt's extra line is not canonical base64")
        rest = rest[1:]
    if not rest or not rest[0].startswith("index "):
        raise ReceiptInvalid("receipt has no 'index' line")
    index_text = rest[0][len("index ") :]
    if not _DECIMAL.fullmatch(index_text) or int(index_text) > MAX_INDEX:
        raise ReceiptInvalid(f"receipt index {index_text!r} is not a decimal uint64")
    hash_lines = rest[1:]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise ReceiptInvalid(f"receipt has more than {MAX_PROOF_HASHES} proof hashes")
    proof = []
    for number, line in enumerate(hash_lines, 1):
        digest = b64decode_canonical(line)
        if digest is None or len(digest) != HASH_SIZE:
            raise ReceiptInvalid(f"receipt proof line {number} is not base64 of a SHA-256 hash")
        proof.append(digest)
    if not checkpoint:
        raise ReceiptInvalid("receipt has no checkpoint")
    return Receipt(int(index_text), tuple(proof), checkpoint, extra)


def verify_receipt(
    receipt: str | bytes,
    entry_bytes: bytes,
    log_verifier: NoteVerifier,
    *,
    witness_verifiers: Sequence[CosignatureVerifier] = (),
) -> Checkpoint:
    """Check offline that ``entry_bytes`` is in the log, as a receipt claims; return its checkpoint.

    ``log_verifier`` is the log's public key (named after the log's origin); every
    witness in ``witness_verifiers`` must have cosigned the checkpoint. Raises
    `ProofError` (`ReceiptInvalid`, `CheckpointInvalid`, ...) on any failure.
    """
    # 1. The receipt is well-formed c2sp.org/tlog-proof text.
    parsed = parse_receipt(receipt)
    if not isinstance(entry_bytes, bytes | bytearray | memoryview):
        raise ProofError(f"entry bytes must be bytes, got {type(entry_bytes).__name__}")
    # 2. The checkpoint is signed by the log's key, named after the checkpoint's origin:
    #    from here on its size and root are the log's word.
    checkpoint = open_checkpoint(parsed.checkpoint, [log_verifier], origin=log_verifier.name)
    # 3. Each required witness cosigned that same checkpoint (a cosignature by a known
    #    witness that does not verify rejects the receipt).
    for witness in witness_verifiers:
        verify_cosignature(parsed.checkpoint, witness, log_verifiers=[log_verifier])
    # 4. The entry is covered by the checkpoint.
    if parsed.index >= checkpoint.size:
        raise ProofError(
            f"receipt index {parsed.index} is beyond the checkpoint's {checkpoint.size} entries"
        )
    # 5. The leaf hash is recomputed from the entry's bytes, never taken from the receipt.
    leaf = leaf_hash(entry_bytes)
    # 6. The inclusion proof leads from that leaf, at that index, to the signed root.
    verify_inclusion(leaf, parsed.index, checkpoint.size, parsed.proof, checkpoint.root)
    return checkpoint


# --- checkpoint notes in the store -------------------------------------------------


def checkpoint_note_check(verifiers: Iterable[NoteVerifier], *, origin: str) -> CheckpointCheck:
    """Return a store hook that accepts a recorded checkpoint only if its note checks out.

    The note must be signed by a key in ``verifiers`` named ``origin``, and state the
    size and root recorded beside it. Any known key's signature (a witness's
    cosignature, if its verifier is given) that does not verify rejects the note.
    """
    trusted = tuple(verifiers)
    if not trusted:
        raise ValueError("checking checkpoint notes needs at least one log key")

    def check(stored: StoredCheckpoint) -> None:
        _open_stored(stored, trusted, origin)

    return check


def _open_stored(
    stored: StoredCheckpoint, verifiers: Sequence[NoteVerifier], origin: str
) -> Checkpoint:
    """Open a recorded checkpoint's note; `CheckpointInvalid` unless it checks out."""
    # 1. Signed by this log's key (one of them, during a rotation).
    checkpoint = open_checkpoint(stored.note, verifiers, origin=origin)
    # 2. It states what the store recorded beside it: a store never relabels a checkpoint.
    if checkpoint.size != stored.size:
        raise CheckpointInvalid(f"note states size {checkpoint.size}, recorded as {stored.size}")
    if checkpoint.root != stored.root:
        raise CheckpointInvalid(f"note's root for size {stored.size} is not the recorded root")
    return checkpoint


# --- witnesses ---------------------------------------------------------------------


class Cosigner(Protocol):
    """A witness the log asks for cosignatures (`ledger.checkpoint.Witness` is one).

    ``latest(origin)`` is the last checkpoint it cosigned for the log, so the log can
    prove consistency from it; ``cosign`` returns the note with one more signature
    line, or raises (a `LedgerError`, e.g. `WitnessRefused`) without cosigning.
    """

    @property
    def name(self) -> str: ...

    def latest(self, origin: str) -> Checkpoint | None:
        """The last checkpoint cosigned for ``origin``, None if never."""
        ...

    def cosign(
        self, signed_checkpoint: str, consistency_proof: Sequence[HashLike], now: datetime | None
    ) -> str:
        """Return ``signed_checkpoint`` with this witness's cosignature added."""
        ...


# --- the log -----------------------------------------------------------------------


class Log:
    """A tamper-evident ledger: one store, one checkpoint signer, optional witnesses.

    Open it with `Log.open`; the constructor takes an already open store (and checks
    it the same way). Thread-safe: appends may run concurrently with each other and
    with `checkpoint`, which is serialised.
    """

    def __init__(
        self,
        *,
        store: LedgerStore,
        origin: str,
        signer: Signer,
        witnesses: Sequence[Cosigner] = (),
    ) -> None:
        if signer.name != origin:
            raise ValueError(f"log key {signer.name!r} is not named after origin {origin!r}")
        self.origin = origin
        self._store = store
        self._verifier = signer.verifier()
        self._witnesses = tuple(witnesses)
        self._lock = threading.Lock()
        latest = store.latest_checkpoint()
        previous: Checkpoint | None = None
        if latest is not None:
            try:
                previous = _open_stored(latest, [self._verifier], origin)
            except ProofError as problem:
                raise LedgerTampered(f"the latest checkpoint is rejected: {problem}") from problem
        # The signer restarts from the last checkpoint this log published: it will
        # sign nothing that does not extend it.
        self._signer = CheckpointSigner(origin, [signer], previous=previous)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        origin: str,
        signer: Signer,
        witnesses: Sequence[Cosigner] = (),
    ) -> Log:
        """Open (or create) the log at ``path``; `LedgerTampered` if it fails its checks.

        The store checks its tree against the latest checkpoint (size and root) and
        that checkpoint's note must be signed by ``signer``'s key; the checkpoint
        signer restarts from it.
        """
        if signer.name != origin:
            raise ValueError(f"log key {signer.name!r} is not named after origin {origin!r}")
        check = checkpoint_note_check([signer.verifier()], origin=origin)
        store = LedgerStore(Path(path), checkpoint_check=check)
        try:
            return cls(store=store, origin=origin, signer=signer, witnesses=witnesses)
        except BaseException:
            store.close()
            raise

    # --- writing --------------------------------------------------------------------

    def append(self, entry: Entry) -> int:
        """Append one entry; return its index once it is durable. Errors propagate."""
        return self._store.append(encode(entry))

    def append_many(self, entries: Iterable[Entry]) -> list[int]:
        """Append entries in one transaction at consecutive indexes; return them once durable."""
        # Encode everything first: one invalid entry means none is written.
        return self._store.append_many([encode(entry) for entry in entries])

    def append_answers(
        self,
        template: Entry,
        answers: Sequence[tuple[bytes, Sequence[bytes], Sequence[bytes]]],
        others: Sequence[Entry] = (),
    ) -> list[int]:
        """A caseload in one transaction: ``answers`` first (see `encode_answers`), then
        ``others``; return their indexes, in that order, once durable."""
        items = encode_answers(template, answers) + [encode(entry) for entry in others]
        return self._store.append_many(items)

    def append_answer_columns(
        self,
        template: Entry,
        digests: Sequence[bytes],
        tags: Sequence[Sequence[bytes]],
        commitments: Sequence[Sequence[bytes]],
        others: Sequence[Entry] = (),
        *,
        placed: Callable[[int], None] | None = None,
    ) -> list[int]:
        """`append_answers` with the answers as columns (see `encode_answer_columns`).

        ``placed``: see `LedgerStore.append_many`.
        """
        items = encode_answer_columns(template, digests, tags, commitments)
        return self._store.append_many(items + [encode(entry) for entry in others], placed=placed)

    def checkpoint(self, *, now: datetime | None = None) -> str:
        """Sign, cosign and record a checkpoint of the log as it is; return the signed note.

        The checkpoint signer refuses a tree inconsistent with its previous checkpoint
        (`CheckpointRefused`); each witness must cosign, given a consistency proof from
        the last checkpoint it cosigned (`WitnessRefused` otherwise). On any refusal
        nothing is recorded. ``now`` stamps the cosignatures (default: the clock).
        """
        with self._lock:
            size = self._store.size
            root = self._store.root(size)
            # 1. Sign, proving the new tree extends the last one signed.
            signed = self._signer.sign(size, root, self._proof_from(self._signer.previous, size))
            # 2. Each witness cosigns, from the last checkpoint it cosigned.
            for witness in self._witnesses:
                seen = witness.latest(self.origin)
                signed = witness.cosign(signed, self._proof_from(seen, size), now)
            # 3. Record it durably; the store refuses a checkpoint not of its tree. If a
            #    witness refused above, the signer (and earlier witnesses) have already
            #    seen this checkpoint; that is harmless, since it is of this same tree.
            self._store.record_checkpoint(size, root, signed)
            return signed

    def _proof_from(self, earlier: Checkpoint | None, size: int) -> list[bytes]:
        """The consistency proof from ``earlier`` to ``size``; empty where none can exist.

        An earlier checkpoint bigger than the log gets an empty proof, so the signer
        or witness itself refuses it as a rollback.
        """
        if earlier is None or earlier.size > size:
            return []
        return self._store.consistency_proof(earlier.size, size)

    # --- reading --------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of durable entries."""
        return self._store.size

    def verifier(self) -> NoteVerifier:
        """The public key of this log (what `verify_receipt` needs)."""
        return self._verifier

    def root(self, size: int | None = None) -> bytes:
        """The Merkle tree hash of the first ``size`` entries (default: all of them)."""
        return self._store.root(size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """The RFC 9162 consistency proof from tree size ``size1`` to ``size2`` (default: all).

        What a witness that last saw ``size1`` needs before cosigning ``size2``.
        ``ValueError`` unless ``0 <= size1 <= size2 <= size``.
        """
        return self._store.consistency_proof(size1, size2)

    def latest_checkpoint(self) -> str | None:
        """The signed note of the latest recorded checkpoint, None before the first."""
        latest = self._store.latest_checkpoint()
        return None if latest is None else latest.note

    def entry(self, index: int) -> bytes:
        """The stored bytes of entry ``index`` (checked against its leaf hash)."""
        return self._store.entry(index)

    def prove(self, index: int) -> str:
        """Return the c2sp.org/tlog-proof receipt of entry ``index`` at the latest checkpoint.

        Raises `NotYetCovered` if no checkpoint covers the entry yet. The receipt is
        verified before it is returned: the log never hands out one that fails.
        """
        if type(index) is not int or index < 0:
            raise ValueError(f"index must be a non-negative integer, got {index!r}")
        latest = self._store.latest_checkpoint()
        if latest is None or index >= latest.size:
            covered = 0 if latest is None else latest.size
            raise NotYetCovered(
                f"entry {index} is not covered by a checkpoint yet "
                f"(the latest covers {covered} entries); checkpoint first"
            )
        proof = self._store.inclusion_proof(index, latest.size)
        receipt = format_receipt(index, proof, latest.note)
        verify_receipt(receipt, self._store.entry(index), self._verifier)
        return receipt

    def verify(self, *, verifiers: Sequence[NoteVerifier]) -> VerifyReport:
        """Check the whole log: every entry, seal and checkpoint, and every checkpoint's note.

        Each note must be signed by a key in ``verifiers`` named after this log's
        origin and state the recorded size and root; consecutive checkpoints must be
        consistent (proved on the stored tree, from the roots the notes sign).
        Witness verifiers may be given too: a cosignature present by one of them must
        verify. Never raises for what it finds: see `VerifyReport.ok`.
        """
        check = checkpoint_note_check(verifiers, origin=self.origin)
        report = self._store.verify(checkpoint_check=check)
        found = list(report.problems)
        count = report.problem_count
        previous: tuple[int, Checkpoint] | None = None
        for seq, stored in enumerate(self._store.checkpoints(), 1):
            try:
                current = open_checkpoint(stored.note, verifiers, origin=self.origin)
            except ProofError:
                previous = None  # reported by the note check; nothing to chain from
                continue
            if previous is not None:
                problem = self._inconsistency(previous[1], current)
                if problem:
                    count += 1
                    found.append(Problem(None, f"checkpoints {previous[0]} -> {seq}: {problem}"))
            previous = (seq, current)
        if count == report.problem_count:
            return report
        return replace(report, problems=tuple(found[:MAX_REPORTED_PROBLEMS]), problem_count=count)

    def _inconsistency(self, first: Checkpoint, second: Checkpoint) -> str:
        """Why ``second`` does not extend ``first`` on this log's tree, or "" if it does."""
        if second.size < first.size:
            return f"size {second.size} rolls back from {first.size}"
        if second.size > self._store.size:
            return f"size {second.size} is beyond the log's {self._store.size} entries"
        proof = self._store.consistency_proof(first.size, second.size)
        try:
            verify_consistency(first.size, second.size, proof, first.root, second.root)
        except ProofError as problem:
            return f"not consistent: {problem}"
        return ""

    # --- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued and close the store. Idempotent."""
        self._store.close()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
