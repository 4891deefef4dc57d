"""Connectors: every record of a source is yielded, numbered, and either read or explained.

The contract (`connectors.base`): each batch starts with `_row` (1-based record number),
`_problem` (null, or why the record could not be read) and `_raw` (the record as found, for
problem rows); a record that cannot be read is yielded, never dropped. Expected values here
come from what the test wrote into the source, never from the connector.

PostgreSQL tests use a real server on 127.0.0.1:5432 and skip, saying why, when none answers.
Bounded memory is measured by a benchmark, not asserted here.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import random
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import JSON, PROBLEM, RAW, ROW, TEXT, Connector, value_kind
from connectors.config import load_source, source_files
from connectors.delimited import CsvConnector
from connectors.errors import SourceConfigError, SourceUnreadable
from connectors.jsonlines import JsonLinesConnector
from connectors.tables import ParquetConnector, PostgresConnector, SqliteConnector

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "connectors" / "sources"
HEAD = [ROW, PROBLEM, RAW]

Record = dict[str, Any]

# Bytes of a UTF-8 Chinese word; "中" is E4 B8 AD, and GB18030 reads E4 B8 as one
# character, leaving AD to pair with the comma after it, which is no GB18030 trail byte.
UTF8_IN_GB = "中".encode()


def _batches(connector: Connector) -> list[pa.RecordBatch]:
    parts = list(connector.read())
    for part in parts:
        assert part.schema.names[:3] == HEAD
        assert part.schema.field(ROW).type == pa.int64()
    return parts


def _records(connector: Connector) -> list[Record]:
    return [row for part in _batches(connector) for row in part.to_pylist()]


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _fails(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return True
    return False


# --- CSV: round trip ------------------------------------------------------------------------

# No CR at all: a CR LF inside a quoted value is checked on its own below, and a lone CR
# outside quotes is a line end to some readers and data to others (Python's writer leaves
# it unquoted when the line terminator is "\n"), so the round trip would be ill-defined.
CHARS = [
    "a", "Z", "0", " ", ",", '"', "\n", "\t", ";", "'",
    "中", "文", "张", "户", "籍", "𠀀",  # 𠀀 is outside the BMP: four bytes in GB18030
    "é", "\x85", "\u2028",  # line breaks to str.splitlines, ordinary characters to CSV
]  # fmt: skip
SPECIAL_CELLS = ["", " ", "  lead", "trail  ", '"', '""', ",", "\n", "\n\n", "a\n\nb", '"x"']
cells = st.one_of(st.text(st.sampled_from(CHARS), max_size=10), st.sampled_from(SPECIAL_CELLS))
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True)


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.lists(names, min_size=2, max_size=6, unique=True))
    width = len(header)
    rows = draw(st.lists(st.lists(cells, min_size=width, max_size=width), max_size=12))
    return header, rows


def _csv_text(header: list[str], rows: list[list[str]], terminator: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator=terminator)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=csv_tables(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    terminator=st.sampled_from(["\r\n", "\n"]),
    block_bytes=st.integers(7, 64),
    batch_rows=st.integers(1, 5),
)
def test_csv_round_trip(
    tmp_path: Path,
    table: tuple[list[str], list[list[str]]],
    encoding: str,
    terminator: str,
    block_bytes: int,
    batch_rows: int,
) -> None:
    header, rows = table
    text = _csv_text(header, rows, terminator)
    data = text.encode(encoding)  # "utf-8-sig" writes the byte-order mark
    path = _write(tmp_path, f"round-{uuid.uuid4().hex}.csv", data)
    expected = [
        {ROW: i, PROBLEM: None, RAW: None}
        | {h: (c or None) for h, c in zip(header, row, strict=True)}
        for i, row in enumerate(rows, start=1)
    ]
    readers = [encoding, "auto"]
    if encoding == "gb18030" and not _fails(data, "utf-8") and data.decode("utf-8") != text:
        # These GB18030 bytes are also valid UTF-8 meaning something else: no detector can
        # tell; only the named encoding is checked.
        readers = [encoding]
    for named in readers:
        connector = CsvConnector(
            path, encoding=named, block_bytes=block_bytes, batch_rows=batch_rows
        )
        parts = _batches(connector)
        assert all(part.num_rows <= batch_rows for part in parts)
        for part in parts:
            for name in header:
                field = part.schema.field(name)
                assert field.type == pa.string()
                assert value_kind(field) == TEXT
        got = [row for part in parts for row in part.to_pylist()]
        assert got == expected, f"read as {named}"


@pytest.mark.parametrize(("block_bytes", "batch_rows"), [(50, 3), (200, 7), (1 << 20, 16)])
def test_csv_numbering_across_blocks_and_batches(
    tmp_path: Path, block_bytes: int, batch_rows: int
) -> None:
    rows = [[str(i), f"名{i}" * (i % 4), "a\nb" if i % 10 == 0 else ""] for i in range(1, 201)]
    path = _write(tmp_path, "n.csv", _csv_text(["n", "name", "note"], rows, "\r\n").encode())
    parts = _batches(CsvConnector(path, block_bytes=block_bytes, batch_rows=batch_rows))
    assert all(part.num_rows <= batch_rows for part in parts)
    got = [row for part in parts for row in part.to_pylist()]
    assert [r[ROW] for r in got] == list(range(1, 201))
    assert [[r["n"], r["name"], r["note"]] for r in got] == [
        [n, name or None, note or None] for n, name, note in rows
    ]


def test_csv_crlf_inside_quoted_value_is_kept(tmp_path: Path) -> None:
    # CR LF inside a quoted field is data (RFC 4180), not a line end to normalise.
    text = _csv_text(["a", "b"], [["x\r\ny", "z"], ["1", "2"]], "\r\n")
    assert text == 'a,b\r\n"x\r\ny",z\r\n1,2\r\n'
    path = _write(tmp_path, "crlf.csv", text.encode())
    for block_bytes in (7, 1 << 20):
        got = _records(CsvConnector(path, block_bytes=block_bytes))
        assert [r["a"] for r in got] == ["x\r\ny", "1"]
        assert [r[PROBLEM] for r in got] == [None, None]


def test_csv_lone_cr_in_unquoted_field_is_yielded(tmp_path: Path) -> None:
    # Python's own writer leaves a lone CR unquoted when lines end in LF: such files exist.
    text = _csv_text(["a", "b"], [["x\ry", "z"], ["1", "2"]], "\n")
    assert text == "a,b\nx\ry,z\n1,2\n"
    path = _write(tmp_path, "cr.csv", text.encode())
    got = _records(CsvConnector(path))
    assert [r[ROW] for r in got] == [1, 2]
    first = got[0]
    # Either read as written, or yielded as a problem with the record as found.
    if first[PROBLEM] is None:
        assert (first["a"], first["b"]) == ("x\ry", "z")
    else:
        assert first[RAW] == "x\ry,z"
    assert (got[1][PROBLEM], got[1]["a"], got[1]["b"]) == (None, "1", "2")


def test_csv_quote_inside_a_field_is_an_ordinary_character(tmp_path: Path) -> None:
    path = _write(tmp_path, "q.csv", b'a,b\n1,x"y\n2,"z"\n')
    got = _records(CsvConnector(path))
    assert [(r["a"], r["b"], r[PROBLEM]) for r in got] == [("1", 'x"y', None), ("2", "z", None)]


# --- CSV: problems --------------------------------------------------------------------------


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_csv_wrong_field_counts_are_yielded(tmp_path: Path, block_bytes: int) -> None:
    path = _write(tmp_path, "f.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n")
    got = _records(CsvConnector(path, block_bytes=block_bytes, batch_rows=2))
    assert [r[ROW] for r in got] == [1, 2, 3, 4]
    assert [r[PROBLEM] for r in got] == [
        None,
        "fields: expected 3, found 2",
        "fields: expected 3, found 4",
        None,
    ]
    assert [r[RAW] for r in got] == [None, "4,5", "6,7,8,9", None]
    assert [(r["a"], r["b"], r["c"]) for r in got] == [
        ("1", "2", "3"),
        (None, None, None),
        (None, None, None),
        ("10", "11", "12"),
    ]


@pytest.mark.parametrize("block_bytes", [7, 1 << 20])
@pytest.mark.parametrize("encoding", ["gb18030", "auto"])
def test_csv_undecodable_row_in_gb18030_file(
    tmp_path: Path, encoding: str, block_bytes: int
) -> None:
    bad = UTF8_IN_GB + b",x"
    assert _fails(bad, "gb18030")
    data = (
        "姓名,住址\n张三,北京\n".encode("gb18030") + bad + b"\n" + "李四,上海\n".encode("gb18030")
    )
    path = _write(tmp_path, "gb.csv", data)
    got = _records(CsvConnector(path, encoding=encoding, block_bytes=block_bytes))
    assert [r[ROW] for r in got] == [1, 2, 3]
    assert got[0][PROBLEM] is None and got[2][PROBLEM] is None
    assert got[1][PROBLEM].startswith("encoding:")
    assert got[1][RAW] == bad.decode("gb18030", "replace")
    assert [(r["姓名"], r["住址"]) for r in got] == [
        ("张三", "北京"),
        (None, None),
        ("李四", "上海"),
    ]


@pytest.mark.parametrize("block_bytes", [6, 1 << 20])
def test_csv_file_ending_inside_a_quote(tmp_path: Path, block_bytes: int) -> None:
    path = _write(tmp_path, "q.csv", b'a,b\n1,2\n3,"never closed\n4,5\n')
    got = _records(CsvConnector(path, block_bytes=block_bytes))
    assert [r[ROW] for r in got] == [1, 2]
    assert (got[0][PROBLEM], got[0]["a"], got[0]["b"]) == (None, "1", "2")
    assert got[1][PROBLEM].startswith("quote:")
    assert got[1][RAW] == '3,"never closed\n4,5'
    assert (got[1]["a"], got[1]["b"]) == (None, None)


def test_csv_undecodable_line_inside_a_quoted_value_does_not_fail_the_file(
    tmp_path: Path,
) -> None:
    # A multi-line quoted value with an undecodable line in it: the damage stays in the
    # records it touches; the record after it is still read.
    data = 'a,b\n1,"open\n'.encode("gb18030") + UTF8_IN_GB + b"\n" + b'tail",z\n2,3\n'
    assert _fails(UTF8_IN_GB + b"\n", "gb18030")
    path = _write(tmp_path, "open.csv", data)
    got = _records(CsvConnector(path, encoding="gb18030"))
    assert [r[ROW] for r in got] == list(range(1, len(got) + 1))
    assert got[-1] | {ROW: None} == {ROW: None, PROBLEM: None, RAW: None, "a": "2", "b": "3"}
    assert any(r[PROBLEM] for r in got[:-1])


def test_csv_blank_lines_are_not_records(tmp_path: Path) -> None:
    path = _write(tmp_path, "blank.csv", b"\n\na,b\n\n1,2\r\n\r\n\n3,4\n\n")
    got = _records(CsvConnector(path, block_bytes=4))
    assert [(r[ROW], r[PROBLEM], r["a"], r["b"]) for r in got] == [
        (1, None, "1", "2"),
        (2, None, "3", "4"),
    ]


@pytest.mark.parametrize("data", [b"a,b\n", b"a,b", b"a,b\r\n\r\n", b"\xef\xbb\xbfa,b\n"])
def test_csv_header_only_has_no_records(tmp_path: Path, data: bytes) -> None:
    assert _records(CsvConnector(_write(tmp_path, "h.csv", data))) == []


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (b"\xff\xfe,b\n1,2\n", "auto"),  # 0xFF starts no character in UTF-8 or GB18030
        (b"\xff\xfe,b\n1,2\n", "utf-8"),
        ("姓名,住址\n张三,北京\n".encode("gb18030"), "utf-8"),
        (b"a,a\n1,2\n", "auto"),
        (b"a,,c\n1,2,3\n", "auto"),
    ],
)
def test_csv_unreadable_header(tmp_path: Path, data: bytes, encoding: str) -> None:
    path = _write(tmp_path, "h.csv", data)
    with pytest.raises(SourceUnreadable, match="header"):
        list(CsvConnector(path, encoding=encoding).read())


@pytest.mark.parametrize("encoding", ["auto", "utf-8", "gb18030"])
def test_missing_text_files_are_unreadable(tmp_path: Path, encoding: str) -> None:
    missing = tmp_path / "nowhere.csv"
    for connector in (
        CsvConnector(missing, encoding=encoding),
        JsonLinesConnector(missing, encoding=encoding),
    ):
        with pytest.raises(SourceUnreadable, match="nowhere"):
            list(connector.read())
    assert not missing.exists()


def test_unknown_encoding_is_unreadable(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.csv", b"a,b\n1,2\n")
    with pytest.raises(SourceUnreadable, match="klingon"):
        list(CsvConnector(path, encoding="klingon").read())


SAMPLE = "姓名,住址\n张三,北京市海淀区\n王芳,上海市\n"
EVEN = "姓名,住址\n张三,北京海淀\n王芳,上海\n"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (SAMPLE.encode("gbk"), "gb18030"),
        (SAMPLE.encode("gb18030"), "gb18030"),
        (SAMPLE.encode("utf-8"), "utf-8"),
        (SAMPLE.encode("utf-8-sig"), "utf-8-sig"),
        (SAMPLE.replace("\n", "\r\n").encode("gbk"), "gb18030"),
        # One UTF-8 line among GBK lines: most lines are GBK; the one is a problem row.
        (SAMPLE.encode("gbk") + "李雷,广州市\n".encode(), "gb18030"),
        # One GBK line among UTF-8 lines: the file is UTF-8.
        (SAMPLE.encode() + "李雷,广州市\n".encode("gbk"), "utf-8"),
        # The same with two-character words only. UTF-8 bytes of an even number of CJK
        # characters happen to be valid GB18030 too, but valid multi-byte UTF-8 almost never
        # happens by chance: these lines are UTF-8, and only the last one is not.
        (EVEN.encode() + "李雷,广州\n".encode("gbk"), "utf-8"),
    ],
    ids=["gbk", "gb18030", "utf-8", "bom", "gbk-crlf", "gbk+utf8-line", "utf8+gbk-line", "even"],
)
def test_csv_encoding_detection(tmp_path: Path, data: bytes, detected: str) -> None:
    path = _write(tmp_path, "d.csv", data)
    connector = CsvConnector(path)
    assert connector.resolved_encoding() == detected
    assert detected in connector.describe()
    got = _records(connector)
    people = [line.split(",") for line in data.decode(detected, "replace").splitlines()[1:3]]
    assert [[r["姓名"], r["住址"]] for r in got[:2]] == people
    assert [r[PROBLEM] for r in got[:2]] == [None, None]
    if len(got) == 3:  # the line in the other encoding
        assert got[2][PROBLEM].startswith("encoding:")
        assert got[2][ROW] == 3


def test_csv_ascii_is_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", b"name,city\nzhang,beijing\n")
    assert CsvConnector(path).resolved_encoding() == "utf-8"


# --- CSV: the fast path and the careful path agree -------------------------------------------

# Pieces of records as departments' exports (and their faults) have them, as bytes: quotes
# opening and closing anywhere, CR LF and lone CRs, blank lines, bytes no codec accepts.
MESSY = [
    b"a", b"0", b" ", b",", b",", b'"', b'""', b'"', b"\n", b"\n", b"\r\n", b"\r", b"\t",
    "中".encode("gb18030"), "户籍".encode("gb18030"), "𠀀".encode("gb18030"), "中".encode(),
    b"\xff", UTF8_IN_GB, b"\x81",
]  # fmt: skip


# Whole records of such fields, mostly well formed, so that the fast path is taken often.
FIELDS = [
    "", "a", "中文", "𠀀", '"q,uoted"', '"multi\nline"', '"multi\r\nline"', '"esc""aped"',
    'mid"quote', '"a"b', '" "', '""', '"\n\n"',
]  # fmt: skip


@st.composite
def messy_records(draw: st.DrawFn) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        width = draw(st.sampled_from([2, 2, 2, 2, 2, 3, 1]))
        fields = draw(st.lists(st.sampled_from(FIELDS), min_size=width, max_size=width))
        end = draw(st.sampled_from(["\n", "\r\n", "\r\n", "\r", ""]))
        out.append((",".join(fields) + end).encode(draw(st.sampled_from(["utf-8", "gb18030"]))))
        out += draw(st.lists(st.sampled_from(MESSY), max_size=1))
    return out


def _careful_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CsvConnector, "_prepare", lambda self, *args: None)


def _outcome(connector: CsvConnector) -> list[Record] | str:
    try:
        return _records(connector)
    except SourceUnreadable as problem:
        return f"unreadable: {problem}"


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(st.lists(st.sampled_from(MESSY), max_size=60), messy_records()),
    header=st.sampled_from([b"a,b\n", b"a,b\r\n", "姓名,住址\n".encode("gb18030")]),
    encoding=st.sampled_from(["utf-8", "gb18030"]),
    block_bytes=st.integers(5, 80),
    batch_rows=st.integers(1, 6),
)
def test_csv_fast_path_reads_as_the_careful_path(
    tmp_path: Path,
    body: list[bytes],
    header: bytes,
    encoding: str,
    block_bytes: int,
    batch_rows: int,
) -> None:
    path = _write(tmp_path, f"m-{uuid.uuid4().hex}.csv", header + b"".join(body))
    for size in (block_bytes, 1 << 20):
        options = {"encoding": encoding, "block_bytes": size, "batch_rows": batch_rows}
        fast = _outcome(CsvConnector(path, **options))
        with pytest.MonkeyPatch.context() as patch:
            _careful_only(patch)
            careful = _outcome(CsvConnector(path, **options))
        assert fast == careful


def test_csv_clean_export_takes_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GB18030, CR LF, quoted commas and a quoted newline, blank lines: still the fast path.
    rows = [[f"{i:06d}", f"张{i}", "广州市,天河区" if i % 3 else "中山路\n1号"] for i in range(300)]
    text = _csv_text(["id", "name", "address"], rows, "\r\n") + "\r\n\r\n"
    path = _write(tmp_path, "clean.csv", text.encode("gb18030"))

    def careful(*args: object) -> None:
        raise AssertionError("a clean export took the careful path")

    monkeypatch.setattr(CsvConnector, "_records", careful)
    got = _records(CsvConnector(path, batch_rows=64))
    assert [r[ROW] for r in got] == list(range(1, 301))
    assert [[r["id"], r["name"], r["address"]] for r in got] == rows


def test_csv_careful_only_really_is_the_careful_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the property test above compares against must not be the fast path again.
    path = _write(tmp_path, "c.csv", "a,b\n1,二\n".encode("gb18030"))
    calls: list[int] = []
    records = CsvConnector._records

    def spy(self: CsvConnector, pending: Any, block: Any) -> Any:
        calls.append(len(block.lines))
        return records(self, pending, block)

    monkeypatch.setattr(CsvConnector, "_records", spy)
    _careful_only(monkeypatch)
    assert [(r["a"], r["b"]) for r in _records(CsvConnector(path))] == [("1", "二")]
    assert calls == [1]


def test_work_ahead_keeps_order_raises_and_stops() -> None:
    from connectors.delimited import _ahead

    assert list(_ahead(lambda n: n * n, range(50))) == [n * n for n in range(50)]

    def fails(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        return n

    got: list[int] = []
    with pytest.raises(ValueError, match="three"):
        for n in _ahead(fails, range(10)):
            got.append(n)
    assert got == [0, 1, 2]
    seen: list[int] = []

    def slow(n: int) -> int:
        seen.append(n)
        return n

    ahead = _ahead(slow, range(1000))
    assert next(ahead) == 0
    ahead.close()  # the caller stops: the thread stops soon after, not at 1000
    import time

    time.sleep(0.5)
    assert len(seen) < 10


def test_csv_a_bad_row_sends_only_its_piece_to_the_careful_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [f"{i},北京" if i != 5000 else f"{i},x,y" for i in range(20000)]
    data = "\n".join(["n,city", *lines, ""]).encode("gb18030")
    path = _write(tmp_path, "one-bad.csv", data)
    monkeypatch.setattr("connectors.delimited.PIECE_BYTES", 4096)
    seen: list[int] = []
    records = CsvConnector._records

    def spy(self: CsvConnector, pending: Any, block: Any) -> Any:
        seen.append(len(block.lines))
        return records(self, pending, block)

    monkeypatch.setattr(CsvConnector, "_records", spy)
    got = _records(CsvConnector(path, block_bytes=1 << 20))
    assert [r[ROW] for r in got] == list(range(1, 20001))
    assert [r[ROW] for r in got if r[PROBLEM]] == [5001]
    assert got[5000][PROBLEM] == "fields: expected 2, found 3"
    assert len(seen) == 1 and seen[0] < 1000  # one piece of about 4 KiB, not the block


# --- JSON Lines -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "auto"])
@pytest.mark.parametrize("block_bytes", [9, 1 << 20])
def test_jsonl_problems_are_yielded(tmp_path: Path, encoding: str, block_bytes: int) -> None:
    undecodable = "中文".encode("gb18030") + b'{"n": 9}'
    assert _fails(undecodable, "utf-8")
    lines = [
        # Three-character names: their UTF-8 bytes are not also GB18030 (see `EVEN`).
        '{"n": 1, "s": "张三丰"}'.encode(),
        b"{not json}",
        b"",  # blank: no record
        b"[1, 2]",
        undecodable,
        b'"just a string"',
        '{"n": 2, "s": "李四光"}'.encode(),
    ]
    path = _write(tmp_path, "p.jsonl", b"\n".join(lines) + b"\n")
    got = _records(JsonLinesConnector(path, encoding=encoding, block_bytes=block_bytes))
    assert [r[ROW] for r in got] == [1, 2, 3, 4, 5, 6]
    problems = [r[PROBLEM] for r in got]
    assert problems[0] is None and problems[5] is None
    assert problems[1].startswith("json:")
    assert problems[2].startswith("json:") and "list" in problems[2]
    assert problems[3].startswith("encoding:")
    assert problems[4].startswith("json:") and "str" in problems[4]
    assert [r[RAW] for r in got] == [
        None,
        "{not json}",
        "[1, 2]",
        undecodable.decode("utf-8", "replace"),
        '"just a string"',
        None,
    ]
    # A batch of problem rows only has no data columns: a missing column is a null.
    assert [(r.get("n"), r.get("s")) for r in got] == [
        (1, "张三丰"),
        (None, None),
        (None, None),
        (None, None),
        (None, None),
        (2, "李四光"),
    ]


def test_jsonl_types(tmp_path: Path) -> None:
    mixed: list[Any] = [1, "one", 2.5, True, None, {"k": [1, None]}, [1, "x"], 2**70]
    records = [
        {"i": n, "s": f"名{n}", "b": n % 2 == 0, "f": n / 4, "m": m} for n, m in enumerate(mixed)
    ]
    # Two kinds only: an integer among floats is not made a float, a bool is not an integer.
    for n, record in enumerate(records):
        record["x"] = n if n % 2 else n + 0.5
        record["y"] = n if n % 2 else n == 0
    records[3]["s"] = None  # nulls do not spoil a type
    path = _write(
        tmp_path,
        "t.jsonl",
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode(),
    )
    (part,) = _batches(JsonLinesConnector(path))
    schema = part.schema
    assert (schema.field("i").type, value_kind(schema.field("i"))) == (pa.int64(), None)
    assert (schema.field("s").type, value_kind(schema.field("s"))) == (pa.string(), None)
    assert (schema.field("b").type, value_kind(schema.field("b"))) == (pa.bool_(), None)
    assert (schema.field("f").type, value_kind(schema.field("f"))) == (pa.float64(), None)
    assert value_kind(schema.field("m")) == JSON
    for name in ("i", "s", "b", "f"):
        assert part.column(name).to_pylist() == [r[name] for r in records]
    for name in ("m", "x", "y"):
        assert value_kind(schema.field(name)) == JSON, name
        texts = part.column(name).to_pylist()
        values = [None if t is None else json.loads(t) for t in texts]
        assert values == [r[name] for r in records]
        # True == 1 and 1.0 == 1 in Python: check the kinds too.
        assert [type(v) for v in values] == [type(r[name]) for r in records]


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
json_records = st.dictionaries(st.sampled_from(["a", "b", "名", "d e"]), json_values, max_size=4)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON kinds all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(json_records, max_size=10),
    block_bytes=st.integers(8, 64),
    batch_rows=st.integers(1, 4),
)
def test_jsonl_round_trip(
    tmp_path: Path, records: list[Record], block_bytes: int, batch_rows: int
) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path = _write(tmp_path, f"r-{uuid.uuid4().hex}.jsonl", text.encode())
    connector = JsonLinesConnector(
        path, encoding="utf-8", block_bytes=block_bytes, batch_rows=batch_rows
    )
    got: list[Any] = []
    for part in _batches(connector):
        assert part.num_rows <= batch_rows
        for row in part.to_pylist():
            assert row[PROBLEM] is None and row[RAW] is None
            values: Record = {}
            for name in part.schema.names[3:]:
                value = row[name]
                if value_kind(part.schema.field(name)) == JSON and value is not None:
                    value = json.loads(value)
                values[name] = value
            got.append((row[ROW], values))
    assert [n for n, _ in got] == list(range(1, len(records) + 1))
    for (_, values), record in zip(got, records, strict=True):
        for name, value in values.items():
            assert _same(value, record.get(name)), (name, value, record)
        assert set(record) <= set(values)


# --- Parquet --------------------------------------------------------------------------------


def test_parquet_rows_numbered_across_batches(tmp_path: Path) -> None:
    n = 250
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "name": pa.array([None if i % 7 == 0 else f"姓名{i}" for i in range(n)]),
            "amount": pa.array([i * 0.25 for i in range(n)], pa.float64()),
            "born": pa.array(
                [dt.date(1950, 1, 1) + dt.timedelta(days=37 * i) for i in range(n)], pa.date32()
            ),
            "ok": pa.array([None if i % 5 == 0 else i % 2 == 0 for i in range(n)]),
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=64)
    parts = _batches(ParquetConnector(path, batch_rows=10))
    assert len(parts) > 1 and all(part.num_rows <= 10 for part in parts)
    got = pa.Table.from_batches(parts)
    assert got.column(ROW).to_pylist() == list(range(1, n + 1))
    assert got.column(PROBLEM).null_count == n and got.column(RAW).null_count == n
    assert got.select(table.column_names).equals(table)


@pytest.mark.parametrize("content", [None, b"PAR1 this is not parquet"])
def test_parquet_unreadable(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.parquet"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceUnreadable, match=r"x\.parquet"):
        list(ParquetConnector(path).read())


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    con = sqlite3.connect(path)
    try:
        for sql, params in statements:
            con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def _fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


def test_sqlite_read_only_and_in_rowid_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dept"
    folder.mkdir()
    path = folder / "d.sqlite"
    rowids = list(range(1, 41))
    random.Random(7).shuffle(rowids)  # inserted out of order; read back in rowid order
    inserts = [
        ("INSERT INTO people(rowid, id, name) VALUES (?, ?, ?)", (r, r * 10, f"人{r}"))
        for r in rowids
    ]
    _sqlite(
        path,
        ("CREATE TABLE people(id INTEGER, name TEXT)", ()),
        ("CREATE INDEX people_name ON people(name DESC)", ()),
        *inserts,
        ("DELETE FROM people WHERE rowid % 9 = 0", ()),  # gaps in rowid, none in _row
    )
    before = _fingerprint(folder)

    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", spy)
    reading = SqliteConnector(path, "people", batch_rows=4).read()
    parts = [next(reading)]
    # While the connector has the database open, its connection cannot write.
    (con,) = opened
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("INSERT INTO people(id, name) VALUES (0, 'intruder')")
    parts.extend(reading)
    monkeypatch.undo()

    kept = sorted(r for r in rowids if r % 9)
    got = pa.Table.from_batches(parts).to_pylist()
    assert [r[ROW] for r in got] == list(range(1, len(kept) + 1))
    assert [(r["id"], r["name"]) for r in got] == [(r * 10, f"人{r}") for r in kept]
    assert {r[PROBLEM] for r in got} == {None}
    assert _fingerprint(folder) == before  # same bytes, same mtime, no journal left behind


def test_sqlite_text_in_integer_column_is_json(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    _sqlite(
        path,
        ("CREATE TABLE m(n INTEGER, label TEXT)", ()),
        ("INSERT INTO m VALUES (?, ?)", (1, "a")),
        ("INSERT INTO m VALUES (?, ?)", ("two", "b")),
        ("INSERT INTO m VALUES (?, ?)", (None, None)),
        ("INSERT INTO m VALUES (?, ?)", (3, "c")),
    )
    (part,) = _batches(SqliteConnector(path, "m"))
    n, label = part.schema.field("n"), part.schema.field("label")
    assert value_kind(n) == JSON and n.type == pa.string()
    texts = part.column("n").to_pylist()
    assert [None if t is None else json.loads(t) for t in texts] == [1, "two", None, 3]
    assert [type(json.loads(t)) for t in texts if t is not None] == [int, str, int]
    assert value_kind(label) is None and label.type == pa.string()
    assert part.column("label").to_pylist() == ["a", "b", None, "c"]


def test_sqlite_blob_among_text_is_yielded(tmp_path: Path) -> None:
    # SQLite enforces no declared type: a legacy GBK name stored as a BLOB in a TEXT column.
    path = tmp_path / "b.sqlite"
    _sqlite(
        path,
        ("CREATE TABLE t(name TEXT)", ()),
        ("INSERT INTO t VALUES (?)", ("张三",)),
        ("INSERT INTO t VALUES (?)", ("李四".encode("gbk"),)),
    )
    got = _records(SqliteConnector(path, "t"))
    assert [r[ROW] for r in got] == [1, 2]
    assert got[0][PROBLEM] is None


def test_sqlite_quoted_table_name(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    _sqlite(
        path,
        ('CREATE TABLE "we""ird" (x TEXT)', ()),
        ('INSERT INTO "we""ird" VALUES (?)', ("安全",)),
        ("CREATE TABLE t (x TEXT)", ()),
        ("INSERT INTO t VALUES (?)", ("kept",)),
    )
    got = _records(SqliteConnector(path, 'we"ird'))
    assert [(r[ROW], r["x"]) for r in got] == [(1, "安全")]
    # A name that would be SQL if spliced in unquoted is only a missing table.
    with pytest.raises(SourceUnreadable):
        list(SqliteConnector(path, 't"; DROP TABLE t; --').read())
    assert [r["x"] for r in _records(SqliteConnector(path, "t"))] == ["kept"]


def test_sqlite_missing_table_or_file(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    _sqlite(path, ("CREATE TABLE t (x TEXT)", ()))
    with pytest.raises(SourceUnreadable, match="nosuch"):
        list(SqliteConnector(path, "nosuch").read())
    missing = tmp_path / "absent.sqlite"
    with pytest.raises(SourceUnreadable, match="absent"):
        list(SqliteConnector(missing, "t").read())
    assert not missing.exists()  # not created by trying


# --- PostgreSQL -----------------------------------------------------------------------------

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    """An ADBC connection to the local test server, or a skip saying why there is none."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=3):
            pass
    except OSError as problem:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {problem}")
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as pg

    try:
        con = pg.connect(PG_DSN)
    except adbc_driver_manager.Error as problem:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {problem}")
    try:
        yield con
    finally:
        con.close()


