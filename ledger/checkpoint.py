"""Signed checkpoints (c2sp.org/tlog-checkpoint) and their cosignatures (c2sp.org/tlog-cosignature).

A checkpoint is a signed note (`ledger.note`) whose text is::

    <origin>                 the log's identity, e.g. onceonly.example/ledger
    <tree size>              ASCII decimal, no leading zeros ("0" for the empty tree)
    <base64 root hash>       the RFC 6962 Merkle tree hash at that size
    [<extension line> ...]   optional, non-empty, opaque (not recommended by the spec)

A log must never sign two checkpoints that are inconsistent (no consistency proof can
be built from one to the other). `CheckpointSigner` enforces that on the log's side.
Every log key here is named after the origin, as the spec recommends; key rotation is
two signature lines with the same name and different key IDs, and a client that knows
either key accepts the checkpoint (it must ignore the signature it cannot check).

A witness cosignature is one more signature line, by the witness's key, of signature
type 0x04 (timestamped Ed25519)::

    key ID    = SHA-256(<witness name> || "\\n" || 0x04 || 32-byte public key)[:4]
    line      = — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 sig)
    signed    = "cosignature/v1\\n" "time <timestamp>\\n" <checkpoint text>

where the timestamp is POSIX seconds in ASCII decimal without leading zeros, and the
checkpoint text includes its final newline but no signature line. The statement is
"as of this time, the largest consistent tree I have seen for this origin has this
root". `Witness` makes that statement only after checking a consistency proof from
the last checkpoint it cosigned (kept in a small state file) to the new one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import LedgerError, ProofError
from ledger.merkle import HASH_SIZE
from ledger.note import (
    ED25519_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    SIG_ED25519,
    NoteInvalid,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    decode_verifier_key,
    encode_verifier_key,
    is_valid_name,
    key_id,
    sign_note,
    verify_note,
)
from ledger.proofs import HashLike, verify_consistency

__all__ = [
    "COSIGNATURE_HEADER",
    "SIG_COSIGNATURE_V1",
    "Checkpoint",
    "CheckpointInvalid",
    "CheckpointRefused",
    "CheckpointSigner",
    "CosignatureSigner",
    "CosignatureVerifier",
    "Witness",
    "WitnessRefused",
    "WitnessStateError",
    "cosignature_message",
    "cosignature_timestamp",
    "open_checkpoint",
    "sign_checkpoint",
    "verify_cosignature",
]

SIG_COSIGNATURE_V1: Final = 0x04
"""Signature type byte of timestamped Ed25519 cosignatures (signed-note, "Signature types")."""

COSIGNATURE_HEADER: Final = "cosignature/v1\n"
TIMESTAMP_SIZE: Final = 8
MAX_TIMESTAMP: Final = 2**63 - 1
MAX_TREE_SIZE: Final = 2**64 - 1

_SIZE = re.compile(r"0|[1-9][0-9]*")  # ASCII only: str.isdigit would let "١٢" through
_CONTROL = re.compile(r"[\x00-\x1f]")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_STATE_FORMAT: Final = "onceonly-witness-state/1"


class CheckpointInvalid(ProofError):
    """A checkpoint's text is malformed, or it is not signed by a trusted log key."""


class CheckpointRefused(LedgerError):
    """The log refused to sign a checkpoint inconsistent with the last one it signed."""


class WitnessRefused(LedgerError):
    """The witness refused to cosign; ``reason`` says why in one word.

    Reasons: ``signature`` (no trusted log signature, or a malformed checkpoint),
    ``origin`` (the witness does not follow that log), ``rollback`` (smaller than the
    checkpoint last cosigned), ``fork`` (same size with another root, or a consistency
    proof that does not verify), ``proof`` (a proof where none can exist).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"witness refused ({reason}): {message}")
        self.reason = reason


class WitnessStateError(LedgerError):
    """The witness's state file is unreadable or belongs to another key: fail closed."""


# --- the checkpoint text -----------------------------------------------------------


