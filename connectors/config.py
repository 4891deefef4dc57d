"""Source configurations: which connector, where, and for which dataset and schema version.

A department source is a TOML file, reviewed like code, e.g.

    dataset = "household_register"
    schema_version = "1.0.0"
    department = "public_security"
    connector = "csv"            # csv | jsonl | parquet | sqlite | postgres
    path = "{city}/public_security/household_register.csv"
    encoding = "auto"
    description = "户籍 nightly export from the legacy register"

`{city}` is the folder of department exports given at run time; `${NAME}` is read from
the environment (for a DSN's password, say), so no secret lives in the file.
"""

from __future__ import annotations

import os
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from connectors.base import Connector
from connectors.delimited import CsvConnector
from connectors.errors import SourceConfigError
from connectors.jsonlines import JsonLinesConnector
from connectors.tables import ParquetConnector, PostgresConnector, SqliteConnector

KINDS = ("csv", "jsonl", "parquet", "sqlite", "postgres")
_REQUIRED = ("dataset", "schema_version", "department", "connector")
_ALLOWED = {*_REQUIRED, "path", "dsn", "table", "query", "encoding", "delimiter", "description"}


@dataclass(frozen=True)
class SourceConfig:
    """One department source, as its configuration file describes it."""

    file: Path
    dataset: str
    schema_version: str
    department: str
    connector: str
    settings: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def open(self, *, city: Path | None = None) -> Connector:
        """The connector for this source; `city` fills `{city}` in paths."""
        value = {k: _expand(v, city, self.file) for k, v in self.settings.items()}
        try:
            if self.connector == "csv":
                return CsvConnector(
                    Path(value["path"]),
                    name=self.dataset,
                    encoding=value.get("encoding", "auto"),
                    delimiter=value.get("delimiter", ","),
                )
            if self.connector == "jsonl":
                return JsonLinesConnector(
                    Path(value["path"]), name=self.dataset, encoding=value.get("encoding", "auto")
                )
            if self.connector == "parquet":
                return ParquetConnector(Path(value["path"]), name=self.dataset)
            if self.connector == "sqlite":
                return SqliteConnector(Path(value["path"]), value["table"], name=self.dataset)
            return PostgresConnector(
                value["dsn"], table=value.get("table"), query=value.get("query"), name=self.dataset
            )
        except KeyError as missing:
            raise SourceConfigError(
                f"{self.file}: a {self.connector} source needs {missing}"
            ) from None


def _expand(text: str, city: Path | None, file: Path) -> str:
    if "{city}" in text:
        if city is None:
            raise SourceConfigError(f"{file}: the source lives in {{city}}; say where (--city)")
        text = text.replace("{city}", str(city))
    try:
        return string.Template(text).substitute(os.environ)
    except (KeyError, ValueError) as problem:
        raise SourceConfigError(f"{file}: environment variable {problem} is not set") from None


def load_source(path: Path) -> SourceConfig:
    """Read and check one source configuration file."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as problem:
        raise SourceConfigError(f"cannot read source config {path}: {problem.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as problem:
        raise SourceConfigError(f"{path} is not valid TOML: {problem}") from None
    missing = [k for k in _REQUIRED if k not in data]
    unknown = sorted(set(data) - _ALLOWED)
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(unknown)}"] if unknown else []
        )
        raise SourceConfigError(f"{path}: {'; '.join(parts)}")
    if data["connector"] not in KINDS:
        raise SourceConfigError(
            f"{path}: connector {data['connector']!r} is not one of {', '.join(KINDS)}"
        )
    if not all(isinstance(v, str) for v in data.values()):
        raise SourceConfigError(f"{path}: every setting is a string")
    settings = {k: v for k, v in data.items() if k not in (*_REQUIRED, "description")}
    return SourceConfig(
        file=Path(path),
        dataset=data["dataset"],
        schema_version=data["schema_version"],
        department=data["department"],
        connector=data["connector"],
        settings=settings,
        description=data.get("description", ""),
    )


def source_files(folder: Path) -> list[Path]:
    """The source configuration files in a folder, in name order."""
    return sorted(Path(folder).glob("*.toml"))