def _pg_rows(n: int) -> list[tuple[Any, ...]]:
    pick = random.Random(2024)
    rows = []
    for i in range(1, n + 1):
        name = None if i % 11 == 0 else pick.choice(["张三", "O'Brien", 'say "hi"', "", "x,y"])
        amount = None if i % 7 == 0 else Decimal(pick.randrange(-(10**8), 10**8)) / 100
        born = (
            None if i % 13 == 0 else dt.date(1940, 1, 1) + dt.timedelta(days=pick.randrange(30000))
        )
        ok = None if i % 5 == 0 else pick.random() < 0.5
        rows.append((i, name, amount, born, ok))
    return rows


def _pg_values(got: list[Record]) -> list[tuple[Any, ...]]:
    return [
        (
            r["id"],
            r["name"],
            None if r["amount"] is None else Decimal(str(r["amount"])),
            r["born"],
            r["ok"],
        )
        for r in got
    ]


def test_postgres_table_and_query(postgres: Any) -> None:
    table = f'onceonly "Conn" test_{uuid.uuid4().hex}'  # needs quoting, case and all
    rows = _pg_rows(300)
    cur = postgres.cursor()
    try:
        cur.execute(
            f"CREATE TABLE {_pg_quote(table)} "
            "(id integer, name text, amount numeric(12, 2), born date, ok boolean)"
        )
        cur.executemany(
            f"INSERT INTO {_pg_quote(table)} VALUES ($1, $2, $3::numeric, $4, $5)",
            [(i, s, None if a is None else str(a), b, o) for i, s, a, b, o in rows],
        )
        postgres.commit()

        parts = _batches(PostgresConnector(PG_DSN, table=table, batch_rows=64))
        assert len(parts) >= 5 and all(part.num_rows <= 64 for part in parts)
        got = [row for part in parts for row in part.to_pylist()]
        assert [r[ROW] for r in got] == list(range(1, len(rows) + 1))
        assert {(r[PROBLEM], r[RAW]) for r in got} == {(None, None)}
        # A table has no order of its own: compare by id.
        assert sorted(_pg_values(got), key=lambda v: v[0]) == rows

        query = f"SELECT * FROM {_pg_quote(table)} WHERE id % 3 <> 0 ORDER BY id DESC"
        got = _records(PostgresConnector(PG_DSN, query=query, batch_rows=7))
        expected = [row for row in reversed(rows) if row[0] % 3]
        assert [r[ROW] for r in got] == list(range(1, len(expected) + 1))
        assert _pg_values(got) == expected
    finally:
        postgres.rollback()
        cur.execute(f"DROP TABLE IF EXISTS {_pg_quote(table)}")
        postgres.commit()
        cur.close()