def _check_line(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or _CONTROL.search(value):
        raise ValueError(f"{what} must be a non-empty line of text, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} must be valid UTF-8") from exc
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size and root hash, plus optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        size = self.size
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size must be an integer in [0, 2**64), got {size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise ValueError(f"root must be {HASH_SIZE} bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            _check_line("extension line", line)

    def body(self) -> str:
        """Return the note text: ``origin\\nsize\\nbase64(root)\\n`` then any extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(f"{line}\n" for line in [*lines, *self.extensions])

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Read a checkpoint's note text; `CheckpointInvalid` unless it is well formed."""
        if not isinstance(body, str) or not body.endswith("\n"):
            raise CheckpointInvalid("checkpoint text must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointInvalid("checkpoint text needs origin, size and root lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE.fullmatch(size_text) or int(size_text) > MAX_TREE_SIZE:
            raise CheckpointInvalid(f"tree size {size_text!r} is not a decimal uint64")
        root = _b64decode_exact(root_text)
        if root is None or len(root) != HASH_SIZE:
            raise CheckpointInvalid(f"root hash {root_text!r} is not base64 of {HASH_SIZE} bytes")
        try:
            return cls(origin, int(size_text), root, tuple(extensions))
        except ValueError as exc:  # empty origin or extension line, control characters
            raise CheckpointInvalid(str(exc)) from None


def _b64decode_exact(text: str) -> bytes | None:
    """Standard padded base64 in its one canonical spelling, else None."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """Return the checkpoint as a signed note, one signature line per signer.

    This is the primitive: it signs anything. A log signs through `CheckpointSigner`,
    which refuses a checkpoint inconsistent with the last one.
    """
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    signed: str | bytes, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and return it; `CheckpointInvalid` on any failure.

    At least one signature must verify with a key named after the checkpoint's origin
    (and ``origin``, if given, must be the origin), so one log's key never vouches for
    another log's tree.
    """
    try:
        text, verified, _ = verify_note(signed, verifiers)
    except NoteInvalid as exc:
        raise CheckpointInvalid(str(exc)) from None
    checkpoint = Checkpoint.parse(text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointInvalid(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    if not any(sig.name == checkpoint.origin for sig in verified):
        raise CheckpointInvalid(f"no verified signature by a key of {checkpoint.origin!r}")
    return checkpoint


# --- the log's side ----------------------------------------------------------------


class CheckpointSigner:
    """The log's checkpoint signer: never signs a tree inconsistent with the last it signed.

    It remembers the last checkpoint it signed (in memory; a restarted log passes the
    last checkpoint it published as ``previous``). Several signers sign each checkpoint
    with one line each: during a key rotation, the old and the new key.
    """

    def __init__(
        self,
        origin: str,
        signers: Sequence[NoteSigner],
        *,
        previous: Checkpoint | None = None,
    ) -> None:
        self.origin = _check_line("origin", origin)
        if not signers:
            raise ValueError("a checkpoint signer needs at least one key")
        for signer in signers:
            # The spec says the log's key name SHOULD be the origin; witnesses and
            # `open_checkpoint` here rely on it, so it is a MUST for this log.
            if signer.name != origin:
                raise ValueError(f"log key {signer.name!r} is not named after origin {origin!r}")
        if previous is not None and previous.origin != origin:
            raise ValueError(f"previous checkpoint is of {previous.origin!r}, not {origin!r}")
        self._signers = tuple(signers)
        self._previous = previous
        self._lock = threading.Lock()

    @property
    def previous(self) -> Checkpoint | None:
        """The last checkpoint signed (or given at start), None before the first."""
        return self._previous

    def sign(
        self,
        size: int,
        root: bytes,
        proof: Sequence[HashLike] = (),
        *,
        extensions: Sequence[str] = (),
    ) -> str:
        """Sign the checkpoint (size, root) if ``proof`` shows it extends the previous one.

        ``proof`` is the consistency proof from the previous checkpoint's size to
        ``size`` (empty for the first checkpoint, or the same size). Raises
        `CheckpointRefused` on a rollback, a fork, or a proof that does not verify.
        """
        checkpoint = Checkpoint(self.origin, size, bytes(root), tuple(extensions))
        with self._lock:
            previous = self._previous
            if previous is not None:
                # 1. Never go back: a smaller tree cannot extend a bigger one.
                if size < previous.size:
                    raise CheckpointRefused(
                        f"rollback: size {size} is smaller than the last signed {previous.size}"
                    )
                # 2. Same size, other root: two different logs under one name.
                if size == previous.size and checkpoint.root != previous.root:
                    raise CheckpointRefused(f"fork: another root for the signed size {size}")
                # 3. A bigger tree must be proven to extend the signed one.
                try:
                    verify_consistency(previous.size, size, proof, previous.root, checkpoint.root)
                except ProofError as exc:
                    raise CheckpointRefused(f"inconsistent with the last signed: {exc}") from None
            elif proof:
                raise CheckpointRefused("first checkpoint: there is nothing to prove against")
            signed = sign_checkpoint(checkpoint, self._signers)
            self._previous = checkpoint
            return signed


# --- cosignatures ------------------------------------------------------------------


def _unix_seconds(now: datetime | None) -> int:
    """POSIX seconds (floored) of ``now``, default the clock; it must be timezone-aware."""
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    seconds = (now - _EPOCH) // timedelta(seconds=1)
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature time {now.isoformat()} is out of range")
    return seconds


def cosignature_message(body: str, timestamp: int) -> bytes:
    """Return the bytes a cosigner signs: ``cosignature/v1\\ntime <ts>\\n`` + checkpoint text."""
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp must be in [0, 2**63), got {timestamp!r}")
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{body}".encode()


@dataclass(frozen=True, eq=False)
class CosignatureVerifier:
    """A verifier of one witness's type-0x04 cosignatures (a `ledger.note.NoteVerifier`)."""

    name: str
    public_key: Ed25519PublicKey
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not is_valid_name(self.name):
            raise ValueError(f"invalid witness name {self.name!r}")
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key, SIG_COSIGNATURE_V1))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Check ``timestamp || signature`` over the cosigned form of checkpoint ``message``."""
        if len(signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
        try:
            body = message.decode("utf-8")
            Checkpoint.parse(body)
            signed = cosignature_message(body, timestamp)
            self.public_key.verify(signature[TIMESTAMP_SIZE:], signed)
        except (UnicodeDecodeError, ValueError, ProofError, InvalidSignature):
            return False
        return True

    def verifier_key(self) -> str:
        """Return ``<name>+<hex key ID>+<base64(0x04 || public key)>`` (tlog-cosignature)."""
        raw = self.public_key.public_bytes_raw()
        return encode_verifier_key(self.name, SIG_COSIGNATURE_V1, raw)

    @classmethod
    def parse(cls, vkey: str) -> CosignatureVerifier:
        """Read a witness verifier key of type 0x04 (or a plain 0x01 key of the same key).

        A type-0x01 key string is accepted as transparency-dev/formats does: its key ID
        is checked as 0x01, and the cosignature key ID is then derived with 0x04.
        """
        parts = decode_verifier_key(vkey)
        if parts.sig_type not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise ValueError(f"witness key {parts.name}: signature type {parts.sig_type:#04x}")
        if len(parts.key) != ED25519_KEY_SIZE:
            raise ValueError(f"witness key {parts.name}: Ed25519 keys are 32 bytes")
        return cls(parts.name, Ed25519PublicKey.from_public_bytes(parts.key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CosignatureVerifier):
            return NotImplemented
        mine, theirs = self.public_key.public_bytes_raw(), other.public_key.public_bytes_raw()
        return (self.name, mine) == (other.name, theirs)

    def __hash__(self) -> int:
        return hash((self.name, self.public_key.public_bytes_raw()))

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.verifier_key()!r})"


@dataclass(frozen=True, eq=False)
class _TimedCosigner:
    """A `NoteSigner` that cosigns at one fixed timestamp."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey = field(repr=False)
    timestamp: int

    def sign(self, message: bytes) -> bytes:
        body = message.decode("utf-8")
        Checkpoint.parse(body)  # only checkpoints are cosigned
        signature = self.private_key.sign(cosignature_message(body, self.timestamp))
        return self.timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature


@dataclass(frozen=True, eq=False)
class CosignatureSigner:
    """A witness key: signs timestamped type-0x04 cosignatures of checkpoints."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not is_valid_name(self.name):
            raise ValueError(f"invalid witness name {self.name!r}")
        public = self.private_key.public_key()
        object.__setattr__(self, "key_id", key_id(self.name, public, SIG_COSIGNATURE_V1))

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.private_key.public_key())

    def at(self, now: datetime | None = None) -> NoteSigner:
        """Return a `NoteSigner` that cosigns with the time ``now`` (default: the clock)."""
        return self.at_seconds(_unix_seconds(now))

    def at_seconds(self, timestamp: int) -> NoteSigner:
        """Return a `NoteSigner` that cosigns with the POSIX time ``timestamp``."""
        if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise ValueError(f"timestamp must be in [0, 2**63), got {timestamp!r}")
        return _TimedCosigner(self.name, self.key_id, self.private_key, timestamp)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """Return the POSIX timestamp carried by a cosignature line (not verified here)."""
    if len(signature.signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
        raise NoteInvalid(f"signature by {signature.name} is not an Ed25519 cosignature")
    return int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")


def verify_cosignature(
    signed: str | bytes,
    witness_verifier: CosignatureVerifier,
    *,
    log_verifiers: Sequence[NoteVerifier] = (),
) -> datetime:
    """Check the witness's cosignature on a signed checkpoint; return its time (UTC).

    With ``log_verifiers``, the log's own signature must verify too. Raises
    `CheckpointInvalid` if either fails or the text is not a checkpoint.
    """
    try:
        text, verified, _ = verify_note(signed, [witness_verifier, *log_verifiers])
    except NoteInvalid as exc:
        raise CheckpointInvalid(str(exc)) from None
    checkpoint = Checkpoint.parse(text)
    slot = (witness_verifier.name, witness_verifier.key_id)
    cosignatures = [sig for sig in verified if (sig.name, sig.key_id) == slot]
    if not cosignatures:
        raise CheckpointInvalid(f"no cosignature by witness {witness_verifier.name}")
    if log_verifiers and not any(sig.name == checkpoint.origin for sig in verified):
        raise CheckpointInvalid(f"no verified signature by a key of {checkpoint.origin!r}")
    return datetime.fromtimestamp(cosignature_timestamp(cosignatures[0]), UTC)


# --- the witness -------------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    size: int
    root: bytes
    cosigned_at: int


class Witness:
    """A witness: cosigns a log's checkpoints only along one consistent, growing history.

    For each log origin it follows, it keeps the last checkpoint it cosigned in a JSON
    state file (mode 0600) and cosigns a new checkpoint only if (1) a trusted key of
    that origin signed it, (2) it is not smaller (no rollback), (3) at the same size
    it has the same root, and at a bigger size the consistency proof from the stored
    checkpoint verifies (no fork). The very first checkpoint of an origin is accepted
    on trust (TOFU): there is nothing to check it against, so it must come with an
    empty proof, and a witness should be started against a log it has audited.

    Checking and recording happen under one lock (a thread lock and an ``flock`` on a
    sidecar ``.lock`` file), and the state is written (temp file, fsync, rename)
    before the cosignature is returned: two concurrent requests cannot roll it back.
    A state file that cannot be read is an error, never an empty state, which would
    let any rolled-back checkpoint in on trust.
    """

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        state_path: Path,
        log_verifiers: Sequence[NoteVerifier],
    ) -> None:
        self._cosigner = CosignatureSigner(name, key)
        self.state_path = Path(state_path)
        self._log_verifiers = tuple(log_verifiers)
        if not self._log_verifiers:
            raise ValueError("a witness needs the keys of at least one log")
        self._lock = threading.Lock()
        self.state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._load()  # fail at start, not at the first request, on a broken state file

    @property
    def name(self) -> str:
        return self._cosigner.name

    def verifier(self) -> CosignatureVerifier:
        """Return the verifier of this witness's cosignatures."""
        return self._cosigner.verifier()

    def latest(self, origin: str) -> Checkpoint | None:
        """Return the last checkpoint cosigned for ``origin`` (None if never): prove from it."""
        seen = self._load().get(origin)
        return None if seen is None else Checkpoint(origin, seen.size, seen.root)

    def cosign(
        self,
        signed_checkpoint: str,
        consistency_proof: Sequence[HashLike],
        now: datetime | None = None,
    ) -> str:
        """Return ``signed_checkpoint`` with this witness's cosignature line added.

        ``consistency_proof`` goes from the last checkpoint this witness cosigned for
        the origin (see `latest`) to this one. Raises `WitnessRefused` (with a
        ``reason``) and leaves the state unchanged if any check fails.
        """
        timestamp = _unix_seconds(now)
        # 1. The log's signature: a trusted key named after the checkpoint's origin.
        try:
            text, verified, _ = verify_note(signed_checkpoint, self._log_verifiers)
            checkpoint = Checkpoint.parse(text)
        except ProofError as exc:
            raise WitnessRefused("signature", str(exc)) from None
        if not any(sig.name == checkpoint.origin for sig in verified):
            raise WitnessRefused("origin", f"no trusted key for origin {checkpoint.origin!r}")
        origin = checkpoint.origin
        with self._locked():
            state = self._load()
            seen = state.get(origin)
            if seen is None:
                # 2a. First checkpoint of this origin: trust on first use.
                if consistency_proof:
                    raise WitnessRefused("proof", "first checkpoint: the proof must be empty")
            else:
                # 2b. Never go back.
                if checkpoint.size < seen.size:
                    raise WitnessRefused(
                        "rollback",
                        f"{origin} size {checkpoint.size} is smaller than cosigned {seen.size}",
                    )
                # 2c. Same size must be the same tree.
                if checkpoint.size == seen.size and checkpoint.root != seen.root:
                    raise WitnessRefused(
                        "fork", f"{origin} has another root at cosigned size {seen.size}"
                    )
                # 2d. A bigger tree must extend the cosigned one.
                try:
                    verify_consistency(
                        seen.size, checkpoint.size, consistency_proof, seen.root, checkpoint.root
                    )
                except ProofError as exc:
                    raise WitnessRefused(
                        "fork", f"{origin} {seen.size} -> {checkpoint.size}: {exc}"
                    ) from None
            # 3. Sign, record durably, and only then hand the cosignature out.
            cosigned = add_signatures(signed_checkpoint, [self._cosigner.at_seconds(timestamp)])
            state[origin] = _Seen(checkpoint.size, checkpoint.root, timestamp)
            self._store(state)
        return cosigned

    # --- state file ---------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.state_path.with_name(self.state_path.name + ".lock")
        with self._lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _load(self) -> dict[str, _Seen]:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise WitnessStateError(f"cannot read witness state {self.state_path}: {exc}") from exc
        try:
            data = json.loads(raw)
            if data["format"] != _STATE_FORMAT:
                raise WitnessStateError(f"{self.state_path}: unknown format {data['format']!r}")
            if data["key_id"] != self._cosigner.key_id.hex() or data["witness"] != self.name:
                raise WitnessStateError(f"{self.state_path} belongs to another witness key")
            logs: Mapping[str, Any] = data["logs"]
            state = {}
            for origin, entry in logs.items():
                root = _b64decode_exact(entry["root"])
                size, at = entry["size"], entry["cosigned_at"]
                if root is None or len(root) != HASH_SIZE:
                    raise ValueError(f"bad root for {origin!r}")
                if type(size) is not int or type(at) is not int or size < 0:
                    raise ValueError(f"bad size or time for {origin!r}")
                state[origin] = _Seen(size, root, at)
        except WitnessStateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WitnessStateError(f"corrupt witness state {self.state_path}: {exc}") from exc
        return state

    def _store(self, state: Mapping[str, _Seen]) -> None:
        data = {
            "format": _STATE_FORMAT,
            "witness": self.name,
            "key_id": self._cosigner.key_id.hex(),
            "logs": {
                origin: {
                    "size": seen.size,
                    "root": base64.b64encode(seen.root).decode("ascii"),
                    "cosigned_at": seen.cosigned_at,
                }
                for origin, seen in sorted(state.items())
            },
        }
        payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
        directory = self.state_path.parent
        temp = directory / f".{self.state_path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()  # a leftover from a crash may have other permissions
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.state_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        # The rename is durable only once the directory entry is on disk too.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
