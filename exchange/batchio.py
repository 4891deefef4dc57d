"""Reading a caseworker's batch of parameters and writing the answers (CSV or Parquet)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from exchange.errors import InvalidArgument


def read_params(path: Path) -> pa.Table:
    """A batch file as a table of strings (Parquet as it is); a clear error otherwise."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix == ".csv":
            # Every column as text: the fact contract types and checks each value.
            names = pacsv.read_csv(
                path, read_options=pacsv.ReadOptions(block_size=1 << 16)
            ).column_names
            options = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
            return pacsv.read_csv(path, convert_options=options)
    except (OSError, UnicodeDecodeError) as problem:
        raise InvalidArgument(f"cannot read {path}: {problem}") from None
    except pa.ArrowInvalid as problem:
        raise InvalidArgument(f"{path} is not a readable {suffix[1:]} file: {problem}") from None
    raise InvalidArgument(f"{path}: batch files are .csv (UTF-8, header row) or .parquet")


def write_answers(answers: pa.Table, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidArgument(f"{path}: answers are written as .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".parquet":
        pq.write_table(answers, tmp)
    else:
        pacsv.write_csv(answers, tmp)
    tmp.replace(path)
