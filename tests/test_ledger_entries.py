"""Ledger entries: the canonical encoding, subject tags and commitments, no personal data.

Evidence, in order:

1. Known answers: two entries whose bytes are written out field by field below (not
   produced by `encode`), pinned as hex with their RFC 6962 leaf hashes; subject tags
   and commitments recomputed with `hmac` and `hashlib` directly.
2. Round trips (hypothesis) and canonicity: every byte string `decode` accepts is the
   one `encode` gives back, whatever was mutated, truncated or appended.
3. The rules of the format and the guards that keep resident IDs and names out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import struct
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.entries import (
    COMMITMENT_DOMAIN,
    SUBJECT_DOMAIN,
    Entry,
    EntryInvalid,
    decode,
    encode,
    new_salt,
    subject_commitment,
    subject_tag,
    utc_time,
)
from ledger.errors import LedgerError
from ledger.merkle import leaf_hash

# --- known answers ------------------------------------------------------------------
#
# Each vector is the format spelled out by hand: length prefixes counted, set members
# in sorted order. The hex beside it is the same bytes, so a reader can check the one
# against the other without running anything.

KAT_ASK = Entry(
    kind="ask",
    time="2026-05-09T07:35:25Z",
    department="civil_affairs",
    principal="caseworker:civil_affairs/wang",
    outcome="answered",
    fact_id="is_mother_of",
    fact_version="1.0.0",
    service_matter="SM-0042",
    case_ref="CA-2026-0001",
    answer_digest=bytes(range(32)),
    relied_on=(7, 3),  # given unsorted: stored and encoded sorted
    subject_tags=(b"\xbb" * 32, b"\xaa" * 32),
    subject_commitments=(b"\xdd" * 32, b"\xcc" * 32),
)
KAT_ASK_BYTES = (
    b"\x01"  # version 1
    b"\x01"  # kind: ask
    b"\x00\x14"
    b"2026-05-09T07:35:25Z"  # time, 20 bytes
    b"\x00\x0d"
    b"civil_affairs"  # department, 13
    b"\x00\x1d"
    b"caseworker:civil_affairs/wang"  # principal, 29
    b"\x00\x0c"
    b"is_mother_of"  # fact_id, 12
    b"\x00\x05"
    b"1.0.0"  # fact_version, 5
    b"\x00"  # publication_id: absent
    b"\x00\x00"  # dataset: empty
    b"\x00\x00"  # dataset_version: empty
    b"\x00\x07"
    b"SM-0042"  # service_matter, 7
    b"\x00\x0c"
    b"CA-2026-0001"  # case_ref, 12
    b"\x01"  # outcome: answered
    b"\x00\x00"  # reason: empty
    b"\x01"
    + bytes(range(32))  # answer_digest: present, 00 01 .. 1f
    + b"\x00\x02"  # relied_on: 2 ids
    + b"\x00\x00\x00\x00\x00\x00\x00\x03"
    + b"\x00\x00\x00\x00\x00\x00\x00\x07"
    + b"\x00\x02"  # subject tags: 2, sorted
    + b"\xaa" * 32
    + b"\xbb" * 32
    + b"\x00\x02"  # subject commitments: 2, sorted
    + b"\xcc" * 32
    + b"\xdd" * 32
    + b"\x00\x00"  # embargo_until: none
)
KAT_ASK_HEX = (
    "01010014323032362d30352d30395430373a33353a32355a000d636976696c5f61666661697273001d"
    "63617365776f726b65723a636976696c5f616666616972732f77616e67000c69735f6d6f746865725f"
    "6f660005312e302e3000000000000007534d2d30303432000c43412d323032362d3030303101000001"
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f000200000000000000"
    "030000000000000007" + "0002" + "aa" * 32 + "bb" * 32 + "0002" + "cc" * 32 + "dd" * 32 + "0000"
)
KAT_ASK_LEAF = "9155e44f47a214eb885e2614eb9f21128e465e9526478cc81f7e8ae902f579ca"

KAT_PUBLICATION = Entry.publication(
    department="public_security",
    principal="steward:public_security/li",
    dataset="household_register",
    dataset_version="1.2.0",
    outcome="answered",
    publication_id=42,
    manifest_digest=b"\x5a" * 32,
    now=dt.datetime(2026, 5, 9, 16, 0, 0, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=8))),
)
KAT_PUBLICATION_BYTES = (
    b"\x01"  # version 1
    b"\x02"  # kind: publication
    b"\x00\x14"
    b"2026-05-09T08:00:00Z"  # 16:00:00.999999+08:00, in UTC, whole seconds
    b"\x00\x0f"
    b"public_security"  # department, 15
    b"\x00\x1a"
    b"steward:public_security/li"  # principal, 26
    b"\x00\x00"  # fact_id: empty
    b"\x00\x00"  # fact_version: empty
    b"\x01"
    b"\x00\x00\x00\x00\x00\x00\x00\x2a"  # publication_id: present, 42
    b"\x00\x12"
    b"household_register"  # dataset, 18
    b"\x00\x05"
    b"1.2.0"  # dataset_version, 5
    b"\x00\x00"  # service_matter: empty
    b"\x00\x00"  # case_ref: empty
    b"\x01"  # outcome: answered (published)
    b"\x00\x00"  # reason: empty
    b"\x01"
    + b"\x5a" * 32  # answer_digest (the manifest's digest): present
    + b"\x00\x00"  # relied_on: none
    + b"\x00\x00"  # subject tags: none
    + b"\x00\x00"  # subject commitments: none
    + b"\x00\x00"  # embargo_until: none
)
KAT_PUBLICATION_HEX = (
    "01020014323032362d30352d30395430383a30303a30305a000f7075626c69635f7365637572697479"
    "001a737465776172643a7075626c69635f73656375726974792f6c690000000001000000000000002a"
    "0012686f757365686f6c645f72656769737465720005312e322e300000000001000001"
    + "5a" * 32
    + "000000000000"
    + "0000"
)
KAT_PUBLICATION_LEAF = "f990dbe4450fd812adfcb3f6653af2f24e5f437f338413c5b34828926b31cf00"

KATS = [
    pytest.param(KAT_ASK, KAT_ASK_BYTES, KAT_ASK_HEX, KAT_ASK_LEAF, id="ask"),
    pytest.param(
        KAT_PUBLICATION,
        KAT_PUBLICATION_BYTES,
        KAT_PUBLICATION_HEX,
        KAT_PUBLICATION_LEAF,
        id="publication",
    ),
]


@pytest.mark.parametrize(("entry", "by_hand", "hex_", "leaf"), KATS)
def test_known_answer_encoding_and_leaf_hash(
    entry: Entry, by_hand: bytes, hex_: str, leaf: str
) -> None:
    assert by_hand.hex() == hex_  # the two spellings of the vector agree
    assert hashlib.sha256(b"\x00" + by_hand).hexdigest() == leaf
    assert encode(entry).hex() == hex_
    assert leaf_hash(encode(entry)).hex() == leaf
    assert decode(bytes.fromhex(hex_)) == entry


def test_known_answer_subject_tag() -> None:
    key = bytes(range(32))
    resident = "11010519491231002X"  # the worked example of GB 11643-1999
    by_hand = hmac.new(key, b"onceonly-subject-v1\x00" + resident.encode(), "sha256").digest()
    assert SUBJECT_DOMAIN == b"onceonly-subject-v1\x00"
    assert by_hand.hex() == "529b26db375c1ad5c9a8753579334a08c387dde1de6af565b0b3486b0d8b59cd"
    assert subject_tag(key, resident) == by_hand
    assert subject_tag(b"\x01" + key[1:], resident) != by_hand  # keyed
    assert subject_tag(key, "11010519491231003X") != by_hand


def test_known_answer_subject_commitment() -> None:
    salt = bytes(range(0x40, 0x50))  # 16 bytes
    resident = "11010519491231002X"
    by_hand = hashlib.sha256(
        b"onceonly-commitment-v1\x00" + b"\x10" + salt + resident.encode()
    ).digest()
    assert COMMITMENT_DOMAIN == b"onceonly-commitment-v1\x00"
    assert by_hand.hex() == "96e0cac7bbbc84533f3d37fee3661dd4a746d294e4720f11c03fb3c3417978ba"
    assert subject_commitment(resident, salt) == by_hand
    assert subject_commitment(resident, salt + b"\x00") != by_hand


def test_commitment_salt_length_is_bound() -> None:
    # Without the length byte, salt+"1" with ID "0105..." and salt with ID "10105..."
    # would hash the same bytes: a commitment that opens to two IDs.
    salt = bytes(range(16))
    assert subject_commitment("10105194912310", salt) != subject_commitment(
        "0105194912310", salt + b"1"
    )


@pytest.mark.parametrize(
    ("key", "resident"),
    [
        (bytes(31), "11010519491231002X"),  # key too short
        ("k" * 32, "11010519491231002X"),  # key not bytes
        (bytes(32), ""),
        (bytes(32), "11010519491231002x"),  # lower-case x: a second tag for one person
        (bytes(32), " 11010519491231002X"),
        (bytes(32), "１１０１０５"),  # full-width digits
        (bytes(32), "1" * 65),
    ],
)
def test_subject_tag_refuses_bad_input(key: Any, resident: Any) -> None:
    with pytest.raises(ValueError):
        subject_tag(key, resident)


@pytest.mark.parametrize("salt", [bytes(15), bytes(33), b"", "s" * 16])
def test_subject_commitment_refuses_bad_salt(salt: Any) -> None:
    with pytest.raises(ValueError):
        subject_commitment("11010519491231002X", salt)


def test_new_salt_is_fresh_and_usable() -> None:
    a, b = new_salt(), new_salt()
    assert len(a) == 32 and a != b
    assert len(subject_commitment("11010519491231002X", a)) == 32


# --- time ---------------------------------------------------------------------------


def test_utc_time_is_injectable_whole_seconds_utc() -> None:
    beijing = dt.timezone(dt.timedelta(hours=8))
    assert utc_time(dt.datetime(2026, 1, 1, 7, 59, 59, 900_000, tzinfo=beijing)) == (
        "2025-12-31T23:59:59Z"
    )
    with pytest.raises(ValueError):
        utc_time(dt.datetime(2026, 1, 1))  # naive: which instant?
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_time())


@pytest.mark.parametrize(
    "time",
    [
        "2026-05-09T07:35:25+00:00",
        "2026-05-09 07:35:25Z",
        "2026-05-09T07:35:25.5Z",
        "2026-02-30T00:00:00Z",
        "2026-05-09T24:00:00Z",
        "2026-05-09T07:35:60Z",
        "2026-5-09T07:35:25Z",
    ],
)
def test_time_must_be_canonical(time: str) -> None:
    with pytest.raises(EntryInvalid):
        dataclasses.replace(KAT_ASK, time=time)


# --- round trips --------------------------------------------------------------------

LONG_DIGITS = re.compile(r"[0-9]{15}")


def _no_id(text: str) -> bool:
    return LONG_DIGITS.search(text) is None


identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,40}", fullmatch=True).filter(_no_id)
free_text = (
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80)
    .map(lambda s: s.strip(" "))
    .filter(lambda s: bool(s) and _no_id(s))
)
digests = st.binary(min_size=32, max_size=32)
publication_ids = st.integers(min_value=0, max_value=2**63 - 1)
times = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
).map(utc_time)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    outcome = draw(st.sampled_from(["answered", "refused", "error"]))
    answered = outcome == "answered"
    common: dict[str, Any] = {
        "time": draw(times),
        "department": draw(identifiers),
        "principal": draw(identifiers),
        "outcome": outcome,
        "reason": "" if answered else draw(free_text),
        "answer_digest": draw(digests) if answered else None,
    }
    if draw(st.booleans()):
        subjects = draw(st.integers(0, 4))
        return Entry(
            kind="ask",
            fact_id=draw(identifiers),
            fact_version=draw(identifiers),
            service_matter=draw(identifiers) if answered else draw(st.just("") | identifiers),
            case_ref=draw(free_text) if answered else draw(st.just("") | free_text),
            relied_on=tuple(draw(st.sets(publication_ids, max_size=5))) if answered else (),
            subject_tags=tuple(draw(st.sets(digests, min_size=subjects, max_size=subjects))),
            subject_commitments=tuple(draw(st.sets(digests, min_size=subjects, max_size=subjects))),
            embargo_until=draw(st.just("") | st.dates().map(lambda d: d.isoformat())),
            **common,
        )
    return Entry(
        kind="publication",
        dataset=draw(identifiers),
        dataset_version=draw(identifiers) if answered else draw(st.just("") | identifiers),
        publication_id=draw(publication_ids) if answered else draw(st.none() | publication_ids),
        **common,
    )


@given(entries())
def test_round_trip(entry: Entry) -> None:
    data = encode(entry)
    assert decode(data) == entry
    assert encode(decode(data)) == data


@given(entries(), entries())
def test_different_entries_encode_differently(a: Entry, b: Entry) -> None:
    assume(a != b)
    assert encode(a) != encode(b)


@given(entries(), st.data())
def test_any_mutation_is_refused_or_is_itself_canonical(entry: Entry, data: st.DataObject) -> None:
    original = encode(entry)
    position = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]))
    mutated = original[:position] + bytes([byte]) + original[position + 1 :]
    try:
        other = decode(mutated)
    except EntryInvalid:
        return
    assert other != entry
    assert encode(other) == mutated


@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_only_when_canonical(data: bytes) -> None:
    try:
        entry = decode(data)
    except EntryInvalid:
        return
    assert encode(entry) == data


def test_every_bit_flip_of_a_vector_is_refused_or_canonical() -> None:
    refused = 0
    for bit in range(len(KAT_ASK_BYTES) * 8):
        flipped = bytearray(KAT_ASK_BYTES)
        flipped[bit // 8] ^= 1 << (bit % 8)
        try:
            other = decode(bytes(flipped))
        except EntryInvalid:
            refused += 1
            continue
        assert other != KAT_ASK and encode(other) == bytes(flipped)
    assert refused > 0


# --- non-canonical encodings ----------------------------------------------------------


def _splice(old: bytes, new: bytes, base: bytes = KAT_ASK_BYTES) -> bytes:
    assert base.count(old) == 1, old
    return base.replace(old, new)


U64 = struct.Struct(">Q")
NON_CANONICAL = {
    "trailing byte": KAT_ASK_BYTES + b"\x00",
    "version 2": b"\x02" + KAT_ASK_BYTES[1:],
    "version 0": b"\x00" + KAT_ASK_BYTES[1:],
    "unknown kind": KAT_ASK_BYTES[:1] + b"\x03" + KAT_ASK_BYTES[2:],
    "time with offset": _splice(
        b"\x00\x142026-05-09T07:35:25Z", b"\x00\x192026-05-09T07:35:25+00:00"
    ),
    "time with fraction": _splice(
        b"\x00\x142026-05-09T07:35:25Z", b"\x00\x162026-05-09T07:35:25.0Z"
    ),
    "presence byte 2": _splice(b"\x01" + bytes(range(32)), b"\x02" + bytes(range(32))),
    "unknown outcome": _splice(b"CA-2026-0001\x01", b"CA-2026-0001\x04"),
    "relied_on unsorted": _splice(U64.pack(3) + U64.pack(7), U64.pack(7) + U64.pack(3)),
    "relied_on repeated": _splice(U64.pack(3) + U64.pack(7), U64.pack(3) + U64.pack(3)),
    "relied_on id 2**63": _splice(U64.pack(3) + U64.pack(7), U64.pack(3) + U64.pack(2**63)),
    "tags unsorted": _splice(b"\xaa" * 32 + b"\xbb" * 32, b"\xbb" * 32 + b"\xaa" * 32),
    "tags repeated": _splice(b"\xaa" * 32 + b"\xbb" * 32, b"\xaa" * 32 + b"\xaa" * 32),
    "commitments unsorted": _splice(b"\xcc" * 32 + b"\xdd" * 32, b"\xdd" * 32 + b"\xcc" * 32),
    "non-ASCII text": _splice(b"\x00\x07SM-0042", b"\x00\x07SM-00\xc3\xa9"),
    "control character": _splice(b"\x00\x07SM-0042", b"\x00\x07SM-004\n"),
    "trailing space": _splice(b"\x00\x0cCA-2026-0001", b"\x00\x0dCA-2026-0001 "),
    "more tags than commitments": _splice(
        b"\x00\x02" + b"\xcc" * 32 + b"\xdd" * 32, b"\x00\x01" + b"\xcc" * 32
    ),
}


@pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_non_canonical_encodings_are_refused(data: bytes) -> None:
    assert data != KAT_ASK_BYTES
    with pytest.raises(EntryInvalid):
        decode(data)


def test_every_truncation_is_refused() -> None:
    for length in range(len(KAT_ASK_BYTES)):
        with pytest.raises(EntryInvalid):
            decode(KAT_ASK_BYTES[:length])


@pytest.mark.parametrize("value", ["text", 7, None, [1, 2]])
def test_decode_refuses_non_bytes(value: Any) -> None:
    with pytest.raises(EntryInvalid):
        decode(value)


def test_entry_invalid_is_a_ledger_error() -> None:
    assert issubclass(EntryInvalid, LedgerError)


# --- the rules ----------------------------------------------------------------------

REFUSED_ASK = dataclasses.replace(
    KAT_ASK,
    outcome="refused",
    reason="no grant for this service matter",
    answer_digest=None,
    relied_on=(),
    service_matter="",
    case_ref="",
)

BROKEN: dict[str, tuple[Entry, dict[str, Any]]] = {
    "unknown kind": (KAT_ASK, {"kind": "query"}),
    "unknown outcome": (KAT_ASK, {"outcome": "maybe"}),
    "answered without digest": (KAT_ASK, {"answer_digest": None}),
    "answered with reason": (KAT_ASK, {"reason": "because"}),
    "answered ask without case": (KAT_ASK, {"case_ref": ""}),
    "answered ask without service matter": (KAT_ASK, {"service_matter": ""}),
    "ask without fact": (KAT_ASK, {"fact_id": ""}),
    "ask without fact version": (KAT_ASK, {"fact_version": ""}),
    "ask with publication id": (KAT_ASK, {"publication_id": 1}),
    "ask with dataset": (KAT_ASK, {"dataset": "births"}),
    "ask with a tag but no commitment": (KAT_ASK, {"subject_commitments": (b"\xcc" * 32,)}),
    "no department": (KAT_ASK, {"department": ""}),
    "no principal": (KAT_ASK, {"principal": ""}),
    "short digest": (KAT_ASK, {"answer_digest": bytes(31)}),
    "digest as text": (KAT_ASK, {"answer_digest": "00" * 16}),
    "short tag": (KAT_ASK, {"subject_tags": (b"\xaa" * 31, b"\xbb" * 32)}),
    "repeated tag": (KAT_ASK, {"subject_tags": (b"\xaa" * 32, b"\xaa" * 32)}),
    "negative publication id": (KAT_ASK, {"relied_on": (-1,)}),
    "bool publication id": (KAT_ASK, {"relied_on": (True,)}),
    "tags as bytes": (KAT_ASK, {"subject_tags": b"\xaa" * 64}),
    "refusal without reason": (REFUSED_ASK, {"reason": ""}),
    "refusal with digest": (REFUSED_ASK, {"answer_digest": bytes(32)}),
    "refusal relying on a publication": (REFUSED_ASK, {"relied_on": (3,)}),
    "identifier with space": (KAT_ASK, {"fact_id": "is mother of"}),
    "identifier too long": (KAT_ASK, {"fact_id": "f" * 129}),
    "reason too long": (REFUSED_ASK, {"reason": "r" * 257}),
    "publication with fact": (KAT_PUBLICATION, {"fact_id": "is_mother_of"}),
    "publication with case": (KAT_PUBLICATION, {"case_ref": "CA-1"}),
    "publication with subject": (
        KAT_PUBLICATION,
        {"subject_tags": (b"\xaa" * 32,), "subject_commitments": (b"\xcc" * 32,)},
    ),
    "publication relying on one": (KAT_PUBLICATION, {"relied_on": (1,)}),
    "published without id": (KAT_PUBLICATION, {"publication_id": None}),
    "published without version": (KAT_PUBLICATION, {"dataset_version": ""}),
    "publication without dataset": (KAT_PUBLICATION, {"dataset": ""}),
    "publication id 2**63": (KAT_PUBLICATION, {"publication_id": 2**63}),
    "publication with embargo": (KAT_PUBLICATION, {"embargo_until": "2027-01-01"}),
    "embargo not a date": (KAT_ASK, {"embargo_until": "2027-02-30"}),
    "embargo with time": (KAT_ASK, {"embargo_until": "2027-01-01T00:00"}),
}


@pytest.mark.parametrize(("base", "change"), BROKEN.values(), ids=BROKEN.keys())
def test_rules_are_enforced(base: Entry, change: dict[str, Any]) -> None:
    with pytest.raises(EntryInvalid):
        dataclasses.replace(base, **change)


def test_a_refusal_may_lack_case_and_service_matter() -> None:
    assert decode(encode(REFUSED_ASK)) == REFUSED_ASK
    refused_publication = Entry.publication(
        department="health",
        principal="steward:health/zhao",
        dataset="births",
        dataset_version="",
        outcome="refused",
        reason="package signature does not verify",
        now=dt.datetime(2026, 5, 9, tzinfo=dt.UTC),
    )
    assert refused_publication.publication_id is None
    assert decode(encode(refused_publication)) == refused_publication


def test_sets_are_stored_sorted_so_order_does_not_matter() -> None:
    shuffled = dataclasses.replace(
        KAT_ASK,
        relied_on=(3, 7),
        subject_tags=(b"\xaa" * 32, b"\xbb" * 32),
        subject_commitments=(b"\xcc" * 32, b"\xdd" * 32),
    )
    assert shuffled == KAT_ASK and encode(shuffled) == KAT_ASK_BYTES
    assert KAT_ASK.relied_on == (3, 7)


def test_ask_factory_stamps_injected_time() -> None:
    entry = Entry.ask(
        department="civil_affairs",
        principal="caseworker:civil_affairs/wang",
        fact_id="is_mother_of",
        fact_version="1.0.0",
        service_matter="SM-0042",
        case_ref="CA-2026-0001",
        outcome="answered",
        answer_digest=bytes(range(32)),
        relied_on=(7, 3),
        subject_tags=(b"\xbb" * 32, b"\xaa" * 32),
        subject_commitments=(b"\xdd" * 32, b"\xcc" * 32),
        now=dt.datetime(2026, 5, 9, 7, 35, 25, 123, tzinfo=dt.UTC),
    )
    assert entry == KAT_ASK


def test_entries_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        KAT_ASK.reason = "changed"  # type: ignore[misc]


# --- no personal data -----------------------------------------------------------------

TEXT_FIELDS = [
    "department",
    "principal",
    "fact_id",
    "fact_version",
    "service_matter",
    "case_ref",
    "reason",
]
RESIDENT_ID = "11010519491231002X"


def _with_text(name: str, value: str) -> Entry:
    base = REFUSED_ASK if name == "reason" else KAT_ASK
    return dataclasses.replace(base, **{name: value})


@pytest.mark.parametrize("name", [*TEXT_FIELDS, "dataset", "dataset_version"])
@pytest.mark.parametrize(
    "value",
    [
        RESIDENT_ID,
        "110105194912310021",  # check digit a digit
        f"id-{RESIDENT_ID}",
        f"x{RESIDENT_ID[:17]}7y",
        "110105491231002",  # the 15-digit numbers of GB 11643-1989
    ],
)
def test_no_text_field_holds_a_resident_id(name: str, value: str) -> None:
    base = KAT_PUBLICATION if name.startswith("dataset") else None
    with pytest.raises(EntryInvalid) as refused:
        if base is not None:
            dataclasses.replace(base, **{name: value})
        else:
            _with_text(name, value)
    # The refusal must not repeat the number it keeps out of the ledger.
    assert value not in str(refused.value)
    assert RESIDENT_ID[:15] not in str(refused.value)


@pytest.mark.parametrize("name", TEXT_FIELDS)
@pytest.mark.parametrize("value", ["王小明", "Wang 小明", "申请人 王小明 不符合条件"])
def test_no_text_field_holds_a_name_in_han_characters(name: str, value: str) -> None:
    with pytest.raises(EntryInvalid):
        _with_text(name, value)


@given(
    prefix=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    digits=st.from_regex(r"[0-9]{17}[0-9X]", fullmatch=True),
    suffix=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    name=st.sampled_from(["reason", "case_ref"]),
)
def test_an_id_shape_anywhere_in_free_text_is_refused(
    prefix: str, digits: str, suffix: str, name: str
) -> None:
    with pytest.raises(EntryInvalid):
        _with_text(name, prefix + digits + suffix)


def test_decode_refuses_an_id_smuggled_into_the_bytes() -> None:
    # Bytes that skip the constructor still meet its checks on the way in.
    reason = f"no record for {RESIDENT_ID}".encode()
    data = _splice(
        b"\x01\x00\x00\x01" + bytes(range(32)),  # outcome answered, reason "", digest
        b"\x02" + struct.pack(">H", len(reason)) + reason + b"\x00",
    )
    data = _splice(b"\x00\x02" + U64.pack(3) + U64.pack(7), b"\x00\x00", data)
    with pytest.raises(EntryInvalid, match="15 or more consecutive digits"):
        decode(data)
    clean = data.replace(RESIDENT_ID.encode(), b"the subject ID....")
    assert decode(clean).reason == "no record for the subject ID...."


def test_short_digit_runs_are_fine() -> None:
    entry = dataclasses.replace(KAT_ASK, case_ref="CA-2026-05-09-00012345678901")
    assert decode(encode(entry)) == entry


# --- many answers at once -----------------------------------------------------------------


@given(
    template=entries().filter(lambda e: e.kind == "ask" and e.outcome == "answered"),
    rows=st.lists(
        st.integers(0, 3).flatmap(
            lambda n: st.tuples(
                digests,
                st.sets(digests, min_size=n, max_size=n).map(tuple),
                st.sets(digests, min_size=n, max_size=n).map(tuple),
            )
        ),
        max_size=5,
    ),
)
def test_encode_answers_equals_encoding_each_entry(template: Entry, rows: list[Any]) -> None:
    from dataclasses import replace

    from ledger.entries import encode_answers

    expected = [
        encode(replace(template, answer_digest=d, subject_tags=t, subject_commitments=c))
        for d, t, c in rows
    ]
    assert encode_answers(template, rows) == expected
    for data, (d, t, c) in zip(expected, rows, strict=True):
        decoded = decode(data)
        assert (decoded.answer_digest, decoded.subject_tags, decoded.subject_commitments) == (
            d, tuple(sorted(t)), tuple(sorted(c)))  # fmt: skip


def test_encode_answers_checks_every_row() -> None:
    from ledger.entries import encode_answers

    tag, other = b"\xaa" * 32, b"\xbb" * 32
    with pytest.raises(EntryInvalid, match="32 bytes"):
        encode_answers(KAT_ASK, [(bytes(31), (), ())])
    with pytest.raises(EntryInvalid, match="one subject commitment per"):
        encode_answers(KAT_ASK, [(bytes(32), (tag,), ())])
    with pytest.raises(EntryInvalid, match="duplicate"):
        encode_answers(KAT_ASK, [(bytes(32), (tag, tag), (tag, other))])
    with pytest.raises(EntryInvalid, match="template"):
        encode_answers(REFUSED_ASK, [])


def test_subject_tagger_equals_subject_tag() -> None:
    from ledger.entries import SubjectTagger

    key = bytes(range(32))
    tagger = SubjectTagger(key)
    for resident in ("11010519491231002X", "440106199208150013"):
        assert tagger(resident) == subject_tag(key, resident)
    with pytest.raises(ValueError, match="resident ID"):
        tagger("11010519491231002x")


def test_subject_tagger_many_equals_subject_tag() -> None:
    from ledger.entries import SubjectTagger

    for key in (bytes(range(32)), bytes(range(100))):  # a key longer than a block is hashed
        tagger = SubjectTagger(key)
        residents = ["11010519491231002X", "440106199208150013", "1"]
        assert tagger.many([r.encode() for r in residents]) == [
            subject_tag(key, r) for r in residents
        ]
        assert tagger.many([]) == []
        for bad in (b"11010519491231002x", b"110105\n19491231002X", b"", b"A" * 65):
            with pytest.raises(ValueError, match="resident ID"):
                tagger.many([b"440106199208150013", bad])


@given(st.lists(st.from_regex(r"[0-9A-Z]{1,64}", fullmatch=True), max_size=20), st.data())
def test_subject_commitments_equal_one_by_one(residents: list[str], data: st.DataObject) -> None:
    from ledger.entries import subject_commitments

    salts = [data.draw(st.binary(min_size=16, max_size=16)) for _ in residents]
    assert subject_commitments([r.encode() for r in residents], salts) == [
        subject_commitment(r, s) for r, s in zip(residents, salts, strict=True)
    ]


def test_subject_commitments_refuse_bad_salts() -> None:
    from ledger.entries import subject_commitments

    with pytest.raises(ValueError, match="salt"):
        subject_commitments([b"440106199208150013"], [bytes(15)])
    with pytest.raises(ValueError, match="salt"):
        subject_commitments([b"440106199208150013"], [])


@given(
    template=entries().filter(lambda e: e.kind == "ask" and e.outcome == "answered"),
    subjects=st.integers(0, 3),
    rows=st.lists(st.tuples(digests, st.lists(digests, min_size=3, max_size=3)), max_size=5),
    repeat=st.booleans(),
)
def test_encode_answer_columns_equals_encoding_each_entry(
    template: Entry, subjects: int, rows: list[Any], repeat: bool
) -> None:
    """Columns in, the same bytes as one `Entry` per row; a subject named twice counts once."""
    from dataclasses import replace

    from ledger.entries import encode_answer_columns

    tags = [[hashes[k] for _, hashes in rows] for k in range(subjects)]
    if repeat and subjects > 1:
        tags[1] = tags[0]  # the same person in two parameters
    commitments = [[hashlib.sha256(t).digest() for t in column] for column in tags]
    expected = [
        encode(
            replace(
                template,
                answer_digest=d,
                subject_tags=tuple(sorted({column[i] for column in tags})),
                subject_commitments=tuple(sorted({column[i] for column in commitments})),
            )
        )
        for i, (d, _) in enumerate(rows)
    ]
    assert encode_answer_columns(template, [d for d, _ in rows], tags, commitments) == expected


def test_encode_answer_columns_checks_its_columns() -> None:
    from ledger.entries import encode_answer_columns

    tag = b"\xaa" * 32
    with pytest.raises(EntryInvalid, match="32 bytes"):
        encode_answer_columns(KAT_ASK, [bytes(31)], [[tag]], [[tag]])
    with pytest.raises(EntryInvalid, match="one row per digest"):
        encode_answer_columns(KAT_ASK, [bytes(32)], [[tag, tag]], [[tag]])
    with pytest.raises(EntryInvalid, match="one tag and one commitment column"):
        encode_answer_columns(KAT_ASK, [bytes(32)], [[tag]], [])
    with pytest.raises(EntryInvalid, match="template"):
        encode_answer_columns(REFUSED_ASK, [], [[]], [[]])
