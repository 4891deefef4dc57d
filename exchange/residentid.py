"""Resident ID numbers (居民身份证号码), GB 11643-1999.

Eighteen characters: a six-digit GB/T 2260 division code, the birth date as YYYYMMDD, a
three-digit sequence (odd for men, even for women) and a check character computed with
ISO 7064 MOD 11-2 over the first seventeen digits.

The scalar functions are the reference; `valid_mask` is the vectorised form used on whole
columns, and the property tests hold the two to the same verdicts.
"""

from __future__ import annotations

import datetime as dt
from operator import mul

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"  # indexed by (weighted sum mod 11)

# float32: the weighted sum of 17 digits is at most 900, exact in float32, and a float
# product is one BLAS call where an integer one is a slow loop (2x on a million IDs).
_WEIGHTS = np.array(WEIGHTS, dtype=np.float32)
_CHECK_BYTES = np.frombuffer(CHECK_CHARACTERS.encode("ascii"), dtype=np.uint8)
_SHAPE = r"^[0-9]{17}[0-9X]$"
_DIGIT_OFFSET = ord("0") * sum(WEIGHTS)  # the weighted sum of the digits' ASCII codes, less this


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for seventeen digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    total = sum(map(mul, first17.encode("ascii"), WEIGHTS)) - _DIGIT_OFFSET
    return CHECK_CHARACTERS[total % 11]


def birth_date(id_number: str) -> dt.date | None:
    """The birth date an ID number encodes, or None when it is not a calendar date."""
    try:
        return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def is_male(id_number: str) -> bool:
    """The sex rule: an odd sequence number is a man's."""
    return int(id_number[16]) % 2 == 1


def problem(id_number: str) -> str | None:
    """Why an ID number is not valid under GB 11643, or None when it is."""
    if len(id_number) != 18:
        return f"has {len(id_number)} characters, not 18"
    head, last = id_number[:17], id_number[17]
    if not (head.isascii() and head.isdigit()) or last not in "0123456789X":
        return "must be 17 digits followed by a digit or X"
    if birth_date(id_number) is None:
        return f"birth date {id_number[6:14]} is not a calendar date"
    expected = check_character(head)
    if last != expected:
        return f"check character is {last}, expected {expected}"
    return None


def is_valid(id_number: str) -> bool:
    """True when the ID number has the right shape, a real birth date and check character."""
    return problem(id_number) is None


def check_characters(digits: np.ndarray) -> np.ndarray:
    """Vectorised check characters (ASCII codes) for an (n, 17) array of digit values."""
    sums = (digits.astype(np.float32) @ _WEIGHTS).astype(np.int64)
    codes: np.ndarray = _CHECK_BYTES[sums % 11]
    return codes


def calendar_ok(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Vectorised: whether (year, month, day) is a date of the proleptic Gregorian calendar."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_len = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    safe_month = np.clip(month, 0, 12)
    last = month_len[safe_month] + ((safe_month == 2) & leap)
    ok: np.ndarray = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last)
    return ok


def valid_mask(ids: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """Vectorised `is_valid` over a string column; nulls stay null."""
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    return pa.chunked_array([_valid_chunk(c) for c in chunks], type=pa.bool_())


def _valid_chunk(ids: pa.Array) -> pa.Array:
    ids = ids.cast(pa.string())
    shaped = pc.fill_null(pc.match_substring_regex(ids, _SHAPE), False)
    verdict = np.zeros(len(ids), dtype=bool)
    positions = np.flatnonzero(shaped.to_numpy(zero_copy_only=False))
    if len(positions):
        codes = _fixed_width_bytes(pc.take(ids, pa.array(positions)), 18)
        digits = codes[:, :17].astype(np.int32) - 48
        year = digits[:, 6] * 1000 + digits[:, 7] * 100 + digits[:, 8] * 10 + digits[:, 9]
        month = digits[:, 10] * 10 + digits[:, 11]
        day = digits[:, 12] * 10 + digits[:, 13]
        ok = calendar_ok(year, month, day) & (check_characters(digits) == codes[:, 17])
        verdict[positions] = ok
    return pa.array(verdict, mask=ids.is_null().to_numpy(zero_copy_only=False))


def _fixed_width_bytes(strings: pa.Array, width: int) -> np.ndarray:
    """An (n, width) uint8 view of a string array whose values are all `width` bytes long."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)
    offsets = offsets[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(-1, width)
