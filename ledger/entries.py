"""Ledger entries and their canonical byte encoding (format version 1).

An entry records one event the exchange must be able to account for:

- ``ask``: a department's principal asked a fact (id and version) for a service matter
  and a case; the outcome is ``answered`` (with a digest of the answer, never the answer
  itself, and the publications it relied on), ``refused`` or ``error`` (with a reason);
- ``publication``: a department's steward published (``answered``) a dataset version as
  publication N, or the exchange refused it or failed (``refused`` / ``error``).

The ledger's Merkle leaf is ``SHA-256(0x00 || encode(entry))``, so the encoding is part
of the ledger's format: the same entry must always give the same bytes, and a byte
string must decode to at most one entry. Both hold by construction, and `decode`
enforces the second by refusing every encoding `encode` would not produce.

No personal data
----------------
Citizens appear only as

- subject tags, ``HMAC-SHA256(subject key, "onceonly-subject-v1" || 0x00 || resident ID)``
  (`subject_tag`): whoever holds the ledger subject key (the exchange, for an
  authorised auditor or a citizen asking through their department) can find a person's
  entries; nobody else can link them to a person;
- subject commitments, ``SHA-256("onceonly-commitment-v1" || 0x00 || len(salt) || salt ||
  resident ID)`` (`subject_commitment`): with the salt, which the exchange keeps outside
  the ledger, a commitment can be opened to show exactly which resident an entry was
  about; without it the commitment reveals nothing. The salt's length byte keeps a
  16-32-byte salt from sliding into the ID (``salt || "1" || id`` vs ``salt || "1id"``),
  so a commitment opens to one ID only.

Every text field is the caller's, so the encoder guards it (a last line of defence,
not a licence to pass personal text):

- all text is printable ASCII. Names in the city are written in Han characters, which
  therefore cannot enter; a romanised name still could, so ``reason`` must be a fixed
  message chosen by code (``"no grant for service matter"``), never text built from a
  request or a record;
- no text field may contain 15 or more consecutive digits: that refuses the 18-character
  GB 11643 shape ``[0-9]{17}[0-9X]`` anywhere in a field, and the 15-digit numbers of
  1989, at the price of refusing any other long digit run (a case reference needs none).

Encoding, version 1
-------------------
A fixed sequence of fields in this order, every integer big-endian, no padding, no
separators, nothing after the last field::

    uint8    version               0x01
    uint8    kind                  0x01 ask, 0x02 publication
    text     time                  "YYYY-MM-DDTHH:MM:SSZ" (UTC, whole seconds)
    text     department
    text     principal
    text     fact_id
    text     fact_version
    opt_u64  publication_id
    text     dataset
    text     dataset_version
    text     service_matter
    text     case_ref
    uint8    outcome               0x01 answered, 0x02 refused, 0x03 error
    text     reason
    opt_hash answer_digest
    u64_set  relied_on             publication ids
    hash_set subject_tags
    hash_set subject_commitments
    text     embargo_until         "YYYY-MM-DD" or empty

    text     = uint16 length n, then n bytes of printable ASCII (0x20-0x7E);
               a field that does not apply is the empty text, 0x0000
    opt_u64  = 0x00 (absent) | 0x01 followed by uint64 (below 2**63)
    opt_hash = 0x00 (absent) | 0x01 followed by 32 bytes
    u64_set  = uint16 count, then count uint64s, strictly increasing
    hash_set = uint16 count, then count 32-byte strings, strictly increasing bytewise

Why this rather than canonical JSON: every field is length-prefixed or fixed-width in a
fixed order, so a byte string parses one way only, with no escaping, no number
formatting, no key order and no Unicode normalisation to agree on (RFC 8785 exists
because JSON needs all four); sets are sorted and duplicate-free so a set has one
encoding; hashes take 32 bytes rather than 64 hex characters. It is the style of RFC
6962's own ``MerkleTreeLeaf`` and of TLS structures, so a verifier in another language
(Go's ``cryptobyte``, say) decodes it in a few lines. The version byte comes first: a
later format gets a new number and old leaves are never re-encoded.

Which fields apply (checked when an `Entry` is made, so also by `decode`):

- ``ask``: ``fact_id`` and ``fact_version`` set; ``publication_id``, ``dataset`` and
  ``dataset_version`` empty; as many subject tags as commitments. An *answered* ask
  also needs ``service_matter`` and ``case_ref`` (a refusal may lack them: their
  absence is a reason to refuse).
- ``publication``: ``dataset`` set; no fact, service matter, case, subjects or
  ``relied_on``. A *published* (``answered``) one needs ``publication_id`` and
  ``dataset_version``; its ``answer_digest`` is the SHA-256 of the signed manifest.
- ``embargo_until`` (asks only): the ask belongs to a covert investigation; the citizen
  view hides it until that date (auditors always see it). Empty for no embargo.
- ``answered``: ``answer_digest`` set, ``reason`` empty. ``refused`` / ``error``:
  ``reason`` set, no ``answer_digest`` and no ``relied_on``.
- identifiers (``department``, ``principal``, ``fact_id``, ``fact_version``,
  ``dataset``, ``dataset_version``, ``service_matter``) match
  ``[A-Za-z0-9][A-Za-z0-9._:/@+-]*``, at most 128 characters; ``case_ref`` (128) and
  ``reason`` (256) are printable ASCII without leading or trailing spaces.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import itertools
import re
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from ledger.errors import LedgerError

__all__ = [
    "COMMITMENT_DOMAIN",
    "FORMAT_VERSION",
    "SUBJECT_DOMAIN",
    "Entry",
    "EntryInvalid",
    "Kind",
    "Outcome",
    "SubjectTagger",
    "decode",
    "encode",
    "encode_answer_columns",
    "encode_answers",
    "new_salt",
    "subject_commitment",
    "subject_commitments",
    "subject_tag",
    "utc_time",
]

FORMAT_VERSION: Final = 1
SUBJECT_DOMAIN: Final = b"onceonly-subject-v1\x00"
COMMITMENT_DOMAIN: Final = b"onceonly-commitment-v1\x00"

DIGEST_SIZE: Final = 32
MIN_SUBJECT_KEY: Final = 32
MIN_SALT: Final = 16
MAX_SALT: Final = 32
MAX_ID_TEXT: Final = 128
MAX_CASE_REF: Final = 128
MAX_REASON: Final = 256
MAX_SET: Final = 0xFFFF
MAX_PUBLICATION_ID: Final = 2**63 - 1  # a BIGINT in the exchange's registry

Kind = Literal["ask", "publication"]
Outcome = Literal["answered", "refused", "error"]

_KIND_CODE: Final[dict[str, int]] = {"ask": 1, "publication": 2}
_KIND_OF: Final[dict[int, Kind]] = {1: "ask", 2: "publication"}
_OUTCOME_CODE: Final[dict[str, int]] = {"answered": 1, "refused": 2, "error": 3}
_OUTCOME_OF: Final[dict[int, Outcome]] = {1: "answered", 2: "refused", 3: "error"}

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_LONG_DIGIT_RUN = re.compile(r"[0-9]{15}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RESIDENT_ID = re.compile(r"[0-9A-Z]{1,64}")
_RESIDENT_IDS = re.compile(rb"(?:[0-9A-Z]{1,64}\n)*")

_IDENTIFIER_FIELDS: Final = (
    "department",
    "principal",
    "fact_id",
    "fact_version",
    "dataset",
    "dataset_version",
    "service_matter",
)


class EntryInvalid(LedgerError):
    """An entry breaks a rule of the format, or bytes are not an entry's canonical encoding."""


