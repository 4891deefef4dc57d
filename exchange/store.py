"""The exchange's DuckDB database: the registry and every publication.

Layout:
- `departments`, `datasets`, `schema_versions`, `publications`: the registry;
- `pub.p<id>`: one view per publication over the `data.parquet` of its package, kept under
  the home once verified and never changed, so that any past answer can be re-derived from
  the data as it was; the package's Parquet carries Bloom filters on its key and resident
  ID columns, so a point lookup reads one row group, not the file;
- `published.<dataset>`: a view of the dataset's current publication.

Times are stored as TIMESTAMP in UTC (`db_time`); DuckDB would need pytz to hand
TIMESTAMPTZ values back to Python.

A publication becomes current in one transaction that creates its view, records it and
re-points the dataset's view, so a reader sees the previous publication or the new one, never a mix;
DuckDB replays committed transactions from its WAL after a crash and drops the rest.
DuckDB allows one writing process: the exchange is it (DESIGN.md, "one writer").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from exchange.errors import ExchangeError

SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS onceonly_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS departments (
    code VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    public_key BLOB NOT NULL,
    key_id VARCHAR NOT NULL,
    registered_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    department VARCHAR NOT NULL,
    compatibility VARCHAR NOT NULL,
    registered_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS schema_versions (
    dataset VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    schema_json VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    registered_at TIMESTAMP NOT NULL,
    PRIMARY KEY (dataset, version)
);
CREATE TABLE IF NOT EXISTS publications (
    id BIGINT PRIMARY KEY,
    dataset VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    department VARCHAR NOT NULL,
    manifest_sha256 VARCHAR NOT NULL,
    data_sha256 VARCHAR NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_accepted BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP NOT NULL,
    package_dir VARCHAR NOT NULL,
    quality_json VARCHAR NOT NULL
);
CREATE SCHEMA IF NOT EXISTS pub;
CREATE SCHEMA IF NOT EXISTS published;
CREATE OR REPLACE VIEW current_publications AS
    SELECT * FROM publications
    WHERE id IN (SELECT max(id) FROM publications GROUP BY dataset);
"""


class StoreBusy(ExchangeError):
    """Another process holds the exchange database."""


def quote(identifier: str) -> str:
    """An SQL identifier, quoted: the one place names are spliced into SQL."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """An SQL string literal, for the few places (view bodies) that cannot bind a parameter."""
    return "'" + text.replace("'", "''") + "'"


def publication_table(publication_id: int) -> str:
    return f"pub.p{publication_id:06d}"


def dataset_view(dataset: str) -> str:
    return f"published.{quote(dataset)}"


class ExchangeStore:
    """The exchange database, opened by its one writer (or read-only)."""

    def __init__(self, path: Path, *, read_only: bool = False, memory_limit: str = "768MB") -> None:
        self.path = Path(path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as problem:
            raise StoreBusy(f"cannot open {self.path}: {problem}") from problem
        # Bounded memory: DuckDB spills to disk beyond this rather than take the machine.
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        # ... and what it spills is capped too: a bad query fails, the disk does not fill.
        self.con.execute("SET max_temp_directory_size = '8GB'")
        if not read_only:
            self.con.execute(_DDL)
            self.con.execute(
                "INSERT OR REPLACE INTO onceonly_meta VALUES ('schema_version', ?)",
                [str(SCHEMA_VERSION)],
            )

    def reader(self) -> ExchangeStore:
        """Another connection to this database, for one thread's reads; close it after.

        A DuckDB cursor of the open database: it reads a committed snapshot, so it never
        waits on (nor holds up) the writer — how the serving process, which owns the
        file, hands the auditor's library a store (opening the file again would fail).
        """
        other = ExchangeStore.__new__(ExchangeStore)
        other.path, other.con = self.path, self.con.cursor()
        return other

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ExchangeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Query results as dictionaries (values are bound parameters, never spliced)."""
        cursor = self.con.execute(sql, params or [])
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def one(self, sql: str, params: list[Any] | None = None) -> dict[str, Any] | None:
        found = self.rows(sql, params)
        return found[0] if found else None


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The single value a query returns."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise ExchangeError(f"query returned no row: {sql.split()[0]} ...")
    return row[0]


def utc(now: dt.datetime | None) -> dt.datetime:
    """`now`, or the clock; always timezone-aware UTC (time is injectable everywhere)."""
    stamp = now or dt.datetime.now(dt.UTC)
    return stamp.astimezone(dt.UTC) if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def db_time(now: dt.datetime | None) -> dt.datetime:
    """A time as the database stores it: UTC, without a zone."""
    return utc(now).replace(tzinfo=None)