def test_postgres_missing_table(postgres: Any) -> None:
    table = f"onceonly_absent_{uuid.uuid4().hex}"
    with pytest.raises(SourceUnreadable, match=table):
        list(PostgresConnector(PG_DSN, table=table).read())


def test_postgres_missing_database_hides_password(postgres: Any) -> None:
    dsn = "postgresql://postgres:s3cret-pw@127.0.0.1:5432/onceonly_no_such_db"
    with pytest.raises(SourceUnreadable) as raised:
        list(PostgresConnector(dsn, table="t").read())
    assert "s3cret-pw" not in str(raised.value)
    assert "onceonly_no_such_db" in str(raised.value)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres:s3cret-pw@127.0.0.1:1/test",
        "postgresql://127.0.0.1:1/test?user=postgres&password=s3cret-pw",
        "host=127.0.0.1 port=1 dbname=test user=postgres password=s3cret-pw",
    ],
    ids=["uri", "uri-query", "keywords"],
)
def test_postgres_unreachable_hides_password(dsn: str) -> None:
    # Nothing listens on port 1: no server is needed to check the failure.
    connector = PostgresConnector(dsn, table="t")
    with pytest.raises(SourceUnreadable, match="cannot connect") as raised:
        list(connector.read())
    assert "127.0.0.1" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)
    assert "s3cret-pw" not in connector.describe()