# --- subjects -----------------------------------------------------------------------


def _check_resident_id(resident_id: object) -> bytes:
    # Used exactly as given, so the caller canonicalises (upper-case X): a lower-case
    # variant would silently make a second tag for the same person, hence refused.
    if not isinstance(resident_id, str) or not _RESIDENT_ID.fullmatch(resident_id):
        raise ValueError("a resident ID must be 1-64 characters of 0-9 and A-Z")
    return resident_id.encode("ascii")


def subject_tag(key: bytes, resident_id: str) -> bytes:
    """Return the 32-byte tag ``HMAC-SHA256(key, SUBJECT_DOMAIN || resident_id)``.

    ``key`` is the ledger subject key (at least 32 bytes); only its holder can compute
    or look up tags. Raises `ValueError` for a short key or a malformed ID.
    """
    if not isinstance(key, bytes) or len(key) < MIN_SUBJECT_KEY:
        raise ValueError(f"the subject key must be at least {MIN_SUBJECT_KEY} bytes")
    return hmac.new(key, SUBJECT_DOMAIN + _check_resident_id(resident_id), "sha256").digest()


def subject_commitment(resident_id: str, salt: bytes) -> bytes:
    """Return ``SHA-256(COMMITMENT_DOMAIN || len(salt) || salt || resident_id)``.

    ``salt`` is 16-32 random bytes (`new_salt`) that the caller keeps outside the
    ledger; it opens the commitment later. Raises `ValueError` for a bad salt or ID.
    """
    if not isinstance(salt, bytes) or not MIN_SALT <= len(salt) <= MAX_SALT:
        raise ValueError(f"the salt must be {MIN_SALT}-{MAX_SALT} bytes")
    ident = _check_resident_id(resident_id)
    return hashlib.sha256(COMMITMENT_DOMAIN + bytes([len(salt)]) + salt + ident).digest()


