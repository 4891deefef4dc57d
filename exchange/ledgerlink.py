"""The exchange's narrow interface to its ledger: open the home's log, tag subjects.

The home holds the exchange's log key (it signs checkpoints and answer receipts), the
subject key (HMAC: citizens become ledger tags) and, in the embedded defaults, the key
and state of one witness — the audit office — that cosigns every checkpoint. In a real
deployment the witness runs in another department; here it shares the machine so that
`make demo` shows the whole protocol.

The ledger's origin (the first line of every checkpoint) is fixed when the home is
created and kept in its config file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from exchange.errors import HomeCorrupt, InvalidArgument
from exchange.home import Home
from exchange.keys import load_private_key
from ledger import tiles
from ledger.checkpoint import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    CosignatureVerifier,
    Witness,
    WitnessRefused,
    open_checkpoint,
)
from ledger.entries import Entry, decode
from ledger.errors import ProofError
from ledger.log import Log, NotYetCovered, checkpoint_note_check, verify_receipt
from ledger.merkle import HASH_SIZE
from ledger.note import (
    SIG_ED25519,
    NoteVerifier,
    Signer,
    Verifier,
    b64decode_canonical,
    decode_verifier_key,
    parse_note,
)
from ledger.proofs import verify_consistency
from ledger.store import LedgerTampered, VerifyReport, verify_store

DEFAULT_ORIGIN = "onceonly.example/exchange"
DEFAULT_WITNESS = "audit-office.example/witness"


def origin(home: Home) -> str:
    """The ledger origin recorded in the home's config."""
    value = home.read_config().get("ledger_origin", DEFAULT_ORIGIN)
    if not isinstance(value, str) or not value:
        raise HomeCorrupt(f"{home.config}: ledger_origin must be a non-empty string")
    return value


def witness_name(home: Home) -> str:
    value = home.read_config().get("witness_name", DEFAULT_WITNESS)
    if not isinstance(value, str) or not value:
        raise HomeCorrupt(f"{home.config}: witness_name must be a non-empty string")
    return value


def log_signer(home: Home) -> Signer:
    """The exchange's log key as a signed-note signer named after the origin."""
    return Signer(origin(home), load_private_key(home.log_key))


def log_verifier(home: Home) -> Verifier:
    """The public half of the log key (`verifier_key()` is the string to hand out)."""
    return log_signer(home).verifier()


def witness(home: Home, *, log_verifiers: Sequence[NoteVerifier] = ()) -> Witness:
    """The home's witness (the audit office's, in the embedded defaults).

    It follows the logs whose keys are ``log_verifiers`` (default: this home's log).
    """
    return Witness(
        witness_name(home),
        load_private_key(home.witness_key),
        home.witness_state,
        list(log_verifiers) or [log_verifier(home)],
    )


def witness_verifier(home: Home) -> CosignatureVerifier:
    """The verifier of the home's witness cosignatures (reads the key, touches no state)."""
    return CosignatureVerifier(witness_name(home), load_private_key(home.witness_key).public_key())


def open_log(home: Home, *, path: Path | None = None, cosign: bool = True) -> Log:
    """Open the home's ledger (creating it on first use), with its witness cosigning."""
    home.require()
    witnesses = [witness(home)] if cosign else []
    return Log.open(
        path or home.ledger_store, origin=origin(home), signer=log_signer(home), witnesses=witnesses
    )


def subject_key(home: Home) -> bytes:
    """The HMAC key that turns a resident ID into a ledger subject tag."""
    return home.subject_key.read_bytes()


# --- what the `onceonly ledger` and `onceonly witness` commands do -------------------


def checkpoint(home: Home, *, now: datetime | None = None) -> str:
    """Sign a checkpoint of the home's ledger, cosigned by its witness; return the note."""
    with open_log(home) as log:
        return log.checkpoint(now=now)


def prove(home: Home, index: int) -> str:
    """The c2sp.org/tlog-proof receipt of entry ``index`` at the latest checkpoint."""
    with open_log(home, cosign=False) as log:
        if index >= log.size:
            raise InvalidArgument(f"no entry {index}: the ledger holds {log.size} entries")
        try:
            return log.prove(index)
        except NotYetCovered:
            raise NotYetCovered(
                f"entry {index} is not covered yet, run `onceonly ledger checkpoint`"
            ) from None


def entry(home: Home, index: int) -> tuple[Entry, bytes]:
    """Entry ``index`` of the home's ledger, decoded, and its canonical bytes."""
    with open_log(home, cosign=False) as log:
        if index >= log.size:
            raise InvalidArgument(f"no entry {index}: the ledger holds {log.size} entries")
        data = log.entry(index)
    return decode(data), data


