"""JSON Lines sources: one JSON object per line.

A line that does not decode, is not JSON, or is not an object is yielded with its
problem. Fields keep their JSON types; a field whose values disagree in type within a
batch is delivered as JSON text (see `connectors.base`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from connectors.base import batch, column_from_values
from connectors.text import TextSource, read_blocks


class JsonLinesConnector(TextSource):
    """A file of JSON objects, one per line."""

    kind = "JSON Lines"

    def read(self) -> Iterator[pa.RecordBatch]:
        next_row = 1
        for block in read_blocks(self.path, self.resolved_encoding(), self.block_bytes):
            lines = block.lines.to_pylist()
            for start in range(0, len(lines), self.batch_rows):
                part = lines[start : start + self.batch_rows]
                bad = {
                    i - start: why for i, why in block.bad.items() if start <= i < start + len(part)
                }
                raw = {
                    i - start: text
                    for i, text in block.raw.items()
                    if start <= i < start + len(part)
                }
                records, problems, raws = _parse(part, bad, raw)
                if not records:
                    continue
                yield _batch(records, problems, raws, next_row)
                next_row += len(records)


def _parse(
    lines: list[str], bad: dict[int, str], raw: dict[int, str]
) -> tuple[list[dict[str, object] | None], list[str | None], list[str | None]]:
    records: list[dict[str, object] | None] = []
    problems: list[str | None] = []
    raws: list[str | None] = []
    for index, line in enumerate(lines):
        if index in bad:
            records.append(None)
            problems.append(bad[index])
            raws.append(raw[index])
            continue
        if not line.strip():
            continue  # a blank line is no record
        try:
            value = json.loads(line)
        except json.JSONDecodeError as problem:
            records.append(None)
            problems.append(f"json: {problem.msg} at column {problem.colno}")
            raws.append(line)
            continue
        if not isinstance(value, dict):
            records.append(None)
            problems.append(f"json: a {type(value).__name__}, not an object")
            raws.append(line)
            continue
        records.append(value)
        problems.append(None)
        raws.append(None)
    return records, problems, raws


def _batch(
    records: list[dict[str, object] | None],
    problems: list[str | None],
    raws: list[str | None],
    first_row: int,
) -> pa.RecordBatch:
    names: dict[str, None] = {}  # field names in order of first appearance
    for record in records:
        if record:
            names.update(dict.fromkeys(record))
    fields, columns = [], []
    for name in names:
        values = [None if r is None else r.get(name) for r in records]
        column_field, column = column_from_values(name, values)
        fields.append(column_field)
        columns.append(column)
    rows = pa.array(np.arange(first_row, first_row + len(records)), pa.int64())
    return batch(
        rows, pa.array(problems, pa.string()), pa.array(raws, pa.string()), fields, columns
    )