def new_salt() -> bytes:
    """Return a fresh 32-byte random salt for `subject_commitment`."""
    return secrets.token_bytes(MAX_SALT)


# --- time ---------------------------------------------------------------------------


def utc_time(now: dt.datetime | None = None) -> str:
    """Return ``now`` (default: the clock) as ``YYYY-MM-DDTHH:MM:SSZ``, whole seconds, UTC.

    A naive datetime has no defined instant and raises `ValueError`.
    """
    moment = dt.datetime.now(dt.UTC) if now is None else now
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    m = moment.astimezone(dt.UTC)
    # Not strftime: its %Y writes the year 500 as "500", not the "0500" the format needs.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def _check_time(value: object) -> None:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        raise EntryInvalid(f"time must be YYYY-MM-DDTHH:MM:SSZ, got {value!r}")
    try:  # the pattern fixed every field's place; the constructor checks the calendar
        dt.datetime(
            int(value[0:4]), int(value[5:7]), int(value[8:10]),
            int(value[11:13]), int(value[14:16]), int(value[17:19]),
        )  # fmt: skip
    except ValueError:
        raise EntryInvalid(f"time {value!r} is not a calendar date and time") from None


# --- the entry ----------------------------------------------------------------------


def _check_text(name: str, value: object, limit: int) -> str:
    if type(value) is not str:  # exactly str: a subclass could hash or compare otherwise
        raise EntryInvalid(f"{name} must be a str, got {type(value).__name__}")
    return _checked_text(name, value, limit)


@functools.lru_cache(maxsize=4096)
def _checked_text(name: str, value: str, limit: int) -> str:
    # Cached: an exchange writes the same departments, principals, facts and service
    # matters into entry after entry. Only passing values are cached (a raise is not).
    if len(value) > limit:
        raise EntryInvalid(f"{name} is {len(value)} characters, more than {limit}")
    if not _PRINTABLE.fullmatch(value):
        raise EntryInvalid(f"{name} must be printable ASCII")
    if value != value.strip(" "):
        raise EntryInvalid(f"{name} has leading or trailing spaces")
    if _LONG_DIGIT_RUN.search(value):
        # The value is not echoed: it may be the very ID number this check keeps out.
        raise EntryInvalid(f"{name} holds 15 or more consecutive digits (a resident ID?)")
    return value


