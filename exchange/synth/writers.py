"""Write datasets in each department's native format, planting the planned faults.

Text formats are rendered into one Arrow string per record, column-wise; only the few
faulty lines are touched in Python. Every file is written to a temporary name and renamed,
so a city folder never holds a half-written source.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exchange.synth.departments import DatasetSpec
from exchange.synth.faults import MISSING, Damage, file_encoding, other_encoding

BOM = "\ufeff"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling to write; it replaces `path` only once complete and on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        with tmp.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _with_values(column: pa.ChunkedArray, changes: dict[int, object], as_text: bool) -> pa.Array:
    """The column with planted raw values; MISSING becomes null."""
    array = column.combine_chunks()
    if not changes:
        return array
    rows = np.fromiter(changes, dtype=np.int64, count=len(changes))
    order = np.argsort(rows)
    raw = list(changes.values())
    replacements = [None if raw[i] is MISSING else raw[i] for i in order]
    if as_text:
        replacements = [None if v is None else str(v) for v in replacements]
        array = array.cast(pa.string())
    mask = np.zeros(len(array), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(array, pa.array(mask), pa.array(replacements, type=array.type))


def _text(array: pa.Array) -> pa.Array:
    return array if pa.types.is_string(array.type) else array.cast(pa.string())


def _csv_lines(spec: DatasetSpec, table: pa.Table, damage: Damage) -> pa.Array:
    cells = []
    for name in table.column_names:
        value = _text(_with_values(table.column(name), damage.values.get(name, {}), as_text=True))
        needs_quotes = pc.fill_null(pc.match_substring_regex(value, r'[,"\r\n]'), False)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(value, '"', '""'), '"', "")
        cells.append(pc.fill_null(pc.if_else(needs_quotes, quoted, value), ""))
    lines = pc.binary_join_element_wise(*cells, ",")
    if not damage.lines:
        return lines
    changed = {}
    for row, kind in damage.lines.items():
        line = lines[row].as_py()
        fields = line.split(",")  # faulty rows are chosen among rows with no quoted field
        if kind == "truncated_row":
            line = ",".join(fields[: max(1, len(fields) // 2)])
        elif kind in ("stray_delimiter", "stray_quote"):
            # Only planned where the spec names a text field (faults.applicable).
            text_column = table.column_names.index(str(spec.text_field))
            target = fields[text_column]
            cut = max(1, len(target) // 2)
            fields[text_column] = (
                target[:cut] + ("," if kind == "stray_delimiter" else '"') + target[cut:]
            )
            line = ",".join(fields)
        changed[row] = line
    return _replace_rows(lines, changed)


def _replace_rows(lines: pa.Array, changed: dict[int, str]) -> pa.Array:
    if not changed:
        return lines
    rows = sorted(changed)
    mask = np.zeros(len(lines), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(lines, pa.array(mask), pa.array([changed[r] for r in rows]))


def _json_fragment(name: str, array: pa.Array) -> pa.Array:
    key = json.dumps(name) + ":"
    if pa.types.is_string(array.type):
        escaped = pc.replace_substring(pc.replace_substring(array, "\\", "\\\\"), '"', '\\"')
        body = pc.binary_join_element_wise('"', escaped, '"', "")
    else:
        body = array.cast(pa.string())
    return pc.binary_join_element_wise(key, pc.fill_null(body, "null"), "")


def _jsonl_lines(table: pa.Table, damage: Damage) -> pa.Array:
    fragments = []
    for name in table.column_names:
        array = table.column(name).combine_chunks()
        fragment = _json_fragment(name, array)
        changes = damage.values.get(name, {})
        if changes:
            key = json.dumps(name) + ":"
            planted = {
                row: None if raw is MISSING else key + json.dumps(raw, ensure_ascii=False)
                for row, raw in changes.items()
            }
            rows = sorted(planted)
            mask = np.zeros(len(array), dtype=bool)
            mask[rows] = True
            replacement = pa.array([planted[r] for r in rows], type=pa.string())
            fragment = pc.replace_with_mask(fragment, pa.array(mask), replacement)
        fragments.append(fragment)
    body = pc.binary_join_element_wise(*fragments, ",", null_handling="skip")
    lines = pc.binary_join_element_wise("{", body, "}", "")
    changed = {}
    for row, kind in damage.lines.items():
        if kind == "truncated_row":
            line = lines[row].as_py()
            changed[row] = line[: len(line) // 2]
    return _replace_rows(lines, changed)


def _join(lines: pa.Array, eol: str) -> str:
    if len(lines) == 0:
        return ""
    offsets = pa.array([0, len(lines)], type=pa.int64())
    values = pa.concat_arrays([lines.cast(pa.large_string())])  # drop any slice offset
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(offsets, values), pa.scalar(eol, pa.large_string())
    )
    return str(joined[0].as_py()) + eol


def _encode_lines(spec: DatasetSpec, lines: pa.Array, damage: Damage) -> bytes:
    """Encode the records, writing wrong-encoding rows in the other encoding."""
    encoding = file_encoding(spec.encoding)
    wrong = sorted(row for row, kind in damage.lines.items() if kind == "wrong_encoding")
    parts = []
    start = 0
    for row in wrong:
        parts.append(_join(lines.slice(start, row - start), spec.eol).encode(encoding))
        line = lines[row].as_py() + spec.eol
        raw = line.encode(other_encoding(spec.encoding))
        _check_misencoded(raw, spec.encoding)
        parts.append(raw)
        start = row + 1
    parts.append(_join(lines.slice(start), spec.eol).encode(encoding))
    return b"".join(parts)


def _check_misencoded(raw: bytes, encoding: str) -> None:
    """A wrong-encoding row must fail to decode, or the ground truth would lie."""
    try:
        raw.decode(file_encoding(encoding))
    except UnicodeDecodeError:
        return
    raise AssertionError("a wrong-encoding row decodes cleanly")  # faults.plan prevents it


def write_text(spec: DatasetSpec, table: pa.Table, damage: Damage, root: Path) -> np.ndarray:
    """Write a CSV or JSON Lines file; returns the physical line where each record starts."""
    if spec.format == "csv":
        lines = _csv_lines(spec, table, damage)
        header = ",".join(table.column_names) + spec.eol
        first_line = 2
    else:
        lines = _jsonl_lines(table, damage)
        header = ""
        first_line = 1
    encoding = "utf-8" if spec.encoding == "utf-8-sig" else spec.encoding
    prefix = (BOM if spec.encoding == "utf-8-sig" else "") + header
    with atomic_path(root / spec.path) as tmp:
        tmp.write_bytes(prefix.encode(encoding) + _encode_lines(spec, lines, damage))
    newlines = pc.count_substring(lines, "\n").to_numpy(zero_copy_only=False)
    extra = np.concatenate([[0], np.cumsum(newlines)[:-1]]) if len(lines) else np.zeros(0, np.int64)
    result: np.ndarray = first_line + np.arange(len(lines)) + extra
    return result


_SQL_TYPES = {"int64": "INTEGER", "int32": "INTEGER", "double": "REAL"}


def write_sqlite(specs_tables: list[tuple[DatasetSpec, pa.Table, Damage]], root: Path) -> None:
    """Write several tables into one SQLite database, as a legacy system would hold them."""
    path = root / specs_tables[0][0].path
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            for spec, table, damage in specs_tables:
                columns = ", ".join(
                    f'"{f.name}" {_SQL_TYPES.get(str(f.type), "TEXT")}' for f in table.schema
                )
                con.execute(f'CREATE TABLE "{spec.table}" ({columns})')
                values = []
                for name in table.column_names:
                    column = table.column(name).to_pylist()
                    for row, raw in damage.values.get(name, {}).items():
                        column[row] = None if raw is MISSING else raw
                    values.append(column)
                marks = ", ".join("?" * table.num_columns)
                con.executemany(
                    f'INSERT INTO "{spec.table}" VALUES ({marks})', zip(*values, strict=True)
                )
            con.commit()
        finally:
            con.close()


def write_parquet(spec: DatasetSpec, table: pa.Table, damage: Damage, root: Path) -> None:
    columns = {
        name: _with_values(table.column(name), damage.values.get(name, {}), as_text=False)
        for name in table.column_names
    }
    with atomic_path(root / spec.path) as tmp:
        pq.write_table(pa.table(columns), tmp, compression="zstd", row_group_size=1 << 20)
