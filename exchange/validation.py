"""Vectorised validation of connector batches against a dataset contract.

Per-record jsonschema runs at tens of thousands of records a second; registers hold tens
of millions. So the keywords the contracts use are compiled into Arrow compute and numpy
checks over whole columns: `type`, `enum`, `const`, `pattern`, `minLength`, `maxLength`,
`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `format` (`date`,
`gb11643`), `required` and `additionalProperties: false`. Anything else falls back to
jsonschema: per value for a property using another keyword or format, per record for a
contract using other record-level keywords. The verdicts equal jsonschema's; the property
tests in `tests/test_validation.py` hold the two to it row by row.

How values are read, before any keyword applies:
- a null is an absent field (tabular sources cannot tell the two apart);
- typed columns (Parquet, SQLite, PostgreSQL, JSON) keep their JSON type; dates and
  timestamps become ISO text, decimals numbers;
- text columns (CSV) are untyped: a value is a number when the contract's type admits a
  number and the text is a JSON number, a boolean when it admits a boolean and the text
  is `true` or `false`, and a string otherwise;
- a column of mixed JSON types (`connectors.base.JSON`) is decoded value by value.

One rule goes beyond JSON Schema, deliberately: an `integer` property is stored as a 64-bit
integer and a `number` as a 64-bit float, so a value JSON Schema accepts but that column
cannot hold (an integer beyond ±2^63 such as 1e300, or beyond the largest float) is
rejected under the rule `storage` rather than stored wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from jsonschema import Draft202012Validator

from connectors.base import JSON, PROBLEM, RAW, ROW, TEXT, value_kind
from exchange import residentid
from exchange.contracts import FIELD_KEYWORDS, Contract, format_checker

ANNOTATIONS = {
    "title",
    "description",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
}
RECORD_KEYWORDS = {
    "$schema",
    "$id",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "x-onceonly",
    *ANNOTATIONS,
}
VECTOR_FORMATS = {"date", "gb11643"}

VIOLATIONS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("keyword", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_JSON_INTEGER = r"^-?(0|[1-9][0-9]*)$"
# Python escapes that RE2 reads differently (Unicode classes, word boundaries) or not at
# all (lookaround, backreferences): patterns using them are checked with Python's `re`.
_UNSAFE_PATTERN = re.compile(r"\\[dDwWsSbBAZ0-9]|\(\?")
_HEX_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


@dataclass
class Values:
    """One column as JSON sees it: which rows hold which JSON type, and the values."""

    present: np.ndarray
    is_string: np.ndarray
    is_int: np.ndarray
    is_float: np.ndarray
    is_bool: np.ndarray
    is_other: np.ndarray
    strings: pa.Array  # null where not a string
    ints: np.ndarray  # int64, 0 where not an integer
    floats: np.ndarray  # float64, nan where not a float
    bools: np.ndarray
    others: list[Any]  # the Python value where is_other, else None

    @property
    def is_number(self) -> np.ndarray:
        return np.asarray(self.is_int | self.is_float)

    def python(self, row: int) -> Any:
        """One value as jsonschema sees it."""
        if self.is_string[row]:
            return self.strings[row].as_py()
        if self.is_int[row]:
            return int(self.ints[row])
        if self.is_float[row]:
            return float(self.floats[row])
        if self.is_bool[row]:
            return bool(self.bools[row])
        return self.others[row]


def _empty(n: int) -> Values:
    false = np.zeros(n, dtype=bool)
    return Values(
        present=false.copy(),
        is_string=false.copy(),
        is_int=false.copy(),
        is_float=false.copy(),
        is_bool=false.copy(),
        is_other=false.copy(),
        strings=pa.nulls(n, pa.string()),
        ints=np.zeros(n, np.int64),
        floats=np.full(n, np.nan),
        bools=false.copy(),
        others=[None] * n,
    )


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def values_of(column: pa.Array, kind: bytes | None, types: frozenset[str]) -> Values:
    """Read a connector column as JSON values (see the module docstring)."""
    n = len(column)
    if kind == JSON:
        return _from_python([None if v is None else json.loads(v) for v in column.to_pylist()])
    if kind == TEXT:
        return _from_text(column.cast(pa.string()), types)
    typ = column.type
    out = _empty(n)
    valid = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out.present = valid
    if pa.types.is_null(typ):
        out.present = np.zeros(n, dtype=bool)
    elif pa.types.is_boolean(typ):
        out.is_bool, out.bools = valid, _mask(column)
    elif pa.types.is_integer(typ):
        largest = pc.max(column).as_py() if pa.types.is_uint64(typ) else None
        if largest is not None and largest > _INT64_MAX:  # beyond int64: Python ints judge
            return _from_python(column.to_pylist())
        out.is_int = valid
        out.ints = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    elif pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        out.is_float = valid
        out.floats = pc.fill_null(column.cast(pa.float64()), math.nan).to_numpy(
            zero_copy_only=False
        )
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_temporal(typ):
        out.is_string, out.strings = valid, column.cast(pa.string())
    else:
        return _from_python(column.to_pylist())
    return out


def _from_text(strings: pa.Array, types: frozenset[str]) -> Values:
    n = len(strings)
    out = _empty(n)
    present = ~np.asarray(strings.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out.present = present
    rest = present.copy()
    if types & {"integer", "number"}:
        numeric = _mask(pc.match_substring_regex(strings, _JSON_NUMBER)) & rest
        integral = _mask(pc.match_substring_regex(strings, _JSON_INTEGER)) & numeric
        if integral.any():
            # Beyond int64 a number stays exact only as Python's int: read those as floats.
            short = _mask(pc.less_equal(pc.utf8_length(strings), 18)) & integral
            as_int = pc.cast(pc.if_else(pa.array(short), strings, pa.scalar("0")), pa.int64())
            out.is_int = short
            out.ints = np.where(short, as_int.to_numpy(zero_copy_only=False), 0)
            numeric_float = numeric & ~short
        else:
            numeric_float = numeric
        if numeric_float.any():
            as_float = pc.cast(
                pc.if_else(pa.array(numeric_float), strings, pa.scalar("0")), pa.float64()
            )
            out.is_float = numeric_float
            out.floats = np.where(numeric_float, as_float.to_numpy(zero_copy_only=False), math.nan)
        rest &= ~numeric
    if "boolean" in types:
        true, false = (
            _mask(pc.equal(strings, "true")) & rest,
            _mask(pc.equal(strings, "false")) & rest,
        )
        out.is_bool, out.bools = true | false, true
        rest &= ~(true | false)
    out.is_string = rest
    if np.array_equal(rest, present):  # every value is a string: the column as it is
        out.strings = strings
    else:
        out.strings = pc.if_else(pa.array(rest), strings, pa.scalar(None, pa.string()))
    return out


def _from_python(items: list[Any]) -> Values:
    n = len(items)
    out = _empty(n)
    strings: list[str | None] = [None] * n
    for i, v in enumerate(items):
        if v is None:
            continue
        out.present[i] = True
        if isinstance(v, bool):
            out.is_bool[i], out.bools[i] = True, v
        elif isinstance(v, int) and -(2**63) <= v < 2**63:
            out.is_int[i], out.ints[i] = True, v
        elif isinstance(v, float):
            out.is_float[i], out.floats[i] = True, v
        elif isinstance(v, str):
            out.is_string[i], strings[i] = True, v
        else:  # arrays, objects, integers beyond int64
            out.is_other[i], out.others[i] = True, v
    out.strings = pa.array(strings, pa.string())
    return out


# ---- one property -------------------------------------------------------------------------

Check = Callable[[Values], np.ndarray]  # -> rows that violate


def _types(schema: dict[str, Any]) -> frozenset[str]:
    declared = schema.get("type")
    if declared is None:
        return frozenset()
    return frozenset([declared] if isinstance(declared, str) else declared)


def _json_type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class PropertyRule:
    """The compiled checks of one property's subschema."""

    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        self.name = name
        self.schema = schema
        self.types = _types(schema)
        unknown = set(schema) - FIELD_KEYWORDS - ANNOTATIONS
        fmt = schema.get("format")
        # A keyword or format we do not compile: jsonschema judges every value.
        self.fallback = bool(unknown) or (fmt is not None and fmt not in VECTOR_FORMATS)
        self._reference = Draft202012Validator(schema, format_checker=format_checker())
        self.checks: list[tuple[str, Check]] = [] if self.fallback else list(self._compile())

    def _compile(self) -> Iterable[tuple[str, Check]]:
        s = self.schema
        if "type" in s:
            yield "type", self._type
        if "enum" in s:
            yield "enum", self._member(s["enum"])
        if "const" in s:
            yield "const", self._member([s["const"]])
        if "pattern" in s:
            yield "pattern", self._pattern(s["pattern"])
        if "minLength" in s:
            yield "minLength", _length_bound(s["minLength"], None)
        if "maxLength" in s:
            yield "maxLength", _length_bound(None, s["maxLength"])
        for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if keyword in s:
                yield keyword, _bound(keyword, s[keyword])
        if s.get("format") == "date":
            yield "format", _date
        if s.get("format") == "gb11643":
            yield "format", _resident_id

    def _type(self, v: Values) -> np.ndarray:
        t = self.types
        ok = np.zeros(len(v.present), dtype=bool)
        if "string" in t:
            ok |= v.is_string
        if "integer" in t or "number" in t:
            ok |= v.is_int
        if "number" in t:
            ok |= v.is_float
        elif "integer" in t:
            ok |= v.is_float & (np.floor(v.floats) == v.floats) & np.isfinite(v.floats)
        if "boolean" in t:
            ok |= v.is_bool
        for i in np.flatnonzero(v.is_other):
            found = _json_type_of(v.others[i])
            ok[i] = found in t or (found == "integer" and "number" in t)
        return np.asarray(v.present & ~ok)

    def _member(self, allowed: list[Any]) -> Check:
        texts = [a for a in allowed if isinstance(a, str)]
        numbers = [a for a in allowed if isinstance(a, int | float) and not isinstance(a, bool)]
        flags = [a for a in allowed if isinstance(a, bool)]
        structured = [a for a in allowed if isinstance(a, list | dict)]

        def check(v: Values) -> np.ndarray:
            ok = (
                v.is_string & _mask(pc.is_in(v.strings, pa.array(texts, pa.string())))
                if texts
                else np.zeros(len(v.present), bool)
            )
            if numbers:
                ok |= v.is_int & np.isin(
                    v.ints, [int(n) for n in numbers if float(n).is_integer() and abs(n) < 2**63]
                )
                ok |= v.is_float & np.isin(v.floats, [float(n) for n in numbers])
            if flags:
                ok |= v.is_bool & np.isin(v.bools, flags)
            for i in np.flatnonzero(v.is_other):
                ok[i] = any(
                    v.others[i] == s and type(v.others[i]) is type(s) for s in structured
                ) or (isinstance(v.others[i], int) and v.others[i] in numbers)
            return np.asarray(v.present & ~ok)

        return check

    def _pattern(self, pattern: str) -> Check:
        python = re.compile(pattern)
        safe = not _UNSAFE_PATTERN.search(pattern)
        translated = _HEX_ESCAPE.sub(lambda m: "\\x{" + m.group(1) + "}", pattern)
        fixed = _FixedPattern.compile(pattern) if safe else None

        def check(v: Values) -> np.ndarray:
            strings = v.is_string
            if safe:
                try:
                    if fixed is not None and _string_layout(v.strings) is not None:
                        matched = fixed.matches(v.strings, strings)
                    else:
                        matched = _mask(pc.match_substring_regex(v.strings, translated))
                except pa.ArrowInvalid:  # RE2 cannot read it: Python judges every value
                    matched = _python_matches(python, v, strings)
                else:
                    # Python's `$` also matches before a final newline (and only there does
                    # it differ from RE2's): values ending in one are few.
                    newline = strings & _mask(pc.ends_with(v.strings, "\n"))
                    if newline.any():
                        matched[newline] = _python_matches(python, v, newline)[newline]
            else:
                matched = _python_matches(python, v, strings)
            return np.asarray(strings & ~matched)

        return check

    def violations(self, v: Values) -> list[tuple[str, np.ndarray]]:
        """Each keyword with the rows that break it."""
        if self.fallback:
            bad = np.zeros(len(v.present), dtype=bool)
            for i in np.flatnonzero(v.present):
                bad[i] = not self._reference.is_valid(v.python(int(i)))
            return [("schema", bad)]
        return [(keyword, check(v)) for keyword, check in self.checks]

    def explain(self, keyword: str, value: Any) -> str:
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if keyword == "schema":
            error = next(iter(self._reference.iter_errors(value)), None)
            return f"{shown}: {error.message if error else 'invalid'}"
        wanted = self.schema.get(keyword)
        if keyword == "type":
            return f"{shown} is not of type {'/'.join(sorted(self.types))}"
        if keyword in ("enum", "const"):
            options = wanted if keyword == "enum" else [wanted]
            return f"{shown} is not one of {json.dumps(options, ensure_ascii=False)}"
        if keyword == "format":
            if self.schema["format"] == "gb11643" and isinstance(value, str):
                return f"{shown}: {residentid.problem(value)}"
            return f"{shown} is not a valid {self.schema['format']}"
        return f"{shown} breaks {keyword} {json.dumps(wanted, ensure_ascii=False)}"


