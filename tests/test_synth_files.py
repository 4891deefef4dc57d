"""The synthetic city's files: determinism, formats and encodings, and the fault manifest.

The manifest test reads every file from raw bytes with ordinary readers and classifies
every row with reference checks written here; the classification must equal the manifest
exactly: every planted fault is where the manifest says, and no clean row is faulty.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exchange import residentid
from exchange.synth.city import CitySummary, generate_city
from exchange.synth.departments import SPECS, DatasetSpec
from exchange.synth.faults import KINDS, applicable

Record = dict[str, object]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    generate_city(tmp_path / "a", persons=800, seed=3, dirty_rate=0.02)
    # Another process with another string-hash seed: no set or dict order may leak in.
    onceonly = Path(sys.executable).with_name("onceonly")
    args = ["synth", "--persons", "800", "--seed", "3", "--dirty-rate", "0.02"]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [str(onceonly), *args, "--out", str(tmp_path / "b")]
    subprocess.run(command, env=env, check=True, capture_output=True)
    generate_city(tmp_path / "c", persons=800, seed=4, dirty_rate=0.02)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 12  # 10 source files + summary + manifest
    assert a == b
    differing = [name for name in a if a[name] != c[name]]
    assert len(differing) == len(a)  # another seed changes every file


def test_every_department_writes_its_native_format(dirty_city: tuple[Path, CitySummary]) -> None:
    root, summary = dirty_city
    departments = {d.department for d in summary.datasets}
    assert departments == {
        "public_security",
        "health",
        "civil_affairs",
        "hrss",
        "housing",
        "education",
    }
    assert (root / "housing/property.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    register = (root / "public_security/household_register.csv").read_bytes()
    assert register.startswith(b"id_number,name,") and b"\r\n" in register
    assert "户主".encode("gb18030") in register
    with sqlite3.connect(root / "civil_affairs/civil_affairs.sqlite") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"marriages", "divorces", "dibao", "cremations"}
    assert pq.read_metadata(root / "hrss/contributions.parquet").num_rows > 0
    for path in ("health/births.jsonl", "health/deaths.jsonl", "education/degrees.jsonl"):
        first = (root / path).read_text("utf-8", errors="replace").splitlines()[0]
        assert first.startswith("{")


def test_summary_counts_match_the_files(dirty_city: tuple[Path, CitySummary]) -> None:
    root, summary = dirty_city
    for spec, ds in zip(SPECS, summary.datasets, strict=True):
        assert ds.rows == sum(1 for _ in _records(root, spec)), spec.name
    stored = json.loads((root / "city.json").read_text("utf-8"))
    assert stored == json.loads(json.dumps(summary.to_dict()))
    assert stored["persons"] == 3000


# ---- reading files back, from raw bytes -------------------------------------------------


def _misencoded(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode("utf-8" if encoding == "utf-8-sig" else encoding)
    except UnicodeDecodeError:
        return True
    return False


def _text_lines(path: Path, spec: DatasetSpec) -> Iterator[tuple[str, bool]]:
    data = path.read_bytes()
    if spec.encoding == "utf-8-sig":
        assert data.startswith(b"\xef\xbb\xbf")
        data = data[3:]
    eol = spec.eol.encode()
    if not data:
        return
    assert data.endswith(eol)
    encoding = "utf-8" if spec.encoding == "utf-8-sig" else spec.encoding
    # A physical line ends at LF: a quoted field may hold a bare LF even in a CRLF file.
    for raw in data[: -len(eol)].split(b"\n"):
        raw = raw.removesuffix(b"\r")
        if _misencoded(raw, spec.encoding):
            yield raw.decode("utf-8" if encoding == "gb18030" else "gb18030"), True
        else:
            yield raw.decode(encoding), False


def _records(root: Path, spec: DatasetSpec) -> Iterator[tuple[Record, set[str]]]:
    """Each record with the structural faults seen while reading it."""
    path = root / spec.path
    if spec.format == "csv":
        lines = list(_text_lines(path, spec))
        header = next(csv.reader([lines[0][0]]))
        if len(lines) == 1:
            return  # a header and no records
        text = "\n".join(line for line, _ in lines[1:]) + "\n"
        # Physical line -> misencoded flag; records may span lines (quoted newlines).
        flags = [bad for _, bad in lines[1:]]
        reader = csv.reader(io.StringIO(text, newline=""))
        start = 0
        for fields in reader:
            end = reader.line_num
            seen = set()
            if any(flags[start:end]):
                seen.add("wrong_encoding")
            elif len(fields) < len(header):
                seen.add("truncated_row")
            elif len(fields) > len(header):
                seen.add("stray_delimiter")
            elif any('"' in f for f in fields):
                seen.add("stray_quote")
            start = end
            yield dict(zip(header, fields, strict=False)), seen
    elif spec.format == "jsonl":
        for line, bad in _text_lines(path, spec):
            if bad:
                yield {}, {"wrong_encoding"}
                continue
            try:
                yield json.loads(line), set()
            except json.JSONDecodeError:
                yield {}, {"truncated_row"}
    elif spec.format == "sqlite":
        with sqlite3.connect(path) as con:
            con.row_factory = sqlite3.Row
            for row in con.execute(f'SELECT * FROM "{spec.table}" ORDER BY rowid'):
                yield dict(row), set()
    else:
        for row in pq.read_table(path).to_pylist():
            yield row, set()


def _is_number(value: object, spec: DatasetSpec) -> bool:
    if spec.format == "csv":
        try:
            float(str(value))
        except ValueError:
            return False
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def _calendar(value: str, kind: str) -> bool:
    try:
        dt.date.fromisoformat(value if kind == "date" else value + "-01")
    except ValueError:
        return False
    return len(value) == (10 if kind == "date" else 7)


def _value_faults(
    record: Record, spec: DatasetSpec, seen_keys: set[tuple[object, ...]]
) -> set[str]:
    found = set()

    def present(name: str) -> bool:
        return record.get(name) not in (None, "")

    if any(not present(f) for f in spec.required):
        found.add("missing_required")
    for name in spec.id_fields:
        if present(name) and not residentid.is_valid(str(record[name])):
            found.add("bad_check_digit")
    for name, kind in spec.date_fields.items():
        if present(name) and not _calendar(str(record[name]), kind):
            found.add("impossible_date")
    for name, (low, high) in spec.ranges.items():
        if not present(name):
            continue
        if not _is_number(record[name], spec):
            found.add("wrong_type")
        elif not low <= float(str(record[name])) <= high:
            found.add("out_of_range")
    if found:
        return found  # uniqueness is judged among rows that pass the row checks
    key = tuple(record.get(k) for k in spec.key)
    if key in seen_keys:
        found.add("duplicate_key")  # the first occurrence wins
    seen_keys.add(key)
    return found


def _assert_manifest_matches_files(root: Path) -> None:
    manifest = [
        json.loads(line) for line in (root / "faults.jsonl").read_text("utf-8").splitlines()
    ]
    expected = {(e["dataset"], e["row"], e["kind"]) for e in manifest}
    assert len(expected) == len(manifest), "one fault per row"
    found = set()
    for spec in SPECS:
        seen_keys: set[tuple[object, ...]] = set()
        for number, (record, structural) in enumerate(_records(root, spec), start=1):
            kinds = structural or _value_faults(record, spec, seen_keys)
            found |= {(spec.name, number, kind) for kind in kinds}
    missed = sorted(expected - found)[:5]
    unexpected = sorted(found - expected)[:5]
    assert not missed, f"planted but not in the files: {missed}"
    assert not unexpected, f"faulty rows the manifest does not list: {unexpected}"


def test_manifest_is_exactly_the_faults_in_the_files(dirty_city: tuple[Path, CitySummary]) -> None:
    _assert_manifest_matches_files(dirty_city[0])


@pytest.mark.parametrize(
    ("persons", "seed", "rate"),
    [(11, 0, 0.2), (12, 1, 0.2), (40, 2, 0.2), (150, 3, 0.05), (20_000, 7, 0.01)],
)
def test_manifest_matches_at_every_size(
    tmp_path: Path, persons: int, seed: int, rate: float
) -> None:
    generate_city(tmp_path, persons=persons, seed=seed, dirty_rate=rate)
    _assert_manifest_matches_files(tmp_path)


def test_every_fault_kind_is_planted(dirty_city: tuple[Path, CitySummary]) -> None:
    root, summary = dirty_city
    assert set(summary.faults_by_kind) == set(KINDS)
    lines = (root / "faults.jsonl").read_text("utf-8").splitlines()
    manifest = [json.loads(line) for line in lines]
    for spec, ds in zip(SPECS, summary.datasets, strict=True):
        planted = {e["kind"] for e in manifest if e["dataset"] == spec.name}
        if ds.rows >= 100:  # big enough to carry one of each applicable kind
            # A dataset whose rows all decode in either encoding cannot carry that fault.
            assert set(applicable(spec)) - {"wrong_encoding"} <= planted <= set(applicable(spec))
    register = [e for e in manifest if e["dataset"] == "household_register"]
    assert "wrong_encoding" in {e["kind"] for e in register}


def test_manifest_lines_point_at_the_right_physical_line(
    dirty_city: tuple[Path, CitySummary],
) -> None:
    root, _ = dirty_city
    for entry in map(json.loads, (root / "faults.jsonl").read_text("utf-8").splitlines()):
        if entry["kind"] != "bad_check_digit" or "line" not in entry:
            continue
        spec = next(s for s in SPECS if s.name == entry["dataset"])
        lines = list(_text_lines(root / spec.path, spec))
        line, _ = lines[entry["line"] - 1]
        bad = [tok for tok in line.replace('"', ",").split(",") if len(tok) == 18]
        assert any(not residentid.is_valid(tok) for tok in bad), entry


def test_clean_city_has_no_faults(tmp_path: Path) -> None:
    summary = generate_city(tmp_path, persons=1500, seed=5)
    assert (tmp_path / "faults.jsonl").read_text("utf-8") == ""
    assert summary.faults_by_kind == {}
    for spec in SPECS:
        seen: set[tuple[object, ...]] = set()
        for record, structural in _records(tmp_path, spec):
            assert not structural and not _value_faults(record, spec, seen), (spec.name, record)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"persons": 5, "seed": 1}, "--persons"),
        ({"persons": 100, "seed": 1, "dirty_rate": 0.5}, "--dirty-rate"),
        ({"persons": 100, "seed": -1}, "--seed"),
    ],
)
def test_bad_arguments_are_refused_clearly(
    tmp_path: Path, kwargs: dict[str, float], message: str
) -> None:
    from exchange.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=message):
        generate_city(tmp_path, **kwargs)  # type: ignore[arg-type]


def _sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master ORDER BY name")]
        return [(t, c[1], c[2]) for t in tables for c in con.execute(f'PRAGMA table_info("{t}")')]


def test_file_layouts_do_not_depend_on_the_city_size(tmp_path: Path) -> None:
    generate_city(tmp_path / "tiny", persons=10, seed=1)  # empty tables, no faults
    generate_city(tmp_path / "big", persons=3000, seed=1)
    sqlite = "civil_affairs/civil_affairs.sqlite"
    assert _sqlite_schema(tmp_path / "tiny" / sqlite) == _sqlite_schema(tmp_path / "big" / sqlite)
    for parquet in ("hrss/contributions.parquet", "hrss/pensions.parquet"):
        tiny = pq.read_schema(tmp_path / "tiny" / parquet)
        assert tiny.equals(pq.read_schema(tmp_path / "big" / parquet))


def _spec(name: str) -> DatasetSpec:
    return next(s for s in SPECS if s.name == name)


def test_the_summary_counts_the_dead_found_in_the_files(tmp_path: Path) -> None:
    summary = generate_city(tmp_path, persons=3000, seed=2)
    changes = {r["old_id"]: r["new_id"] for r, _ in _records(tmp_path, _spec("id_changes"))}
    dead: set[str] = set()
    for name in ("deaths", "cremations"):
        for record, _ in _records(tmp_path, _spec(name)):
            dead.add(str(changes.get(record["person_id"], record["person_id"])))
    register = {str(r["id_number"]) for r, _ in _records(tmp_path, _spec("household_register"))}
    assert dead <= register
    assert summary.deceased == len(dead) > 0
    assert summary.alive == len(register) - len(dead)