@dataclass(frozen=True)
class ConsistencyProof:
    """A consistency proof with the sizes and roots it joins, as `ledger consistency` prints it.

    The roots are the log's claim, for reading: a witness checks the proof against the
    root it cosigned and the root of the signed checkpoint, never against these.
    """

    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        def b64(value: bytes) -> str:
            return base64.b64encode(value).decode("ascii")

        return {
            "size1": self.size1,
            "size2": self.size2,
            "root1": b64(self.root1),
            "root2": b64(self.root2),
            "proof": [b64(h) for h in self.proof],
        }

    @classmethod
    def from_json(cls, data: object) -> ConsistencyProof:
        """Read the JSON object `to_json` makes; `InvalidArgument` if it is not one."""
        if not isinstance(data, dict):
            raise InvalidArgument("a consistency proof is a JSON object")
        size1, size2 = data.get("size1"), data.get("size2")
        if not (type(size1) is int and type(size2) is int and 0 <= size1 <= size2):
            raise InvalidArgument("consistency proof: size1 and size2 must be sizes, in order")
        hashes = []
        for name, value in [
            ("root1", data.get("root1")),
            ("root2", data.get("root2")),
            *((f"proof[{i}]", h) for i, h in enumerate(_list(data.get("proof")))),
        ]:
            raw = b64decode_canonical(value) if isinstance(value, str) else None
            if raw is None or len(raw) != HASH_SIZE:
                raise InvalidArgument(f"consistency proof: {name} is not base64 of a hash")
            hashes.append(raw)
        return cls(size1, size2, hashes[0], hashes[1], tuple(hashes[2:]))

    def verify(self) -> None:
        """Check the proof joins root1 and root2 (`ProofError` if not)."""
        verify_consistency(self.size1, self.size2, self.proof, self.root1, self.root2)


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise InvalidArgument("consistency proof: proof must be a list of base64 hashes")
    return value


def consistency(home: Home, size1: int, size2: int | None = None) -> ConsistencyProof:
    """The consistency proof from ``size1`` to ``size2`` (default: the latest checkpoint's)."""
    with open_log(home, cosign=False) as log:
        if size2 is None:
            note = log.latest_checkpoint()
            if note is None:
                raise NotYetCovered("no checkpoint yet, run `onceonly ledger checkpoint`")
            size2 = Checkpoint.parse(parse_note(note).text).size
        if not 0 <= size1 <= size2 <= log.size:
            raise InvalidArgument(
                f"sizes must satisfy 0 <= from <= to <= {log.size} (the ledger's size), "
                f"got from {size1} to {size2}"
            )
        return ConsistencyProof(
            size1,
            size2,
            log.root(size1),
            log.root(size2),
            tuple(log.consistency_proof(size1, size2)),
        )


def audit(home: Home, *, log: Log | None = None) -> VerifyReport:
    """Verify the whole ledger (`Log.verify`); a store that no longer opens is read as it is.

    Every checkpoint note must be signed by the home's log key, and a cosignature by the
    home's witness present on one must verify. ``log``: the home's ledger, already open
    (the serving process holds it: a second writer may not open it).
    """
    home.require()
    keys: list[NoteVerifier] = [log_verifier(home), witness_verifier(home)]
    if log is not None:
        return log.verify(verifiers=keys)
    try:
        log = open_log(home, cosign=False)
    except LedgerTampered:
        # Opening refuses a store that contradicts its checkpoint; the audit still names
        # what is wrong, reading the file without opening it for writing.
        return verify_store(
            home.ledger_store, checkpoint_check=checkpoint_note_check(keys, origin=origin(home))
        )
    with log:
        return log.verify(verifiers=keys)


def parse_verifier_keys(
    vkeys: Sequence[str],
) -> tuple[list[NoteVerifier], list[CosignatureVerifier]]:
    """Split verifier key strings into log keys (type 0x01) and witness keys (type 0x04)."""
    logs: list[NoteVerifier] = []
    witnesses: list[CosignatureVerifier] = []
    for vkey in vkeys:
        try:
            sig_type = decode_verifier_key(vkey).sig_type
            if sig_type == SIG_COSIGNATURE_V1:
                witnesses.append(CosignatureVerifier.parse(vkey))
            elif sig_type == SIG_ED25519:
                logs.append(Verifier.parse(vkey))
            else:
                raise ValueError(f"signature type {sig_type:#04x} is neither a log nor a witness")
        except ValueError as problem:
            raise InvalidArgument(f"verifier key {vkey[:40]!r}: {problem}") from None
    return logs, witnesses