def _check_digest(name: str, value: object) -> None:
    if type(value) is not bytes or len(value) != DIGEST_SIZE:
        raise EntryInvalid(f"{name} must be {DIGEST_SIZE} bytes")


def _check_publication_id(name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_PUBLICATION_ID:
        raise EntryInvalid(f"{name} must be an integer in 0..2**63-1, got {value!r}")


def _sorted_set(name: str, values: object) -> tuple[object, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, tuple | list | frozenset | set):
        raise EntryInvalid(f"{name} must be a tuple")
    items = tuple(values)
    if len(items) > MAX_SET:
        raise EntryInvalid(f"{name} has more than {MAX_SET} items")
    try:
        ordered = tuple(sorted(items))
    except TypeError:
        raise EntryInvalid(f"{name} mixes values of different types") from None
    if any(a == b for a, b in itertools.pairwise(ordered)):
        raise EntryInvalid(f"{name} has a duplicate")
    return ordered


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One ledger entry; validated when made (raises `EntryInvalid`), immutable after.

    The three sets are stored sorted (they are sets: order carries no meaning); a
    duplicate in one of them is refused. Build entries with `Entry.ask` and
    `Entry.publication`, which stamp the time from ``now``.
    """

    kind: Kind
    time: str
    department: str
    principal: str
    outcome: Outcome
    fact_id: str = ""
    fact_version: str = ""
    publication_id: int | None = None
    dataset: str = ""
    dataset_version: str = ""
    service_matter: str = ""
    case_ref: str = ""
    reason: str = ""
    answer_digest: bytes | None = None
    relied_on: tuple[int, ...] = ()
    subject_tags: tuple[bytes, ...] = ()
    subject_commitments: tuple[bytes, ...] = ()
    embargo_until: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in _KIND_CODE:
            raise EntryInvalid(f"kind must be 'ask' or 'publication', got {self.kind!r}")
        if not isinstance(self.outcome, str) or self.outcome not in _OUTCOME_CODE:
            raise EntryInvalid(f"outcome must be answered, refused or error, got {self.outcome!r}")
        _check_time(self.time)
        for name in _IDENTIFIER_FIELDS:
            value = _check_text(name, getattr(self, name), MAX_ID_TEXT)
            if value and not _IDENTIFIER.fullmatch(value):
                raise EntryInvalid(f"{name} must match [A-Za-z0-9][A-Za-z0-9._:/@+-]*")
        _check_text("case_ref", self.case_ref, MAX_CASE_REF)
        _check_text("reason", self.reason, MAX_REASON)
        if not self.department or not self.principal:
            raise EntryInvalid("department and principal are required")
        if self.publication_id is not None:
            _check_publication_id("publication_id", self.publication_id)
        if self.answer_digest is not None:
            _check_digest("answer_digest", self.answer_digest)
        _check_text("embargo_until", self.embargo_until, 10)
        if self.embargo_until:
            if not _DATE.fullmatch(self.embargo_until):
                raise EntryInvalid("embargo_until must be a date, YYYY-MM-DD")
            try:
                dt.date.fromisoformat(self.embargo_until)
            except ValueError:
                raise EntryInvalid(f"embargo_until is not a date: {self.embargo_until}") from None

        relied_on = _sorted_set("relied_on", self.relied_on)
        for pub in relied_on:
            _check_publication_id("relied_on item", pub)
        tags = _sorted_set("subject_tags", self.subject_tags)
        commitments = _sorted_set("subject_commitments", self.subject_commitments)
        for tag in tags:
            _check_digest("subject tag", tag)
        for commitment in commitments:
            _check_digest("subject commitment", commitment)
        object.__setattr__(self, "relied_on", relied_on)
        object.__setattr__(self, "subject_tags", tags)
        object.__setattr__(self, "subject_commitments", commitments)

        self._check_rules()

    def _check_rules(self) -> None:
        answered = self.outcome == "answered"
        if answered:
            if self.answer_digest is None:
                raise EntryInvalid("an answered entry needs answer_digest")
            if self.reason:
                raise EntryInvalid("an answered entry has no reason")
        else:
            if not self.reason:
                raise EntryInvalid(f"a {self.outcome} entry needs a reason")
            if self.answer_digest is not None or self.relied_on:
                raise EntryInvalid(f"a {self.outcome} entry has no answer_digest or relied_on")

        if self.kind == "ask":
            if not self.fact_id or not self.fact_version:
                raise EntryInvalid("an ask needs fact_id and fact_version")
            if self.publication_id is not None or self.dataset or self.dataset_version:
                raise EntryInvalid("an ask has no publication_id, dataset or dataset_version")
            if answered and not (self.service_matter and self.case_ref):
                raise EntryInvalid("an answered ask needs service_matter and case_ref")
            if len(self.subject_tags) != len(self.subject_commitments):
                raise EntryInvalid("an ask has one subject commitment per subject tag")
        else:
            if not self.dataset:
                raise EntryInvalid("a publication needs dataset")
            if self.fact_id or self.fact_version or self.service_matter or self.case_ref:
                raise EntryInvalid("a publication has no fact, service matter or case")
            if self.embargo_until:
                raise EntryInvalid("a publication has no embargo")
            if self.subject_tags or self.subject_commitments or self.relied_on:
                raise EntryInvalid("a publication has no subjects and relies on nothing")
            if answered and (self.publication_id is None or not self.dataset_version):
                raise EntryInvalid("a published publication needs publication_id and version")

    @classmethod
    def ask(
        cls,
        *,
        department: str,
        principal: str,
        fact_id: str,
        fact_version: str,
        service_matter: str,
        case_ref: str,
        outcome: Outcome,
        reason: str = "",
        answer_digest: bytes | None = None,
        relied_on: tuple[int, ...] = (),
        subject_tags: tuple[bytes, ...] = (),
        subject_commitments: tuple[bytes, ...] = (),
        embargo_until: str = "",
        now: dt.datetime | None = None,
    ) -> Entry:
        """Make the entry of one ask, stamped at ``now`` (default: the clock)."""
        return cls(
            kind="ask",
            time=utc_time(now),
            department=department,
            principal=principal,
            outcome=outcome,
            fact_id=fact_id,
            fact_version=fact_version,
            service_matter=service_matter,
            case_ref=case_ref,
            reason=reason,
            answer_digest=answer_digest,
            relied_on=relied_on,
            subject_tags=subject_tags,
            subject_commitments=subject_commitments,
            embargo_until=embargo_until,
        )

    @classmethod
    def publication(
        cls,
        *,
        department: str,
        principal: str,
        dataset: str,
        dataset_version: str,
        outcome: Outcome,
        publication_id: int | None = None,
        manifest_digest: bytes | None = None,
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> Entry:
        """Make the entry of one publication event, stamped at ``now`` (default: the clock).

        ``manifest_digest`` (the SHA-256 of the signed manifest) goes in ``answer_digest``.
        """
        return cls(
            kind="publication",
            time=utc_time(now),
            department=department,
            principal=principal,
            outcome=outcome,
            publication_id=publication_id,
            dataset=dataset,
            dataset_version=dataset_version,
            reason=reason,
            answer_digest=manifest_digest,
        )


# --- encoding -----------------------------------------------------------------------

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


@functools.lru_cache(maxsize=4096)
def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return _U16.pack(len(raw)) + raw


def encode(entry: Entry) -> bytes:
    """Return the canonical version-1 encoding of ``entry`` (see the module docstring)."""
    if not isinstance(entry, Entry):
        raise EntryInvalid(f"only an Entry can be encoded, got {type(entry).__name__}")
    out = bytearray((FORMAT_VERSION, _KIND_CODE[entry.kind]))
    for text in (entry.time, entry.department, entry.principal, entry.fact_id, entry.fact_version):
        out += _text(text)
    if entry.publication_id is None:
        out.append(0)
    else:
        out.append(1)
        out += _U64.pack(entry.publication_id)
    for text in (entry.dataset, entry.dataset_version, entry.service_matter, entry.case_ref):
        out += _text(text)
    out.append(_OUTCOME_CODE[entry.outcome])
    out += _text(entry.reason)
    if entry.answer_digest is None:
        out.append(0)
    else:
        out.append(1)
        out += entry.answer_digest
    out += _U16.pack(len(entry.relied_on))
    for pub in entry.relied_on:
        out += _U64.pack(pub)
    for hashes in (entry.subject_tags, entry.subject_commitments):
        out += _U16.pack(len(hashes))
        for digest in hashes:
            out += digest
    out += _text(entry.embargo_until)
    return bytes(out)


class SubjectTagger:
    """`subject_tag` for many IDs under one key: the HMAC's keyed state is computed once."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_SUBJECT_KEY:
            raise ValueError(f"the subject key must be at least {MIN_SUBJECT_KEY} bytes")
        self._keyed = hmac.new(key, SUBJECT_DOMAIN, "sha256")
        # HMAC by its definition (RFC 2104): H((K ^ opad) || H((K ^ ipad) || message)).
        # Keeping both padded states lets `many` copy two C hash objects per ID instead
        # of a Python HMAC object: half the cost on a million-subject caseload.
        block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + SUBJECT_DOMAIN)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, resident_id: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(_check_resident_id(resident_id))
        return mac.digest()

    def many(self, resident_ids: Sequence[bytes]) -> list[bytes]:
        """The tags of many IDs (ASCII bytes), equal to `subject_tag` of each."""
        _check_resident_ids(resident_ids)
        inner, outer = self._inner.copy, self._outer.copy

        def tag(resident_id: bytes) -> bytes:
            state = inner()
            state.update(resident_id)
            mac = outer()
            mac.update(state.digest())
            return mac.digest()

        return [tag(r) for r in resident_ids]


