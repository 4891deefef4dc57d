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

import json
from collections.abc import Sequence
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
    plain[rows] = False
    planter = _Planter(spec, table, rng, damage, clean=np.flatnonzero(plain))
    for row, planned in zip(rows.tolist(), [kinds[i] for i in order[:count]], strict=True):
        # A duplicate repeats an earlier clean row's key; the first rows may have none.
        kind = (
            "missing_required"
            if planned == "duplicate_key" and not planter.earlier(row)
            else planned
        )
        planter.plant(kind, row)
    return damage


_LINE_DETAIL = {
    "truncated_row": "row cut short",
    "stray_delimiter": "unquoted delimiter inside a field",
    "stray_quote": "unescaped quote inside an unquoted field",
}


class _Planter:
    """Plants one fault of a kind in a row: each method returns (field, detail)."""

    def __init__(
        self,
        spec: DatasetSpec,
        table: pa.Table,
        rng: np.random.Generator,
        damage: Damage,
        clean: np.ndarray,
    ) -> None:
        self.spec, self.table, self.rng, self.damage, self.clean = spec, table, rng, damage, clean

    def plant(self, kind: str, row: int) -> None:
        if kind == "wrong_encoding" and not self._undecodable(row):
            kind = "truncated_row"  # this row would decode cleanly: plant what it can carry
        name, detail = getattr(self, kind)(row)
        self.damage.faults.append(Fault(self.spec.name, kind, row, name, detail))

    def earlier(self, row: int) -> int:
        """How many clean rows come before `row` (`clean` is sorted)."""
        return int(np.searchsorted(self.clean, row))

    def _undecodable(self, row: int) -> bool:
        """Whether the row, written in the other encoding, fails to decode as the file's.

        UTF-8 Chinese text decodes as GB18030 mojibake whenever every run of Chinese
        characters has an even length, so only rows that really fail are planted.
        """
        values = {name: self._value(name, row) for name in self.table.column_names}
        if self.spec.format == "csv":
            line = ",".join("" if v is None else str(v) for v in values.values())
        else:
            line = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
        raw = (line + self.spec.eol).encode(other_encoding(self.spec.encoding))
        try:
            raw.decode(file_encoding(self.spec.encoding))
        except UnicodeDecodeError:
            return True
        return False

    def _value(self, name: str, row: int) -> object:
        return self.table.column(name)[row].as_py()

    def _set(self, name: str, row: int, raw: object) -> None:
        self.damage.values.setdefault(name, {})[row] = raw

    def _one_of(self, names: Sequence[str], row: int | None = None) -> str:
        present = [n for n in names if row is None or self._value(n, row) is not None]
        return present[int(self.rng.integers(len(present)))]

    def bad_check_digit(self, row: int) -> tuple[str, str]:
        name = self._one_of(self.spec.id_fields, row)
        good = str(self._value(name, row))
        shift = int(self.rng.integers(1, 11))
        wrong = CHECK_CHARACTERS[(CHECK_CHARACTERS.index(good[17]) + shift) % 11]
        self._set(name, row, good[:17] + wrong)
        return name, f"check character {wrong}, expected {good[17]}"

    def impossible_date(self, row: int) -> tuple[str, str]:
        name = self._one_of(list(self.spec.date_fields), row)
        year = str(self._value(name, row))[:4]
        if self.spec.date_fields[name] == "month":
            bad = f"{year}-{('13', '00')[int(self.rng.integers(2))]}"
        else:
            bad = f"{year}-{('02-30', '04-31', '13-01', '00-10')[int(self.rng.integers(4))]}"
        self._set(name, row, bad)
        return name, f"{bad} is not a calendar date"

    def missing_required(self, row: int) -> tuple[str, str]:
        name = self._one_of(self.spec.required)
        self._set(name, row, MISSING)
        return name, "required field missing"

    def duplicate_key(self, row: int) -> tuple[str, str]:
        source = int(self.clean[int(self.rng.integers(self.earlier(row)))])
        for key in self.spec.key:
            self._set(key, row, self._value(key, source))
        return ",".join(self.spec.key), f"repeats the key of row {source + 1}"

    def wrong_type(self, row: int) -> tuple[str, str]:
        name = self._one_of(list(self.spec.ranges))
        self._set(name, row, f"约{self._value(name, row)}")
        return name, "text where a number belongs"

    def out_of_range(self, row: int) -> tuple[str, str]:
        name = self._one_of(list(self.spec.ranges))
        low, high = self.spec.ranges[name]
        bad: float = high * 10 + 7 if self.rng.random() < 0.5 else low - abs(low) - 7
        if pa.types.is_integer(self.table.column(name).type):
            bad = int(bad)
        self._set(name, row, bad)
        return name, f"{bad} outside [{low:g}, {high:g}]"

    def wrong_encoding(self, row: int) -> tuple[None, str]:
        self.damage.lines[row] = "wrong_encoding"
        return None, f"row written in {other_encoding(self.spec.encoding)}"

    def truncated_row(self, row: int) -> tuple[None, str]:
        self.damage.lines[row] = "truncated_row"
        return None, _LINE_DETAIL["truncated_row"]

    def stray_delimiter(self, row: int) -> tuple[str | None, str]:
        self.damage.lines[row] = "stray_delimiter"
        return self.spec.text_field, _LINE_DETAIL["stray_delimiter"]

    def stray_quote(self, row: int) -> tuple[str | None, str]:
        self.damage.lines[row] = "stray_quote"
        return self.spec.text_field, _LINE_DETAIL["stray_quote"]


def file_encoding(encoding: str) -> str:
    """The codec that decodes a file's records (a UTF-8 BOM is only the file's start)."""
    return "utf-8" if encoding == "utf-8-sig" else encoding


def other_encoding(encoding: str) -> str:
    """The encoding a wrong-encoding row is written in, for a file in `encoding`."""
    return "utf-8" if encoding == "gb18030" else "gb18030"
