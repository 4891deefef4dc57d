"""Known faults planted in the synthetic city, with a ground-truth manifest.

A fault is either a *value* fault (a field holds something the contract forbids: a bad
check character, an impossible date, a missing required field, a duplicated key, a value
of the wrong type or out of range) or a *line* fault that only a text file can carry (a
row in another encoding, a truncated row, a stray delimiter, a stray quote). Each faulty
row carries exactly one fault, and the manifest names file, row, kind and field so tests
can prove every bad row is caught and no clean row is lost.

Keys are judged the way the exchange validates: row checks first, then uniqueness among
the rows that passed them, the first occurrence winning. So a `duplicate_key` row repeats
the key of an earlier clean row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exchange.residentid import CHECK_CHARACTERS
from exchange.synth.departments import DatasetSpec

VALUE_KINDS: Final = (
    "bad_check_digit",
    "impossible_date",
    "missing_required",
    "duplicate_key",
    "wrong_type",
    "out_of_range",
)
LINE_KINDS: Final = ("wrong_encoding", "truncated_row", "stray_delimiter", "stray_quote")
KINDS: Final = VALUE_KINDS + LINE_KINDS


class _Missing:
    """A field left out of the record entirely (empty in CSV, absent in JSON, NULL in SQL)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Fault:
    dataset: str
    kind: str
    row: int  # 0-based record index in the dataset
    field: str | None
    detail: str


@dataclass
class Damage:
    """What to change while writing one dataset."""

    values: dict[str, dict[int, object]] = field(default_factory=dict)  # field -> row -> raw
    lines: dict[int, str] = field(default_factory=dict)  # row -> line fault kind
    faults: list[Fault] = field(default_factory=list)


def applicable(spec: DatasetSpec) -> list[str]:
    """The fault kinds that a dataset's format and fields can carry."""
    kinds = []
    if spec.id_fields:
        kinds.append("bad_check_digit")
    if spec.date_fields:
        kinds.append("impossible_date")
    kinds += ["missing_required", "duplicate_key"]
    if spec.ranges and spec.format != "parquet":  # Parquet columns are typed
        kinds.append("wrong_type")
    if spec.ranges:
        kinds.append("out_of_range")
    if spec.is_text:
        kinds += ["wrong_encoding", "truncated_row"]
    if spec.format == "csv":
        kinds.append("stray_delimiter")
        if spec.text_field:
            kinds.append("stray_quote")
    return kinds


def _plain_rows(spec: DatasetSpec, table: pa.Table) -> np.ndarray:
    """Rows with no field a CSV writer must quote: faults stay one clear thing each."""
    plain = np.ones(table.num_rows, dtype=bool)
    if spec.format == "csv":
        for column in table.columns:
            if pa.types.is_string(column.type):
                special = pc.fill_null(pc.match_substring_regex(column, r'[,"\r\n]'), False)
                plain &= ~special.to_numpy(zero_copy_only=False)
    return plain


def plan(spec: DatasetSpec, table: pa.Table, rate: float, rng: np.random.Generator) -> Damage:
    """Choose faulty rows for a dataset and what to plant in each."""
    damage = Damage()
    kinds = applicable(spec)
    plain = _plain_rows(spec, table)
    eligible = np.flatnonzero(plain)
    if rate <= 0 or len(eligible) < 4:
        return damage
    wanted = max(len(kinds), round(rate * table.num_rows))
    count = min(wanted, len(eligible) // 3)  # leave clean rows to duplicate keys from
    rows = np.sort(rng.choice(eligible, count, replace=False))
    order = np.concatenate([rng.permutation(len(kinds)), rng.integers(0, len(kinds), count)])
    assigned = [kinds[i] for i in order[:count]]
    plain[rows] = False
    clean = np.flatnonzero(plain)  # sorted: eligible rows that carry no fault

    columns = {name: table.column(name) for name in table.column_names}

    def value(name: str, row: int) -> object:
        return columns[name][row].as_py()

    def set_value(name: str, row: int, raw: object) -> None:
        damage.values.setdefault(name, {})[row] = raw

    for row_np, planned in zip(rows, assigned, strict=True):
        row = int(row_np)
        name: str | None = None
        earlier = int(np.searchsorted(clean, row))  # clean rows before this one (sorted)
        # A duplicate repeats an earlier row's key, so "first occurrence wins" finds it.
        kind = "missing_required" if planned == "duplicate_key" and not earlier else planned
        if kind == "bad_check_digit":
            present = [f for f in spec.id_fields if value(f, row) is not None]
            name = present[int(rng.integers(len(present)))]
            good = str(value(name, row))
            wrong = CHECK_CHARACTERS[
                (CHECK_CHARACTERS.index(good[17]) + int(rng.integers(1, 11))) % 11
            ]
            set_value(name, row, good[:17] + wrong)
            detail = f"check character {wrong}, expected {good[17]}"
        elif kind == "impossible_date":
            present = [f for f in spec.date_fields if value(f, row) is not None]
            name = present[int(rng.integers(len(present)))]
            year = str(value(name, row))[:4]
            if spec.date_fields[name] == "month":
                bad = f"{year}-{('13', '00')[int(rng.integers(2))]}"
            else:
                bad = f"{year}-{('02-30', '04-31', '13-01', '00-10')[int(rng.integers(4))]}"
            set_value(name, row, bad)
            detail = f"{bad} is not a calendar date"
        elif kind == "missing_required":
            name = spec.required[int(rng.integers(len(spec.required)))]
            set_value(name, row, MISSING)
            detail = "required field missing"
        elif kind == "duplicate_key":
            source = int(clean[int(rng.integers(earlier))])
            for key in spec.key:
                set_value(key, row, value(key, source))
            name = ",".join(spec.key)
            detail = f"repeats the key of row {source + 1}"
        elif kind == "wrong_type":
            name = list(spec.ranges)[int(rng.integers(len(spec.ranges)))]
            set_value(name, row, f"约{value(name, row)}")
            detail = "text where a number belongs"
        elif kind == "out_of_range":
            name = list(spec.ranges)[int(rng.integers(len(spec.ranges)))]
            low, high = spec.ranges[name]
            bad_number = high * 10 + 7 if rng.random() < 0.5 else low - abs(low) - 7
            if pa.types.is_integer(columns[name].type):
                bad_number = int(bad_number)
            set_value(name, row, bad_number)
            detail = f"{bad_number} outside [{low:g}, {high:g}]"
        else:
            damage.lines[row] = kind
            name = spec.text_field if kind in ("stray_delimiter", "stray_quote") else None
            detail = {
                "wrong_encoding": f"row written in {other_encoding(spec.encoding)}",
                "truncated_row": "row cut short",
                "stray_delimiter": "unquoted delimiter inside a field",
                "stray_quote": "unescaped quote inside an unquoted field",
            }[kind]
        damage.faults.append(Fault(spec.name, kind, row, name, detail))
    return damage


def other_encoding(encoding: str) -> str:
    """The encoding a wrong-encoding row is written in, for a file in `encoding`."""
    return "utf-8" if encoding == "gb18030" else "gb18030"