def subject_commitments(resident_ids: Sequence[bytes], salts: Sequence[bytes]) -> list[bytes]:
    """`subject_commitment` of each (ID, salt) pair; IDs as ASCII bytes, salts 16 bytes."""
    _check_resident_ids(resident_ids)
    if len(salts) != len(resident_ids) or any(len(s) != MIN_SALT for s in salts):
        raise ValueError(f"one {MIN_SALT}-byte salt per resident ID")
    sha256, prefix = hashlib.sha256, COMMITMENT_DOMAIN + bytes([MIN_SALT])
    return [sha256(prefix + s + r).digest() for s, r in zip(salts, resident_ids, strict=True)]


def _check_resident_ids(resident_ids: Sequence[bytes]) -> None:
    """`_check_resident_id` for many at once: one regular-expression pass over them all."""
    if not all(type(r) is bytes for r in resident_ids):
        raise ValueError("resident IDs must be bytes here")
    lines = b"\n".join(resident_ids) + b"\n" if resident_ids else b""
    # One line per ID, each well-formed (an ID holding a newline would be two lines).
    if lines.count(b"\n") != len(resident_ids) or not _RESIDENT_IDS.fullmatch(lines):
        raise ValueError("a resident ID must be 1-64 characters of 0-9 and A-Z")


