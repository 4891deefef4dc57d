"""Typed sources: Parquet files, SQLite databases and PostgreSQL servers.

Their records always parse, so `_problem` is null throughout; a value the contract
forbids is the validator's to find. A SQLite column may hold a text among integers (SQLite
does not enforce declared types): such a column is delivered as JSON text, typed per value.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.base import DEFAULT_BATCH_ROWS, batch, column_from_values
from connectors.errors import SourceUnreadable


def _numbered(table_batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
    size = table_batch.num_rows
    rows = pa.array(np.arange(first_row, first_row + size), pa.int64())
    nothing = pa.nulls(size, pa.string())
    fields = list(table_batch.schema)
    return batch(rows, nothing, nothing, fields, table_batch.columns)


class ParquetConnector:
    """A Parquet file, read a row group slice at a time."""

    def __init__(
        self, path: Path, *, name: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
    ):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.batch_rows = batch_rows

    def describe(self) -> str:
        return f"Parquet {self.path.name}"

    def read(self) -> Iterator[pa.RecordBatch]:
        try:
            source = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowInvalid) as problem:
            raise SourceUnreadable(f"cannot read Parquet {self.path}: {problem}") from problem
        next_row = 1
        with source:
            for part in source.iter_batches(batch_size=self.batch_rows):
                yield _numbered(part, next_row)
                next_row += part.num_rows


def _identifier(name: str) -> str:
    """Quote a table name for SQL: the one place identifiers are spliced into a query."""
    return '"' + name.replace('"', '""') + '"'


class SqliteConnector:
    """One table of a SQLite database, in rowid order, opened read-only."""

    def __init__(
        self,
        path: Path,
        table: str,
        *,
        name: str | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ):
        self.path = Path(path)
        self.table = table
        self.name = name or table
        self.batch_rows = batch_rows

    def describe(self) -> str:
        return f"SQLite {self.path.name} table {self.table}"

    def read(self) -> Iterator[pa.RecordBatch]:
        if not self.path.is_file():
            raise SourceUnreadable(f"no SQLite database at {self.path}")
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            con = sqlite3.connect(uri, uri=True)
            cursor = con.execute(f"SELECT * FROM {_identifier(self.table)} ORDER BY rowid")
        except sqlite3.Error as problem:
            raise SourceUnreadable(f"cannot read {self.describe()}: {problem}") from problem
        names = [d[0] for d in cursor.description]
        next_row = 1
        try:
            while rows := cursor.fetchmany(self.batch_rows):
                built = [column_from_values(n, [r[i] for r in rows]) for i, n in enumerate(names)]
                part = pa.RecordBatch.from_arrays(
                    [c for _, c in built], schema=pa.schema([f for f, _ in built])
                )
                yield _numbered(part, next_row)
                next_row += len(rows)
        finally:
            con.close()


_PASSWORD_WORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _password(dsn: str) -> str | None:
    if "://" in dsn:
        parts = urllib.parse.urlsplit(dsn)
        if parts.password:
            return urllib.parse.unquote(parts.password)
        given = urllib.parse.parse_qs(parts.query).get("password")
        return given[0] if given else None
    found = _PASSWORD_WORD.search(dsn)
    return found.group(2).strip("'") if found else None


def _without_password(dsn: str) -> str:
    """A DSN fit to print: URI or key=value form, the password replaced by ***."""
    secret = _password(dsn)
    shown = _PASSWORD_WORD.sub(r"\1***", dsn)
    return shown.replace(secret, "***") if secret else shown


def _hide(message: str, dsn: str) -> str:
    secret = _password(dsn)
    message = message.replace(dsn, _without_password(dsn))
    return message.replace(secret, "***") if secret else message


class PostgresConnector:
    """A PostgreSQL table or query, streamed as Arrow batches through ADBC."""

    def __init__(
        self,
        dsn: str,
        *,
        table: str | None = None,
        query: str | None = None,
        name: str | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ):
        if (table is None) == (query is None):
            raise SourceUnreadable("a PostgreSQL source names a table or a query, not both")
        self.dsn = dsn
        self.table = table
        self.query = query or f"SELECT * FROM {_identifier(str(table))}"
        self.name = name or table or "query"
        self.batch_rows = batch_rows

    def describe(self) -> str:
        where = _without_password(self.dsn)
        return f"PostgreSQL {where} " + (f"table {self.table}" if self.table else "query")

    def read(self) -> Iterator[pa.RecordBatch]:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as postgres

        try:
            con = postgres.connect(self.dsn)
        except adbc_driver_manager.Error as problem:
            message = _hide(str(problem), self.dsn)
            raise SourceUnreadable(f"cannot connect to {self.describe()}: {message}") from None
        next_row = 1
        try:
            cursor = con.cursor()
            cursor.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)}
            )
            cursor.execute(self.query)
            for part in cursor.fetch_record_batch():
                for start in range(0, part.num_rows, self.batch_rows):
                    piece = part.slice(start, self.batch_rows)
                    clean = pa.RecordBatch.from_arrays(
                        piece.columns, schema=pa.schema([f.remove_metadata() for f in piece.schema])
                    )
                    yield _numbered(clean, next_row)
                    next_row += piece.num_rows
        except adbc_driver_manager.Error as problem:
            message = _hide(str(problem), self.dsn)
            raise SourceUnreadable(f"cannot read {self.describe()}: {message}") from None
        finally:
            con.close()