def test_postgres_table_or_query() -> None:
    with pytest.raises(SourceUnreadable):
        PostgresConnector(PG_DSN)
    with pytest.raises(SourceUnreadable):
        PostgresConnector(PG_DSN, table="t", query="SELECT 1")


# --- Source configuration -------------------------------------------------------------------

KIND_CLASSES = {
    "csv": CsvConnector,
    "jsonl": JsonLinesConnector,
    "parquet": ParquetConnector,
    "sqlite": SqliteConnector,
    "postgres": PostgresConnector,
}


def test_there_are_source_files() -> None:
    assert len(source_files(SOURCES)) >= 10


@pytest.mark.parametrize("file", source_files(SOURCES), ids=lambda p: p.name)
def test_source_file_loads_and_names_a_contract(file: Path, tmp_path: Path) -> None:
    source = load_source(file)
    assert file.name == f"{source.department}.{source.dataset}.toml"
    contract = ROOT / "schemas" / "datasets" / source.dataset / f"{source.schema_version}.json"
    assert contract.is_file(), f"{file.name} names {contract}, which does not exist"
    connector = source.open(city=tmp_path)
    assert isinstance(connector, KIND_CLASSES[source.connector])
    assert connector.name == source.dataset
    if "path" in source.settings:
        assert tmp_path in Path(connector.path).parents  # type: ignore[attr-defined]