def encode_answers(
    template: Entry,
    answers: Sequence[tuple[bytes, Sequence[bytes], Sequence[bytes]]],
) -> list[bytes]:
    """Encode many answered asks that differ only in answer digest and subjects.

    ``template`` is an answered ask carrying every shared field (validated once, as any
    `Entry`); each answer is ``(answer_digest, subject_tags, subject_commitments)``.
    The result equals ``[encode(replace(template, answer_digest=d, subject_tags=t,
    subject_commitments=c)) for d, t, c in answers]`` — the per-row checks (32-byte
    hashes, as many commitments as tags, no repeats) are made here too — at a fraction
    of the cost, for a caseload of a million subjects.
    """
    if template.kind != "ask" or template.outcome != "answered":
        raise EntryInvalid("encode_answers takes an answered ask as its template")
    full = encode(template)
    # The encoding up to the answer digest is shared; after it come relied_on (shared),
    # the two hash sets (per row) and the embargo (shared).
    head = full[: _prefix_length(template)] + b"\x01"
    relied = _U16.pack(len(template.relied_on)) + b"".join(_U64.pack(p) for p in template.relied_on)
    tail = _text(template.embargo_until)
    out = []
    for digest, tags, commitments in answers:
        if len(digest) != DIGEST_SIZE:
            raise EntryInvalid("answer_digest must be 32 bytes")
        if len(tags) != len(commitments):
            raise EntryInvalid("an ask has one subject commitment per subject tag")
        parts = [head, digest, relied]
        for hashes, what in ((tags, "subject tags"), (commitments, "subject commitments")):
            ordered = sorted(hashes)
            if any(len(h) != DIGEST_SIZE for h in ordered):
                raise EntryInvalid(f"{what} must be 32 bytes each")
            if any(a == b for a, b in itertools.pairwise(ordered)):
                raise EntryInvalid(f"{what} have a duplicate")
            parts.append(_U16.pack(len(ordered)))
            parts.extend(ordered)
        parts.append(tail)
        out.append(b"".join(parts))
    return out