def _python_matches(python: re.Pattern[str], v: Values, rows: np.ndarray) -> np.ndarray:
    matched = np.zeros(len(v.present), dtype=bool)
    for i in np.flatnonzero(rows):
        matched[i] = python.search(v.strings[int(i)].as_py()) is not None
    return matched


def _length_bound(low: int | None, high: int | None) -> Check:
    """Strings shorter than `low` or longer than `high` code points.

    A string of n bytes has between n/4 and n code points: the byte lengths (free, from
    the offsets) settle almost every row; code points are counted only if some are left.
    """

    def check(v: Values) -> np.ndarray:
        data = _string_layout(v.strings)
        if data is not None:
            size = np.diff(data[0])
            unsure = np.zeros(len(size), dtype=bool)
            if low is not None:
                unsure |= size < 4 * low
            if high is not None:
                unsure |= size > high
            unsure &= v.is_string
            if not unsure.any():
                return np.zeros(len(v.present), dtype=bool)
        lengths = pc.fill_null(pc.utf8_length(v.strings), 0).to_numpy(zero_copy_only=False)
        bad = np.zeros(len(v.present), dtype=bool)
        if low is not None:
            bad |= lengths < low
        if high is not None:
            bad |= lengths > high
        return np.asarray(v.is_string & bad)

    return check


