"""GB 11643-1999 resident ID numbers: known-answer vectors and property tests."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import residentid

# Known-answer vectors. The first is the example in DOMAIN.md, the second the worked
# example printed in the standard itself; both are public, neither comes from our code.
VALID = ["11010519491231002X", "440524188001010014"]
INVALID = {
    "110105194912310021": "check character",  # right shape, wrong check character
    "440524188001010015": "check character",
    "11010519491231002x": "digit or X",  # lower-case x is not the standard's X
    "11010519490230002X": "not a calendar date",  # 30 February
    "11010519491331002X": "not a calendar date",  # month 13
    "1101051949123100": "characters",  # too short
    "11010519491231002X1": "characters",  # too long
    "１１０１０５１９４９１２３１００２Ｘ": "digit or X",  # full-width digits
    "A1010519491231002X": "digit or X",
}


@pytest.mark.parametrize("number", VALID)
def test_known_valid_numbers(number: str) -> None:
    assert residentid.is_valid(number)
    assert residentid.problem(number) is None
    assert residentid.check_character(number[:17]) == number[17]


@pytest.mark.parametrize(("number", "reason"), INVALID.items())
def test_known_invalid_numbers_say_why(number: str, reason: str) -> None:
    assert not residentid.is_valid(number)
    assert reason in (residentid.problem(number) or "")


def test_check_character_by_hand() -> None:
    # 11010519491231002: weighted sum 167, 167 mod 11 = 2, and index 2 of "10X98765432" is X.
    digits = [int(d) for d in "11010519491231002"]
    total = sum(d * w for d, w in zip(digits, residentid.WEIGHTS, strict=True))
    assert total == 167
    assert residentid.CHECK_CHARACTERS[total % 11] == "X"


def test_sex_and_birth_date_are_read_from_the_number() -> None:
    assert residentid.birth_date("11010519491231002X") == dt.date(1949, 12, 31)
    assert not residentid.is_male("11010519491231002X")  # sequence 002 is even: a woman
    assert residentid.is_male("440524188001010014")  # sequence 001 is odd: a man


def test_leap_days() -> None:
    leap = "110105200002290" + "01"
    assert residentid.is_valid(leap + residentid.check_character(leap))
    not_leap = "110105190002290" + "01"  # 1900 is not a leap year
    assert not residentid.is_valid(not_leap + residentid.check_character(not_leap))


birth_days = st.dates(min_value=dt.date(1880, 1, 1), max_value=dt.date(2030, 12, 31))


@st.composite
def numbers(draw: st.DrawFn) -> str:
    division = draw(st.integers(110000, 659999))
    day = draw(birth_days)
    seq = draw(st.integers(0, 999))
    first17 = f"{division:06d}{day:%Y%m%d}{seq:03d}"
    return first17 + residentid.check_character(first17)


@given(numbers())
def test_every_generated_number_is_valid(number: str) -> None:
    assert residentid.is_valid(number)


@given(numbers(), st.sampled_from(list(residentid.CHECK_CHARACTERS)))
def test_any_other_check_character_is_rejected(number: str, other: str) -> None:
    forged = number[:17] + other
    assert residentid.is_valid(forged) == (other == number[17])


@given(numbers(), st.integers(0, 16), st.integers(1, 9))
def test_a_single_changed_digit_is_caught(number: str, position: int, delta: int) -> None:
    # MOD 11-2 detects every single-digit substitution (weights are non-zero mod 11).
    digits = list(number)
    digits[position] = str((int(digits[position]) + delta) % 10)
    changed = "".join(digits)
    if residentid.birth_date(changed) is None:
        assert not residentid.is_valid(changed)
    else:
        assert residentid.check_character(changed[:17]) != number[17]
        assert not residentid.is_valid(changed)


mixed = st.one_of(
    numbers(),
    numbers().map(lambda n: n[:17] + ("0" if n[17] != "0" else "1")),
    numbers().map(lambda n: n[:10] + "1399" + n[14:]),
    numbers().map(lambda n: n.lower()),
    st.text(alphabet="0123456789Xx-", min_size=0, max_size=20),
    st.text(max_size=20),
    st.none(),
)


@settings(max_examples=300)
@given(st.lists(mixed, max_size=40), st.integers(0, 5))
def test_vectorised_verdicts_equal_the_scalar_reference(
    values: list[str | None], skip: int
) -> None:
    array = pa.array(values, type=pa.string()).slice(min(skip, len(values)))
    expected = [None if v is None else residentid.is_valid(v) for v in array.to_pylist()]
    assert residentid.valid_mask(array).to_pylist() == expected


def test_vectorised_over_chunked_columns() -> None:
    column = pa.chunked_array([["11010519491231002X"], ["110105194912310021", None]])
    assert residentid.valid_mask(column).to_pylist() == [True, False, None]