def encode_answer_columns(
    template: Entry,
    digests: Sequence[bytes],
    tags: Sequence[Sequence[bytes]],
    commitments: Sequence[Sequence[bytes]],
) -> list[bytes]:
    """`encode_answers` with the answers as columns: what a vectorised caseload has.

    Row ``i`` is ``(digests[i], {tags[k][i]}, {commitments[k][i]})`` over the subject
    columns ``k`` (one per subject parameter, none for a fact without one; a subject
    named twice in a row counts once). With one subject column, the common case, each
    row is one join of bytes.
    """
    if template.kind != "ask" or template.outcome != "answered":
        raise EntryInvalid("encode_answer_columns takes an answered ask as its template")
    n = len(digests)
    if len(tags) != len(commitments) or any(len(column) != n for column in (*tags, *commitments)):
        raise EntryInvalid("one tag and one commitment column per subject, one row per digest")
    # Every hash 32 bytes long, checked column by column in C (a million rows each).
    if any(set(map(len, column)) - {DIGEST_SIZE} for column in (digests, *tags, *commitments)):
        raise EntryInvalid("answer digests, subject tags and commitments must be 32 bytes each")
    full = encode(template)
    head = full[: _prefix_length(template)] + b"\x01"
    relied = _U16.pack(len(template.relied_on)) + b"".join(_U64.pack(p) for p in template.relied_on)
    tail = _text(template.embargo_until)
    if not tags:  # a fact without subject parameters: both sets empty
        none = _U16.pack(0)
        return [b"".join((head, d, relied, none, none, tail)) for d in digests]
    if len(tags) == 1:
        one = _U16.pack(1)
        join = b"".join
        between = relied + one
        return [
            join((head, d, between, t, one, c, tail))
            for d, t, c in zip(digests, tags[0], commitments[0], strict=True)
        ]
    rows = zip(digests, zip(*tags, strict=True), zip(*commitments, strict=True), strict=True)
    return encode_answers(template, [(d, tuple(set(t)), tuple(set(c))) for d, t, c in rows])


def _prefix_length(entry: Entry) -> int:
    """The length of an entry's encoding up to its answer digest's presence byte."""
    size = 2
    for text in (entry.time, entry.department, entry.principal, entry.fact_id, entry.fact_version):
        size += 2 + len(text)
    size += 1 if entry.publication_id is None else 9
    for text in (entry.dataset, entry.dataset_version, entry.service_matter, entry.case_ref):
        size += 2 + len(text)
    return size + 1 + 2 + len(entry.reason)