def read_entry_file(data: bytes) -> bytes:
    """An entry's bytes from a file holding them raw or as base64 (`ledger show --raw`).

    Unambiguous: an entry starts with its version byte 0x01, which no base64 text holds.
    """
    text = data.strip()
    if text.isascii():
        decoded = b64decode_canonical(text.decode("ascii"))
        if decoded:
            return decoded
    return data


def check_receipt(
    receipt: str,
    entry_bytes: bytes,
    log_verifiers: Sequence[NoteVerifier],
    witness_verifiers: Sequence[CosignatureVerifier] = (),
) -> Checkpoint:
    """`ledger.log.verify_receipt` with any of several log keys (one during a rotation).

    Every witness key given must have cosigned. Raises the first key's `ProofError`.
    """
    if not log_verifiers:
        raise InvalidArgument("no log key to verify the receipt with")
    problems: list[ProofError] = []
    for verifier in log_verifiers:
        try:
            return verify_receipt(
                receipt, entry_bytes, verifier, witness_verifiers=witness_verifiers
            )
        except ProofError as problem:
            problems.append(problem)
    raise problems[0]


def witness_cosign(
    home: Home,
    signed_checkpoint: str,
    proof: ConsistencyProof | None,
    *,
    log_verifiers: Sequence[NoteVerifier] = (),
    now: datetime | None = None,
) -> str:
    """Cosign a checkpoint with the home's witness, given the consistency proof from the
    last checkpoint it cosigned for that log (none for the first); return the note.

    ``log_verifiers`` are the keys of the log it follows (default: this home's log).
    Raises `WitnessRefused` on a bad signature, a rollback or a fork.
    """
    home.require()
    keys = list(log_verifiers) or [log_verifier(home)]
    follower = witness(home, log_verifiers=keys)
    # The log's signature first: a note no trusted key signed is refused as such, before
    # anything it states (its size) is used to judge the proof.
    try:
        stated = open_checkpoint(signed_checkpoint, keys)
    except ProofError as problem:
        raise WitnessRefused("signature", str(problem)) from None
    seen = follower.latest(stated.origin)
    hashes: tuple[bytes, ...] = ()
    # A rollback or a same-size fork is the witness's to refuse, whatever the proof;
    # otherwise the proof must start where the witness stopped and end at this checkpoint.
    if seen is not None and stated.size > seen.size:
        if proof is None:
            raise InvalidArgument(
                f"the witness last cosigned size {seen.size} of {stated.origin}: give --proof, "
                f"made with `onceonly ledger consistency --from {seen.size} --json`"
            )
        if (proof.size1, proof.size2) != (seen.size, stated.size):
            raise InvalidArgument(
                f"the proof goes from size {proof.size1} to {proof.size2}; the witness needs "
                f"{seen.size} to {stated.size} (`ledger consistency --from {seen.size} --json`)"
            )
        hashes = proof.proof
    elif seen is None and proof is not None and proof.proof:
        raise InvalidArgument(
            "the witness has never cosigned this log: its first checkpoint takes no proof"
        )
    return follower.cosign(signed_checkpoint, hashes, now)


@dataclass(frozen=True)
class WitnessStatus:
    name: str
    vkey: str
    origin: str
    latest: Checkpoint | None


def witness_status(home: Home, log_origin: str | None = None) -> WitnessStatus:
    """What the home's witness last cosigned for ``log_origin`` (default: this home's log)."""
    home.require()
    follower = witness(home)
    chosen = log_origin or origin(home)
    return WitnessStatus(
        follower.name, follower.verifier().verifier_key(), chosen, follower.latest(chosen)
    )


def export_tiles(home: Home, out: Path) -> tiles.ExportResult:
    """Export the home's ledger as C2SP tlog-tiles, up to its latest checkpoint."""
    with open_log(home, cosign=False) as log:
        if log.latest_checkpoint() is None:
            raise NotYetCovered("no checkpoint to export yet, run `onceonly ledger checkpoint`")
        return tiles.export_tiles(log, out)


def load_json_file(path: Path) -> object:
    """A JSON file the user names; `InvalidArgument` if it is not JSON."""
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise InvalidArgument(f"{path} is not JSON: {problem}") from None


__all__ = [
    "DEFAULT_ORIGIN",
    "DEFAULT_WITNESS",
    "ConsistencyProof",
    "WitnessStatus",
    "audit",
    "check_receipt",
    "checkpoint",
    "consistency",
    "entry",
    "export_tiles",
    "load_json_file",
    "log_signer",
    "log_verifier",
    "open_log",
    "origin",
    "parse_verifier_keys",
    "prove",
    "read_entry_file",
    "subject_key",
    "witness",
    "witness_cosign",
    "witness_name",
    "witness_status",
    "witness_verifier",
]
