"""The connector contract: a department source read as Arrow record batches.

Every batch a connector yields starts with three columns:

- `_row` (int64): the record's 1-based position in the source (data records only: a CSV
  header is not counted; a SQLite table counts in rowid order);
- `_problem` (string): null when the record was read, else why it could not be (an
  undecodable row, a wrong number of fields, malformed JSON);
- `_raw` (string): null when the record was read, else the record as found (decoded
  with replacement characters where it did not decode), for the quarantine report;

then the source's own columns. A record that cannot be read is still yielded, with its
problem and null values, so that the exchange can quarantine it with its position:
rows read = rows accepted + rows quarantined, always.

Values keep the source's own typing. Text formats (CSV) have none: their columns are
strings, marked `TEXT` in the field metadata, and the contract decides what they mean.
A JSON or SQLite column whose values do not share one type (a string among integers)
is delivered as JSON text of each value, marked `JSON`, so that no value is coerced or
lost before validation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa

ROW = "_row"
PROBLEM = "_problem"
RAW = "_raw"
ENCODING_META = b"onceonly.values"
TEXT = b"text"  # values are untyped text (CSV)
JSON = b"json"  # values are JSON literals of mixed types

DEFAULT_BATCH_ROWS = 65_536


@runtime_checkable
class Connector(Protocol):
    """A department source system, read in bounded memory."""

    name: str

    def describe(self) -> str:
        """One line naming the source, for the publication manifest."""
        ...

    def read(self) -> Iterator[pa.RecordBatch]:
        """Every record of the source, in order, as `_row`, `_problem` and the columns."""
        ...


def mark(field: pa.Field, kind: bytes) -> pa.Field:
    """A field whose values are TEXT or JSON rather than typed."""
    return field.with_metadata({ENCODING_META: kind})


def value_kind(field: pa.Field) -> bytes | None:
    """TEXT, JSON or None (typed values) for a connector's column."""
    return (field.metadata or {}).get(ENCODING_META)


def column_from_values(name: str, values: Sequence[object]) -> tuple[pa.Field, pa.Array]:
    """A typed column when the values share a type, else a JSON-text column."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) <= 1 and not kinds & {dict, list}:
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        else:
            if pa.types.is_null(array.type):
                array = array.cast(pa.string())
            return pa.field(name, array.type), array
    encoded = [
        None if v is None else json.dumps(v, ensure_ascii=False, default=_bytes) for v in values
    ]
    return mark(pa.field(name, pa.string()), JSON), pa.array(encoded, pa.string())


def _bytes(value: object) -> object:
    """JSON has no bytes: a BLOB becomes an object, which no string or number rule accepts."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def batch(
    rows: pa.Array,
    problems: pa.Array,
    raw: pa.Array,
    fields: Sequence[pa.Field],
    columns: Sequence[pa.Array],
) -> pa.RecordBatch:
    """Assemble a connector batch: `_row`, `_problem`, `_raw`, then the data columns."""
    head = [pa.field(ROW, pa.int64(), nullable=False), pa.field(PROBLEM, pa.string())]
    schema = pa.schema([*head, pa.field(RAW, pa.string()), *fields])
    return pa.RecordBatch.from_arrays([rows, problems, raw, *columns], schema=schema)