_Member = TypeVar("_Member", int, bytes)


class _Reader:
    """Reads the fields of one encoding in order; every shortfall is `EntryInvalid`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise EntryInvalid(f"entry ends inside {what} (byte {self.pos})")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = _U16.unpack(self.take(2, what))[0]
        return value

    def u64(self, what: str) -> int:
        value: int = _U64.unpack(self.take(8, what))[0]
        return value

    def text(self, what: str) -> str:
        raw = self.take(self.u16(what), what)
        if not _PRINTABLE.fullmatch(raw.decode("latin-1")):
            raise EntryInvalid(f"{what} is not printable ASCII")
        return raw.decode("ascii")

    def present(self, what: str) -> bool:
        flag = self.u8(what)
        if flag > 1:
            raise EntryInvalid(f"{what} presence byte is {flag}, not 0 or 1")
        return flag == 1

    def ascending(self, items: list[_Member], what: str) -> None:
        if items != sorted(set(items)):
            raise EntryInvalid(f"{what} are not strictly increasing")


def decode(data: bytes) -> Entry:
    """Return the entry whose canonical encoding is ``data``.

    Raises `EntryInvalid` for anything `encode` would not have produced: another
    version, an unknown code, a truncated or overlong field, trailing bytes, unsorted
    or repeated set members, or an entry that breaks the rules.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EntryInvalid(f"an entry is bytes, got {type(data).__name__}")
    raw = bytes(data)
    r = _Reader(raw)
    version = r.u8("version")
    if version != FORMAT_VERSION:
        raise EntryInvalid(f"unknown entry format version {version}")
    kind_code = r.u8("kind")
    if kind_code not in _KIND_OF:
        raise EntryInvalid(f"unknown entry kind code {kind_code}")
    time = r.text("time")
    department = r.text("department")
    principal = r.text("principal")
    fact_id = r.text("fact_id")
    fact_version = r.text("fact_version")
    publication_id = r.u64("publication_id") if r.present("publication_id") else None
    dataset = r.text("dataset")
    dataset_version = r.text("dataset_version")
    service_matter = r.text("service_matter")
    case_ref = r.text("case_ref")
    outcome_code = r.u8("outcome")
    if outcome_code not in _OUTCOME_OF:
        raise EntryInvalid(f"unknown outcome code {outcome_code}")
    reason = r.text("reason")
    answer_digest = r.take(DIGEST_SIZE, "answer_digest") if r.present("answer_digest") else None
    relied_on = [r.u64("relied_on") for _ in range(r.u16("relied_on count"))]
    r.ascending(relied_on, "relied_on")
    tags = [r.take(DIGEST_SIZE, "subject tag") for _ in range(r.u16("subject tag count"))]
    r.ascending(tags, "subject tags")
    commitments = [
        r.take(DIGEST_SIZE, "subject commitment") for _ in range(r.u16("commitment count"))
    ]
    r.ascending(commitments, "subject commitments")
    embargo_until = r.text("embargo_until")
    if r.pos != len(raw):
        raise EntryInvalid(f"{len(raw) - r.pos} bytes after the last field")
    entry = Entry(
        kind=_KIND_OF[kind_code],
        time=time,
        department=department,
        principal=principal,
        outcome=_OUTCOME_OF[outcome_code],
        fact_id=fact_id,
        fact_version=fact_version,
        publication_id=publication_id,
        dataset=dataset,
        dataset_version=dataset_version,
        service_matter=service_matter,
        case_ref=case_ref,
        reason=reason,
        answer_digest=answer_digest,
        relied_on=tuple(relied_on),
        subject_tags=tuple(tags),
        subject_commitments=tuple(commitments),
        embargo_until=embargo_until,
    )
    # Belt and braces: whatever a check above missed, only the canonical bytes pass.
    if encode(entry) != raw:
        raise EntryInvalid("not the canonical encoding of its entry")
    return entry
