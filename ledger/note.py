"""C2SP signed notes (https://c2sp.org/signed-note), with Ed25519 signatures only.

A signed note is a text that ends in a newline, then a blank line, then one or more
signature lines::

    <text, ending in "\\n">
    <blank line>
    — <key name> base64(key ID (4 bytes, big-endian) || signature)

The dash is an EM DASH (U+2014) followed by a space. The signed message is the text,
including its final newline but not the blank separator line. The text may itself
contain blank lines: the *last* blank line of the note separates text from signatures.
Notes are UTF-8 and hold no ASCII control character other than newline.

Ed25519 keys (signature type 0x01) are identified by their name and a 4-byte key ID::

    key ID = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]

and written as the strings of golang.org/x/mod/sumdb/note, so the Go tools read them:

    verifier key   <name>+<8 hex digits of key ID>+<base64(0x01 || public key)>
    signer key     PRIVATE+KEY+<name>+<8 hex digits>+<base64(0x01 || 32-byte seed)>

Key names are non-empty and hold neither Unicode spaces nor ``+``.

Opening a note (`open_note`, `verify_note`) follows the spec: signatures by unknown
keys (name and key ID not both matching a configured verifier) are ignored; a
signature by a known key that fails to verify rejects the whole note; a note with no
verified signature is rejected. Three rules are stricter than Go's ``note.Open``,
which silently drops duplicates: an exactly repeated signature line, or two lines by
the same known key, reject the note (no honest signer writes either, and dropping the
second line unchecked would hide a bad signature); and base64 must be canonical, so a
signature line has exactly one spelling. Every rejection is a `NoteInvalid`.

Other signature types (e.g. the 0x04 timestamped cosignatures of
``ledger.checkpoint``) plug in through the `NoteSigner` / `NoteVerifier` protocols.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import ProofError

__all__ = [
    "KEY_ID_SIZE",
    "MAX_SIGNATURES",
    "SIG_ED25519",
    "NoteInvalid",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "OpenedNote",
    "ParsedNote",
    "Signer",
    "VerifiedNote",
    "Verifier",
    "VerifierKey",
    "add_signatures",
    "decode_verifier_key",
    "encode_verifier_key",
    "is_valid_name",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "verify_note",
]

SIG_ED25519: Final = 0x01
"""Signature type byte of plain Ed25519 note signatures (signed-note, "Signature types")."""

KEY_ID_SIZE: Final = 4
ED25519_KEY_SIZE: Final = 32
ED25519_SIGNATURE_SIZE: Final = 64

MAX_SIGNATURES: Final = 100
"""Signature lines accepted in one note: the spec requires at least 16; Go allows 100."""

SIGNATURE_PREFIX: Final = "\u2014 "
"""EM DASH and a space: how every signature line begins."""

_PRIVATE_KEY_PREFIX: Final = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
# Everything below U+0020 except newline (signed-note, "Format").
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteInvalid(ProofError):
    """A signed note is malformed, or its signatures do not verify."""


# --- names, key IDs, key strings ---------------------------------------------------


def is_valid_name(name: object) -> bool:
    """Report whether ``name`` may name a key: non-empty, no Unicode space, no '+'.

    Control characters are refused too: a note containing one cannot be opened.
    """
    if not isinstance(name, str) or not name or "+" in name or _CONTROL.search(name):
        return False
    if any(ch.isspace() for ch in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate is not UTF-8
        return False
    return True


def _check_name(name: object) -> str:
    if type(name) is str and name in _VALID_NAMES:  # a signer signs note after note
        return name
    if not is_valid_name(name):
        raise ValueError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")
    assert isinstance(name, str)
    if len(_VALID_NAMES) < 1024:
        _VALID_NAMES.add(name)
    return name


_VALID_NAMES: set[str] = set()


def _raw_public(public_key: bytes | Ed25519PublicKey) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return bytes(public_key)


def key_id(name: str, public_key: bytes | Ed25519PublicKey, sig_type: int = SIG_ED25519) -> bytes:
    """Return the 4-byte key ID ``SHA-256(name || "\\n" || sig_type || public key)[:4]``."""
    if not 0 <= sig_type <= 0xFF:
        raise ValueError(f"signature type must be one byte, got {sig_type}")
    h = hashlib.sha256(_check_name(name).encode("utf-8"))
    h.update(b"\n")
    h.update(bytes((sig_type,)))
    h.update(_raw_public(public_key))
    return h.digest()[:KEY_ID_SIZE]


class VerifierKey(NamedTuple):
    """The parts of a verifier key string ``<name>+<hex key ID>+<base64(type || key)>``."""

    name: str
    key_id: bytes
    sig_type: int
    key: bytes


def encode_verifier_key(name: str, sig_type: int, key: bytes) -> str:
    """Return the verifier key string for a public ``key`` of signature type ``sig_type``."""
    kid = key_id(name, key, sig_type)
    material = base64.b64encode(bytes((sig_type,)) + key).decode("ascii")
    return f"{name}+{kid.hex()}+{material}"


def b64decode_canonical(text: str) -> bytes | None:
    """Decode standard, padded base64; None unless ``text`` is the one canonical spelling."""
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    # Non-zero padding bits decode too; re-encoding rejects that second spelling.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def decode_verifier_key(vkey: str) -> VerifierKey:
    """Split and check a verifier key string; `ValueError` if malformed or its key ID is wrong.

    The key material may itself contain '+' (base64), so only the first two '+' split.
    """
    if not isinstance(vkey, str):
        raise ValueError("a verifier key is a string")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise ValueError("malformed verifier key: want <name>+<hex key id>+<base64 key>")
    name, hex_id, material = parts
    raw = b64decode_canonical(material)
    if not is_valid_name(name) or not _HEX8.fullmatch(hex_id) or not raw:
        raise ValueError("malformed verifier key: want <name>+<hex key id>+<base64 key>")
    sig_type, key = raw[0], raw[1:]
    expected = key_id(name, key, sig_type)
    if bytes.fromhex(hex_id) != expected:
        raise ValueError(f"verifier key {name}+{hex_id}: key ID does not match the key")
    return VerifierKey(name, expected, sig_type, key)


# --- signers and verifiers ---------------------------------------------------------


class NoteSigner(Protocol):
    """Anything that signs note texts: a key name, its 4-byte key ID, and ``sign``."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature bytes (without the key ID) over ``message``."""
        ...