def _string_layout(strings: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """A string array's offsets (one per value, plus one) and its bytes, without copying."""
    if not pa.types.is_string(strings.type):
        return None
    buffers = strings.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    body = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    return offsets, body


def _fixed_width(strings: pa.Array, width: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows (of those in `rows`) whose value is `width` bytes long, and those bytes as
    an (n, width) uint8 array."""
    layout = _string_layout(strings)
    assert layout is not None
    offsets, body = layout
    fits = np.flatnonzero(rows & (np.diff(offsets) == width))
    if len(fits) == len(strings) and len(fits):
        # Every value: the bytes are one block (a sliced array starts at its first offset).
        block = body[offsets[0] : offsets[0] + len(fits) * width]
        return fits, block.reshape(len(fits), width)
    starts = offsets[fits].astype(np.int64)
    return fits, body[starts[:, None] + np.arange(width)]


class _FixedPattern:
    """A pattern of ASCII characters and classes with fixed counts, anchored at both ends
    (`^[1-8][0-9]{5}$`): checked on the bytes of each value with a lookup per position."""

    # A class of ASCII letters, digits and ranges of them, or a character that is no
    # operator in Python's `re` or RE2; either with an exact count.
    _ATOM = re.compile(
        r"(\[(?:[A-Za-z0-9](?:-[A-Za-z0-9])?)+\]|[A-Za-z0-9 _,:;/@%&=~<>!'\"-])(?:\{([0-9]+)\})?"
    )

    def __init__(self, tables: list[np.ndarray]) -> None:
        self.tables = tables

    @classmethod
    def compile(cls, pattern: str) -> _FixedPattern | None:
        if not (pattern.startswith("^") and pattern.endswith("$")):
            return None
        body, at, tables = pattern[1:-1], 0, []
        while at < len(body):
            found = cls._ATOM.match(body, at)
            if found is None:
                return None
            atom, count = found.group(1), int(found.group(2) or 1)
            table = np.zeros(256, dtype=bool)
            if atom.startswith("["):
                for low, high in re.findall(r"([A-Za-z0-9])(?:-([A-Za-z0-9]))?", atom[1:-1]):
                    if high and ord(high) < ord(low):
                        return None
                    table[ord(low) : ord(high or low) + 1] = True
            else:
                table[ord(atom)] = True
            tables += [table] * count
            at = found.end()
        return cls(tables) if 0 < len(tables) <= 64 else None

    def matches(self, strings: pa.Array, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` match; a value one LF longer is left to the caller."""
        matched = np.zeros(len(rows), dtype=bool)
        fits, codes = _fixed_width(strings, len(self.tables), rows)
        ok = np.ones(len(fits), dtype=bool)
        for position, table in enumerate(self.tables):
            ok &= table[codes[:, position]]
        matched[fits] = ok
        return matched


# Which comparison of value against limit breaks each bound.
_BREAKS: dict[str, Callable[[Any, Any], Any]] = {
    "minimum": operator.lt,
    "maximum": operator.gt,
    "exclusiveMinimum": operator.le,
    "exclusiveMaximum": operator.ge,
}


def _bound(keyword: str, limit: float) -> Check:
    breaks = _BREAKS[keyword]
    # Integers are compared with an integral limit, so large values are not rounded.
    rounded = math.ceil(limit) if keyword in ("minimum", "exclusiveMaximum") else math.floor(limit)
    # numpy compares a float with the limit as a float: exact only if the limit is one.
    exact_float = float(limit) == limit

    def check(v: Values) -> np.ndarray:
        if _INT64_MIN <= rounded <= _INT64_MAX:
            ints = breaks(v.ints, rounded)
        else:  # every int64 lies on the same side of such a limit as 0 does
            ints = np.full(len(v.ints), breaks(0, rounded))
        if exact_float:
            floats = breaks(v.floats, limit)
        else:
            floats = np.zeros(len(v.floats), dtype=bool)
            for i in np.flatnonzero(v.is_float):
                floats[i] = breaks(float(v.floats[i]), limit)  # Python compares exactly
        bad = (v.is_int & ints) | (v.is_float & floats)
        for i in np.flatnonzero(v.is_other):
            if isinstance(v.others[i], int):  # an integer beyond int64: Python compares exactly
                bad[i] = breaks(v.others[i], limit)
        return np.asarray(bad)

    return check


def _date(v: Values) -> np.ndarray:
    ok = np.zeros(len(v.present), dtype=bool)
    if _string_layout(v.strings) is None:
        v = dataclasses.replace(v, strings=v.strings.cast(pa.string()))
    # `YYYY-MM-DD`, ASCII digits: exactly ten bytes.
    fits, codes = _fixed_width(v.strings, 10, v.is_string)
    digits = codes - np.uint8(48)  # a byte that is no digit wraps to above 9
    shaped = _all_digits(digits[:, _DATE_DIGITS]) & (codes[:, 4] == 45) & (codes[:, 7] == 45)
    ok[fits] = shaped & residentid.calendar_ok(
        _number(digits, 0, 4), _number(digits, 5, 7), _number(digits, 8, 10)
    )
    return np.asarray(v.is_string & ~ok)


_DATE_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9]
_ID_WEIGHTS = np.array(residentid.WEIGHTS, dtype=np.int32)
_ID_CHECKS = np.frombuffer(residentid.CHECK_CHARACTERS.encode("ascii"), dtype=np.uint8)


def _all_digits(digits: np.ndarray) -> np.ndarray:
    """Rows of a digit array (bytes less 48) that hold digits only: one check for the
    whole array first, as almost every row does."""
    if digits.size and digits.max() <= 9:
        return np.ones(len(digits), dtype=bool)
    return np.asarray((digits <= 9).all(axis=1))


def _number(digits: np.ndarray, start: int, end: int) -> np.ndarray:
    """The decimal number that columns `start:end` of a digit array spell."""
    powers = 10 ** np.arange(end - start - 1, -1, -1, dtype=np.int32)
    number: np.ndarray = digits[:, start:end].astype(np.int32) @ powers
    return number


def _resident_id(v: Values) -> np.ndarray:
    """`residentid.is_valid` on the bytes of each value: 17 ASCII digits and a digit or X,
    a calendar birth date, the ISO 7064 MOD 11-2 check character."""
    ok = np.zeros(len(v.present), dtype=bool)
    if _string_layout(v.strings) is None:
        v = dataclasses.replace(v, strings=v.strings.cast(pa.string()))
    fits, codes = _fixed_width(v.strings, 18, v.is_string)
    digits = codes[:, :17] - np.uint8(48)  # a byte that is no digit wraps to above 9
    last = codes[:, 17]
    shaped = _all_digits(digits) & ((last - np.uint8(48) <= 9) | (last == 88))
    born = residentid.calendar_ok(
        _number(digits, 6, 10), _number(digits, 10, 12), _number(digits, 12, 14)
    )
    check = _ID_CHECKS[(digits.astype(np.int32) @ _ID_WEIGHTS) % 11]
    ok[fits] = shaped & born & (check == last)
    return np.asarray(v.is_string & ~ok)


# ---- whole records -------------------------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    """One batch, judged: the accepted rows typed by the contract, and every violation."""

    accepted: pa.Table  # `_row` and the contract's properties, in contract order
    violations: pa.Table  # VIOLATIONS: one row per broken rule
    rows_read: int
    rows_rejected: int


class BatchValidator:
    """A contract compiled once, applied to any number of connector batches."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        schema = contract.schema
        self.rules = {name: PropertyRule(name, sub) for name, sub in contract.properties.items()}
        self.required = contract.required
        self.closed = schema.get("additionalProperties", True) is False
        open_schema = schema.get("additionalProperties", True)
        # Record-level keywords we do not compile: jsonschema judges each whole record.
        self.record_fallback = bool(set(schema) - RECORD_KEYWORDS) or open_schema not in (
            True,
            False,
        )
        self._reference = contract.validator()

    def validate(self, batch: pa.RecordBatch) -> Validated:
        n = batch.num_rows
        rows = batch.column(ROW).to_numpy()
        problem = batch.column(PROBLEM)
        unread = ~np.asarray(problem.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        # (index in batch, field, keyword, message, raw record)
        violations: list[tuple[int, str | None, str, str, str | None]] = []
        if unread.any():
            idx = pa.array(np.flatnonzero(unread))
            messages = pc.take(problem, idx).to_pylist()
            raws = pc.take(batch.column(RAW), idx).to_pylist()
            for i, message, raw in zip(idx.to_pylist(), messages, raws, strict=True):
                violations.append((i, None, str(message).split(":", 1)[0], str(message), raw))

        views: dict[str, Values] = {}
        for field in batch.schema:
            if field.name in (ROW, PROBLEM, RAW):
                continue
            rule = self.rules.get(field.name)
            types = rule.types if rule else frozenset()
            views[field.name] = values_of(batch.column(field.name), value_kind(field), types)
        bad = unread.copy()

        def record(
            mask: np.ndarray, field: str | None, keyword: str, explain: Callable[[int], str]
        ) -> None:
            mask = mask & ~unread
            for i in np.flatnonzero(mask).tolist():
                violations.append((i, field, keyword, explain(i), None))
            bad[mask] = True

        for name in self.required:
            present = views[name].present if name in views else np.zeros(n, dtype=bool)
            record(~present, name, "required", lambda i: "required field missing")
        for name, view in views.items():
            rule = self.rules.get(name)
            if rule is None:
                if self.closed:
                    record(
                        view.present,
                        name,
                        "additionalProperties",
                        lambda i: "field not in the contract",
                    )
                continue
            for keyword, mask in rule.violations(view):
                record(mask, name, keyword, _explainer(rule, keyword, view))
        for name, view in views.items():
            rule = self.rules.get(name)
            if rule is not None:
                record(_unstorable(view, output_type(rule.schema)), name, "storage", _too_large)
        if self.record_fallback:
            for i in np.flatnonzero(~bad).tolist():
                item = {k: v.python(i) for k, v in views.items() if v.present[i]}
                error = next(iter(self._reference.iter_errors(item)), None)
                if error is not None:
                    violations.append((i, None, str(error.validator), error.message, None))
                    bad[i] = True

        violation_table = _violation_table(rows, violations)
        keep = np.flatnonzero(~bad)
        accepted = self._typed(rows, views, keep)
        return Validated(accepted, violation_table, n, int(bad.sum()))

    def empty(self) -> pa.Table:
        """An accepted table with no rows: the shape of every accepted table."""
        nothing = np.zeros(0, dtype=np.int64)
        return self._typed(nothing, {}, nothing)

    def _typed(self, rows: np.ndarray, views: dict[str, Values], keep: np.ndarray) -> pa.Table:
        columns: dict[str, pa.Array] = {ROW: pa.array(rows[keep], pa.int64())}
        for name, rule in self.rules.items():
            target = output_type(rule.schema)
            view = views.get(name)
            if view is None:
                columns[name] = pa.nulls(len(keep), target)
                continue
            columns[name] = _column(view, keep, target)
        return pa.table(columns)


def _unstorable(view: Values, target: pa.DataType) -> np.ndarray:
    """Numbers the property's column cannot hold: beyond int64, or beyond a float."""
    bad = np.zeros(len(view.present), dtype=bool)
    if pa.types.is_int64(target):
        with np.errstate(invalid="ignore"):
            in_range = (view.floats >= -(2.0**63)) & (view.floats < 2.0**63)
        bad |= view.is_float & ~in_range
    for i in np.flatnonzero(view.is_other):
        value = view.others[i]
        if isinstance(value, int) and not isinstance(value, bool):
            bad[i] = pa.types.is_int64(target) or (
                pa.types.is_float64(target) and abs(value) > _FLOAT_MAX_INT
            )
    return bad


_FLOAT_MAX_INT = int(np.finfo(np.float64).max)


def _too_large(i: int) -> str:
    return "a number beyond the range the exchange stores for this field"


def _explainer(rule: PropertyRule, keyword: str, view: Values) -> Callable[[int], str]:
    def explain(i: int) -> str:
        return rule.explain(keyword, view.python(i))

    return explain


def output_type(schema: dict[str, Any]) -> pa.DataType:
    """The Arrow type a property is stored as."""
    kinds = _types(schema) - {"null"}
    if kinds == {"integer"}:
        return pa.int64()
    if kinds in ({"number"}, {"integer", "number"}):
        return pa.float64()
    if kinds == {"boolean"}:
        return pa.bool_()
    return pa.string()


def _column(view: Values, keep: np.ndarray, target: pa.DataType) -> pa.Array:
    everything = len(keep) == len(view.present)  # `keep` is sorted and unique
    take = pa.array(keep)
    if pa.types.is_int64(target):
        # Accepted rows hold only values int64 can take (the `storage` rule saw to that).
        safe = np.where(view.is_float & ~_unstorable(view, target), view.floats, 0.0)
        ints = np.where(view.is_float, safe.astype(np.int64), view.ints)
        return pa.array(ints[keep], pa.int64(), mask=~view.present[keep])
    if pa.types.is_float64(target):
        floats = np.where(view.is_int, view.ints.astype(np.float64), view.floats)
        for i in np.flatnonzero(view.is_other):
            if isinstance(view.others[i], int):  # an integer beyond int64, as a float
                floats[i] = float(view.others[i])
        return pa.array(floats[keep], pa.float64(), mask=~view.present[keep])
    if pa.types.is_boolean(target):
        return pa.array(view.bools[keep], pa.bool_(), mask=~view.present[keep])
    if not (view.is_int.any() or view.is_float.any() or view.is_bool.any() or view.is_other.any()):
        return view.strings if everything else pc.take(view.strings, take)
    # A property of several types is stored as text: strings as they are, others as JSON.
    texts: list[str | None] = []
    for i in keep.tolist():
        value = view.python(i) if view.present[i] else None
        texts.append(value if value is None or isinstance(value, str) else json.dumps(value))
    return pa.array(texts, pa.string())


def _violation_table(
    rows: np.ndarray, violations: list[tuple[int, str | None, str, str, str | None]]
) -> pa.Table:
    violations.sort(key=lambda v: v[0])
    row, field, keyword, message, raw = zip(*violations, strict=True) if violations else ([],) * 5
    return pa.table(
        [
            pa.array(rows[list(row)] if row else [], pa.int64()),
            pa.array(field, pa.string()),
            pa.array(keyword, pa.string()),
            pa.array(message, pa.string()),
            pa.array(raw, pa.string()),
        ],
        schema=VIOLATIONS,
    )