BASE = 'dataset = "d"\nschema_version = "1.0.0"\ndepartment = "x"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('dataset = "d"\ndepartment = "x"\nconnector = "csv"\npath = "a.csv"\n', "schema_version"),
        (BASE + 'connector = "csv"\npath = "a.csv"\ncolour = "red"\n', "unknown colour"),
        (BASE + 'connector = "excel"\npath = "a.xls"\n', "'excel'"),
        (BASE + 'connector = "csv"\npath = "a.csv\n', "not valid TOML"),
        (BASE + 'connector = "csv"\npath = "a.csv"\ndelimiter = 9\n', "string"),
    ],
    ids=["missing-key", "unknown-key", "unknown-connector", "bad-toml", "not-a-string"],
)
def test_bad_source_config(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.toml", text.encode())
    with pytest.raises(SourceConfigError, match=message) as raised:
        load_source(path).open(city=tmp_path)
    assert "bad.toml" in str(raised.value)


def test_missing_source_config(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="absent"):
        load_source(tmp_path / "absent.toml")


def test_city_placeholder_needs_a_city(tmp_path: Path) -> None:
    text = BASE + 'connector = "csv"\npath = "{city}/x/a.csv"\n'
    source = load_source(_write(tmp_path, "c.toml", text.encode()))
    with pytest.raises(SourceConfigError, match="--city"):
        source.open()
    city = tmp_path / "城市"
    connector = source.open(city=city)
    assert isinstance(connector, CsvConnector)
    assert connector.path == city / "x" / "a.csv"


def test_source_needs_its_connector_settings(tmp_path: Path) -> None:
    source = load_source(_write(tmp_path, "s.toml", (BASE + 'connector = "sqlite"\n').encode()))
    with pytest.raises(SourceConfigError, match="path"):
        source.open(city=tmp_path)


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE + 'connector = "postgres"\ndsn = "postgresql://u:${ONCEONLY_PW}@db/x"\n'
    text += 'table = "t"\n'
    source = load_source(_write(tmp_path, "e.toml", text.encode()))
    monkeypatch.delenv("ONCEONLY_PW", raising=False)
    with pytest.raises(SourceConfigError, match="ONCEONLY_PW"):
        source.open()
    monkeypatch.setenv("ONCEONLY_PW", "pa55-秘密")
    connector = source.open()
    assert isinstance(connector, PostgresConnector)
    assert connector.dsn == "postgresql://u:pa55-秘密@db/x"
    assert connector.table == "t"
    assert "pa55" not in connector.describe()