class NoteVerifier(Protocol):
    """Anything that checks note signatures by one key: name, key ID and ``verify``."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Report whether ``signature`` (without the key ID) is valid for ``message``."""
        ...


@dataclass(frozen=True, eq=False)
class Verifier:
    """An Ed25519 (type 0x01) note verifier: key name, public key, and derived key ID."""

    name: str
    public_key: Ed25519PublicKey
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, Ed25519PublicKey):
            raise TypeError("public_key must be an Ed25519PublicKey")
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))

    @property
    def public_bytes(self) -> bytes:
        """The 32-byte RFC 8032 encoding of the public key."""
        return _raw_public(self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Report whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def verifier_key(self) -> str:
        """Return ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        return encode_verifier_key(self.name, SIG_ED25519, self.public_bytes)

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """Read a verifier key string; `ValueError` unless it is a well-formed Ed25519 key."""
        parts = decode_verifier_key(vkey)
        if parts.sig_type != SIG_ED25519:
            raise ValueError(f"verifier key {parts.name}: signature type {parts.sig_type:#04x}")
        if len(parts.key) != ED25519_KEY_SIZE:
            raise ValueError(f"verifier key {parts.name}: Ed25519 keys are 32 bytes")
        return cls(parts.name, Ed25519PublicKey.from_public_bytes(parts.key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.public_bytes) == (other.name, other.public_bytes)

    def __hash__(self) -> int:
        return hash((self.name, self.public_bytes))

    def __repr__(self) -> str:
        return f"Verifier({self.verifier_key()!r})"


@dataclass(frozen=True, eq=False)
class Signer:
    """An Ed25519 (type 0x01) note signer: key name and private key."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        object.__setattr__(self, "key_id", key_id(self.name, self.private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> Signer:
        """Return a signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def verifier(self) -> Verifier:
        """Return the verifier of this signer's key."""
        return Verifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def signer_key(self) -> str:
        """Return ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``: a secret."""
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        material = base64.b64encode(bytes((SIG_ED25519,)) + seed).decode("ascii")
        return f"{_PRIVATE_KEY_PREFIX}{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """Read a signer key string; `ValueError` if malformed or the key ID does not match.

        The error never quotes the string: it is a secret.
        """
        if not isinstance(skey, str) or not skey.startswith(_PRIVATE_KEY_PREFIX):
            raise ValueError("malformed signer key: want PRIVATE+KEY+<name>+<hex>+<base64>")
        parts = skey[len(_PRIVATE_KEY_PREFIX) :].split("+", 2)
        raw = b64decode_canonical(parts[2]) if len(parts) == 3 else None
        if raw is None or not raw or not is_valid_name(parts[0]) or not _HEX8.fullmatch(parts[1]):
            raise ValueError("malformed signer key: want PRIVATE+KEY+<name>+<hex>+<base64>")
        name, hex_id = parts[0], parts[1]
        if raw[0] != SIG_ED25519 or len(raw) != 1 + ED25519_KEY_SIZE:
            raise ValueError(f"signer key {name}: not an Ed25519 (type 0x01) 32-byte seed")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        # The key ID is of the public key, so it can be checked only after deriving it.
        if signer.key_id != bytes.fromhex(hex_id):
            raise ValueError(f"signer key {name}: key ID does not match the key")
        return signer


# --- the note format ---------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes after the key ID."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def encoded(self) -> str:
        """The line's base64 field: base64(key ID || signature)."""
        return base64.b64encode(self.key_id + self.signature).decode("ascii")

    def line(self) -> str:
        """The signature line, newline included."""
        return f"{SIGNATURE_PREFIX}{self.name} {self.encoded}\n"


class ParsedNote(NamedTuple):
    """A note split into text and signature lines, nothing verified."""

    text: str
    signatures: tuple[NoteSignature, ...]


class VerifiedNote(NamedTuple):
    """An opened note: its text, the signatures that verified, and those by unknown keys."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


class OpenedNote(NamedTuple):
    """``(text, names)``: the note text and the key name of each verified signature."""

    text: str
    names: list[str]


def _check_note_text(text: object) -> str:
    """Return ``text`` if it can be signed: a str ending in newline, UTF-8, no control chars."""
    if not isinstance(text, str):
        raise TypeError(f"note text must be str, got {type(text).__name__}")
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    if _CONTROL.search(text):
        raise ValueError("note text must not contain control characters other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("note text must be valid UTF-8") from exc
    return text


def parse_note(signed: str | bytes) -> ParsedNote:
    """Split a signed note into text and signature lines; `NoteInvalid` if malformed.

    Checks the syntax only (steps 1-4 below); `verify_note` checks the signatures.
    """
    # 1. The note is UTF-8 with no ASCII control character other than newline.
    if isinstance(signed, bytes | bytearray | memoryview):
        try:
            signed = bytes(signed).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteInvalid("malformed note: not UTF-8") from None
    if not isinstance(signed, str):
        raise NoteInvalid(f"malformed note: got {type(signed).__name__}, not text")
    try:
        signed.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteInvalid("malformed note: not UTF-8") from None
    if _CONTROL.search(signed):
        raise NoteInvalid("malformed note: control character")
    # 2. The last blank line separates the text (with its final newline) from the
    #    signature block, which is non-empty and ends in a newline.
    split = signed.rfind("\n\n")
    if split < 0:
        raise NoteInvalid("malformed note: no blank line before the signatures")
    text, block = signed[: split + 1], signed[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteInvalid("malformed note: no signature lines, or no final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteInvalid(f"malformed note: more than {MAX_SIGNATURES} signatures")
    # 3. Each line is "— <name> <base64(key ID || signature)>".
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteInvalid(f"malformed note: signature line {number} does not start with '— '")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        raw = b64decode_canonical(encoded)
        # 4. A valid key name, and at least a key ID and one byte of signature.
        if not is_valid_name(name) or raw is None or len(raw) <= KEY_ID_SIZE:
            raise NoteInvalid(f"malformed note: signature line {number}")
        signatures.append(NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:]))
    return ParsedNote(text, tuple(signatures))


def _verifier_table(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    table: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        slot = (v.name, bytes(v.key_id))
        if slot in table and table[slot] != v:
            # Two different keys claim the same name and ID: the configuration is
            # compromised or broken, and neither can be trusted to decide.
            raise NoteInvalid(f"ambiguous key {v.name}+{slot[1].hex()}")
        table[slot] = v
    return table


def verify_note(signed: str | bytes, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Parse a signed note and check its signatures; `NoteInvalid` on any failure.

    Returns the text with the verified signatures and those by unknown keys.
    """
    text, signatures = parse_note(signed)
    known = _verifier_table(verifiers)
    message = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen_lines: set[str] = set()
    seen_keys: set[tuple[str, bytes]] = set()
    for sig in signatures:
        # 5. An exactly repeated line is refused: no honest signer writes one.
        line = sig.line()
        if line in seen_lines:
            raise NoteInvalid(f"duplicate signature line for key {sig.name}+{sig.key_id.hex()}")
        seen_lines.add(line)
        slot = (sig.name, sig.key_id)
        verifier = known.get(slot)
        # 6. Unknown keys (name and ID not both known) are ignored, as the spec requires.
        if verifier is None:
            unverified.append(sig)
            continue
        # 7. A known key signs once; a second line by it would go unchecked in Go.
        if slot in seen_keys:
            raise NoteInvalid(f"two signatures by key {sig.name}+{sig.key_id.hex()}")
        seen_keys.add(slot)
        # 8. A known key's signature must verify, or the whole note is rejected.
        if not verifier.verify(message, sig.signature):
            raise NoteInvalid(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        verified.append(sig)
    # 9. At least one signature by a known key.
    if not verified:
        raise NoteInvalid("note has no verifiable signatures")
    return VerifiedNote(text, tuple(verified), tuple(unverified))


def open_note(signed: str | bytes, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Verify a signed note; return ``(text, names of the keys whose signatures verified)``."""
    text, verified, _ = verify_note(signed, verifiers)
    return OpenedNote(text, [sig.name for sig in verified])


def _signature_lines(text: str, signers: Sequence[NoteSigner]) -> list[NoteSignature]:
    if not signers:
        raise ValueError("a signed note needs at least one signer")
    message = text.encode("utf-8")
    slots: set[tuple[str, bytes]] = set()
    lines: list[NoteSignature] = []
    for signer in signers:
        name, kid = _check_name(signer.name), bytes(signer.key_id)
        if len(kid) != KEY_ID_SIZE:
            raise ValueError(f"signer {name}: key ID must be {KEY_ID_SIZE} bytes")
        if (name, kid) in slots:
            raise ValueError(f"signer {name}+{kid.hex()} given twice")
        slots.add((name, kid))
        lines.append(NoteSignature(name, kid, bytes(signer.sign(message))))
    return lines


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` (which must end in a newline) and return the signed note.

    One signature line per signer, in order. `ValueError` if the text cannot be a
    note's text, no signer is given, or a key is given twice.
    """
    text = _check_note_text(text)
    lines = _signature_lines(text, signers)
    return text + "\n" + "".join(sig.line() for sig in lines)


def add_signatures(signed: str | bytes, signers: Sequence[NoteSigner]) -> str:
    """Return ``signed`` with one more signature line per signer (as Go's ``note.Sign``).

    Existing lines are kept, except one by the same name and key ID as a new signer,
    which the new line replaces. Existing signatures are not verified here.
    """
    text, existing = parse_note(signed)
    lines = _signature_lines(text, signers)
    replaced = {(sig.name, sig.key_id) for sig in lines}
    kept = [sig for sig in existing if (sig.name, sig.key_id) not in replaced]
    return text + "\n" + "".join(sig.line() for sig in [*kept, *lines])
