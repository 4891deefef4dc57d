"""The vectorised validator gives jsonschema's verdicts, row by row.

Hypothesis draws property schemas from the keywords the validator compiles (and a few it
does not, to exercise the fallback), columns of values of every JSON kind, typed or as CSV
text, and compares each row's verdict with `Draft202012Validator.is_valid` on the record
the row stands for.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import JSON, TEXT, batch, column_from_values, mark, value_kind
from exchange import residentid
from exchange.contracts import contract_from_schema, format_checker, load_contract
from exchange.validation import BatchValidator

PATTERNS = [
    "^[0-9]{9}$",
    "^[A-Z][0-9]{3}$",
    "^[1-8][0-9]{5}$",  # fixed-width ASCII patterns are checked on the bytes
    "^ab-[0-9X]{2}z$",
    "^[\\u4e00-\\u9fff]{2,4}$",
    "a|b",
    "^x",
    "y$",
    "^[0-9]{4}-(0[1-9]|1[0-2])$",
    "\\d+",  # Python reads \\d as any Unicode digit: checked by Python, not RE2
    "^(?!x)",  # lookahead: RE2 cannot, Python can
]


def _number_bounds(draw: st.DrawFn, schema: dict[str, Any], integral: bool) -> None:
    number = (
        st.integers(-50, 50) if integral else st.one_of(st.integers(-50, 50), st.floats(-50, 50))
    )
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if draw(st.booleans()):
            schema[keyword] = draw(number)


@st.composite
def property_schema(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["string", "integer", "number", "boolean", "enum", "union", "other"])
    )
    schema: dict[str, Any] = {}
    if kind == "string":
        schema["type"] = draw(st.sampled_from(["string", ["string", "null"]]))
        if draw(st.booleans()):
            schema["minLength"] = draw(st.integers(0, 4))
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(0, 12))
        if draw(st.booleans()):
            schema["pattern"] = draw(st.sampled_from(PATTERNS))
        if draw(st.booleans()):
            schema["format"] = draw(st.sampled_from(["date", "gb11643", "email"]))
    elif kind in ("integer", "number"):
        schema["type"] = kind
        _number_bounds(draw, schema, integral=kind == "integer")
    elif kind == "boolean":
        schema["type"] = "boolean"
    elif kind == "enum":
        texts = st.sampled_from(["男", "女", "a", "1"])
        member = st.one_of(texts, st.integers(-3, 3), st.booleans())
        unique = st.lists(member, min_size=1, max_size=4, unique_by=lambda v: (type(v), v))
        schema["enum"] = draw(unique)
        if draw(st.booleans()):
            schema["const"] = schema.pop("enum")[0]
    elif kind == "union":
        schema["type"] = draw(
            st.sampled_from([["integer", "string"], ["number", "boolean"], ["string", "null"]])
        )
        _number_bounds(draw, schema, integral=False)
        if draw(st.booleans()):
            schema["maxLength"] = draw(st.integers(0, 5))
    else:  # keywords the validator does not compile: jsonschema judges them
        schema["type"] = "string"
        schema["not"] = {"const": "x"}
    return schema


def _ids() -> st.SearchStrategy[str]:
    first17 = st.from_regex(
        r"\A[1-6][0-9]{5}(19[0-9]{2}|20[01][0-9])(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])[0-9]{3}\Z"
    )
    good = first17.map(lambda f: f + residentid.check_character(f))
    return st.one_of(good, good.map(lambda n: n[:17] + ("0" if n[17] != "0" else "1")))


texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "123456789",
            "A123",
            "张三",
            "x\n",
            "y\n",
            "١٢٣",
        ]
    ),
    _ids(),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
)
json_values = st.one_of(
    st.none(),
    texts,
    st.integers(-100, 100),
    st.integers(-(2**70), 2**70),
    st.floats(-100, 100, allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
csv_texts = st.one_of(
    st.none(),
    texts,
    st.sampled_from(
        ["12", "-3", "3.0", "-0.5", "1e3", "007", "+1", "1.", "true", "false", "True", "0"]
    ),
    st.integers(-100, 100).map(str),
    st.floats(-100, 100, allow_nan=False).map(repr),
)


def near(sub: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values at and around the schema's edges, where a wrong comparison shows."""
    edges: list[Any] = []
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if keyword in sub:
            b = sub[keyword]
            edges += [
                b,
                b - 1,
                b + 1,
                float(b),
                b - 0.5,
                b + 0.5,
                int(b) if float(b).is_integer() else b,
            ]
    for option in sub.get("enum", []) + ([sub["const"]] if "const" in sub else []):
        edges += [option, str(option)]
        if isinstance(option, bool):
            edges += [int(option)]
        elif isinstance(option, int):
            edges += [float(option), option + 1, bool(option) if option in (0, 1) else option]
    for keyword in ("minLength", "maxLength"):
        if keyword in sub:
            edges += ["字" * max(sub[keyword] + d, 0) for d in (-1, 0, 1)]
            edges += ["a" * max(sub[keyword] + d, 0) for d in (-1, 0, 1)]
    if "pattern" in sub:
        # Strings that match or nearly match, each also with a final newline (Python's `$`
        # matches before one) and with non-ASCII digits (Python's \\d matches them).
        close = [
            "123456789",
            "12345678",
            "A123",
            "a123",
            "张三",
            "张三丰李四",
            "a",
            "b",
            "xa",
            "ay",
            "2024-12",
            "2024-13",
            "440106",
            "940106",
            "44010６",
            "ab-1Xz",
            "ab-1xz",
            "١٢٣",
            "x",
            "y",
            "",
        ]
        edges += close + [c + "\n" for c in close] + ["\n" + c for c in close]
    if "format" in sub:
        edges += [
            "2024-02-29",
            "2023-02-29",
            "2024-1-01",
            "11010519491231002X",
            "110105194912310021",
            "11010519491231002x",
            "a@b.cn",
            "not-an-email",
        ]
    plain = [e for e in edges if e is not None]
    return st.one_of(st.sampled_from(plain), json_values) if plain else json_values


def near_text(sub: dict[str, Any]) -> st.SearchStrategy[str | None]:
    """CSV text at and around the schema's edges."""
    return (
        near(sub).map(lambda v: v if v is None or isinstance(v, str) else json.dumps(v)) | csv_texts
    )


def _contract(sub: dict[str, Any], required: bool, closed: bool) -> Any:
    schema = {
        "type": "object",
        "properties": {"f": sub},
        "required": ["f"] if required else [],
        "additionalProperties": not closed,
        "x-onceonly": {"dataset": "t", "version": "1.0.0", "department": "d", "key": ["f"]},
    }
    return contract_from_schema(schema)


def _text_reading(text: str, sub: dict[str, Any]) -> Any:
    """The documented reading of untyped CSV text, written out independently."""
    declared = sub.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    if types & {"integer", "number"} and re.fullmatch(
        r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", text
    ):
        return json.loads(text)
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    return text


def _storable(sub: dict[str, Any], value: Any) -> bool:
    """The one rule beyond JSON Schema: a number must fit the column it is stored in."""
    declared = sub.get("type", [])
    kinds = ({declared} if isinstance(declared, str) else set(declared)) - {"null"}
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    if kinds == {"integer"}:
        return -(2**63) <= value < 2**63
    if kinds in ({"number"}, {"integer", "number"}) and isinstance(value, int):
        return abs(value) <= sys.float_info.max
    return True


def _expected(contract: Any, sub: dict[str, Any], records: list[dict[str, Any]]) -> list[bool]:
    reference = contract.validator()
    return [reference.is_valid(r) and _storable(sub, r.get("f")) for r in records]


def _verdicts(contract: Any, columns: dict[str, tuple[pa.Field, pa.Array]]) -> list[bool]:
    n = len(next(iter(columns.values()))[1])
    rows = pa.array(range(1, n + 1), pa.int64())
    fields = [f for f, _ in columns.values()]
    arrays = [a for _, a in columns.values()]
    part = batch(rows, pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), fields, arrays)
    result = BatchValidator(contract).validate(part)
    rejected = set(result.violations.column("row").to_pylist())
    assert result.accepted.num_rows == n - len(rejected)
    return [r not in rejected for r in range(1, n + 1)]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    property_schema(),
    st.data(),
    st.booleans(),
    st.booleans(),
    st.lists(st.one_of(st.none(), st.integers()), min_size=25, max_size=25),
)
def test_typed_columns_agree_with_jsonschema(
    sub: dict[str, Any], data: st.DataObject, required: bool, closed: bool, extra: list[Any]
) -> None:
    # One kind of value per column half the time, so the typed (not JSON) path is tested too.
    one_kind = data.draw(st.booleans())
    values = data.draw(st.lists(near(sub), min_size=1, max_size=25))
    if one_kind:
        first = next((type(v) for v in values if v is not None), str)
        values = [v if v is None or type(v) is first else None for v in values]
    contract = _contract(sub, required, closed)
    extra = extra[: len(values)]
    columns = {"f": column_from_values("f", values), "g": column_from_values("g", extra)}
    records = [
        {k: v for k, v in (("f", f), ("g", g)) if v is not None}
        for f, g in zip(values, extra, strict=True)
    ]
    assert _verdicts(contract, columns) == _expected(contract, sub, records)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(property_schema(), st.data(), st.booleans())
def test_csv_text_columns_agree_with_jsonschema(
    sub: dict[str, Any], data: st.DataObject, required: bool
) -> None:
    values = data.draw(st.lists(near_text(sub), min_size=1, max_size=25))
    contract = _contract(sub, required, closed=True)
    column = mark(pa.field("f", pa.string()), TEXT), pa.array(values, pa.string())
    records = [{} if v is None else {"f": _text_reading(v, sub)} for v in values]
    assert _verdicts(contract, {"f": column}) == _expected(contract, sub, records)


def test_mixed_values_arrive_as_json_and_keep_their_types() -> None:
    field, array = column_from_values("f", [1, "约3105", None, 2.5])
    assert value_kind(field) == JSON
    contract = _contract({"type": "integer", "maximum": 10}, required=True, closed=True)
    assert _verdicts(contract, {"f": (field, array)}) == [True, False, False, False]


def test_violations_name_the_row_field_keyword_and_value() -> None:
    contract = _contract({"type": "integer", "maximum": 10}, required=True, closed=True)
    column = (
        mark(pa.field("f", pa.string()), TEXT),
        pa.array(["3", "约3105", None, "99"], pa.string()),
    )
    rows = pa.array([7, 8, 9, 10], pa.int64())
    part = batch(rows, pa.nulls(4, pa.string()), pa.nulls(4, pa.string()), [column[0]], [column[1]])
    result = BatchValidator(contract).validate(part)
    found = [(v["row"], v["field"], v["keyword"]) for v in result.violations.to_pylist()]
    assert found == [(8, "f", "type"), (9, "f", "required"), (10, "f", "maximum")]
    messages = result.violations.column("message").to_pylist()
    assert '"约3105"' in messages[0] and "99" in messages[2]
    assert result.accepted.column("f").to_pylist() == [3]  # typed by the contract
    assert result.accepted.column("_row").to_pylist() == [7]


def test_unreadable_records_are_rejected_with_the_connectors_reason() -> None:
    contract = _contract({"type": "string"}, required=True, closed=True)
    field = mark(pa.field("f", pa.string()), TEXT)
    problems = pa.array([None, "encoding: bytes that are not valid gb18030"], pa.string())
    raw = pa.array([None, "\ufffd\ufffd"], pa.string())
    part = batch(pa.array([1, 2], pa.int64()), problems, raw, [field], [pa.array(["ok", None])])
    result = BatchValidator(contract).validate(part)
    assert result.violations.to_pylist() == [
        {
            "row": 2,
            "field": None,
            "keyword": "encoding",
            "message": problems[1].as_py(),
            "raw": "\ufffd\ufffd",
        }
    ]
    assert result.rows_rejected == 1


@pytest.mark.parametrize(
    "version_file", sorted(Path("schemas/datasets").glob("*/1.0.0.json")), ids=str
)
def test_contract_verdicts_on_the_dirty_city(version_file: Path, dirty_city: Any) -> None:
    """On every real contract and source: same verdicts as jsonschema, record by record."""
    from connectors import load_source

    root, _ = dirty_city
    dataset = version_file.parent.name
    source = next(Path("connectors/sources").glob(f"*.{dataset}.toml"))
    contract = load_contract(dataset, "1.0.0")
    reference = contract.validator()
    validator = BatchValidator(contract)
    for part in load_source(source).open(city=root).read():
        result = validator.validate(part)
        rejected = set(result.violations.column("row").to_pylist())
        table = pa.Table.from_batches([part])
        for record in table.to_pylist():
            if record["_problem"] is not None:
                assert record["_row"] in rejected
                continue
            values = {}
            for field in table.schema:
                name, value = field.name, record[field.name]
                if name.startswith("_") or value is None:
                    continue
                if value_kind(field) == TEXT:
                    value = _text_reading(value, contract.properties.get(name, {}))
                elif value_kind(field) == JSON:
                    value = json.loads(value)
                values[name] = value
            assert reference.is_valid(values) == (record["_row"] not in rejected), record


def test_format_checker_knows_resident_ids() -> None:
    checker = format_checker()
    assert checker.conforms("11010519491231002X", "gb11643")
    assert not checker.conforms("110105194912310021", "gb11643")
    assert checker.conforms(12, "gb11643")  # formats judge strings only


def _agree(sub: dict[str, Any], values: list[Any]) -> None:
    contract = _contract(sub, required=False, closed=True)
    expected = _expected(contract, sub, [{} if v is None else {"f": v} for v in values])
    assert _verdicts(contract, {"f": column_from_values("f", values)}) == expected


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=150)
@given(data=st.data())
def test_patterns_agree_with_python_re(pattern: str, data: st.DataObject) -> None:
    """Strings that match under Python's `re`, and the same with a final newline or prefix."""
    matching = st.from_regex(pattern)
    values = data.draw(
        st.lists(
            st.one_of(
                matching,
                matching.map(lambda s: s + "\n"),
                matching.map(lambda s: "\n" + s),
                st.text(max_size=6),
                st.sampled_from(["١٢٣", "٣", "x", "y"]),
            ),
            min_size=1,
            max_size=20,
        )
    )
    _agree({"type": "string", "pattern": pattern}, values)
    text = mark(pa.field("f", pa.string()), TEXT), pa.array(values, pa.string())
    contract = _contract({"type": "string", "pattern": pattern}, required=False, closed=True)
    assert _verdicts(contract, {"f": text}) == [
        contract.validator().is_valid({"f": v}) for v in values
    ]


@settings(max_examples=300)
@given(
    st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
    st.one_of(st.integers(-10, 10), st.floats(-10, 10, allow_nan=False), st.integers(2**62, 2**64)),
    st.data(),
)
def test_bounds_agree_with_jsonschema(keyword: str, limit: float, data: st.DataObject) -> None:
    """Values exactly at, just inside and just outside a bound, also beyond int64."""
    around = [limit, limit - 1, limit + 1, float(limit), limit - 0.5, limit + 0.5]
    if isinstance(limit, int):
        around += [limit + 2**63, -(2**63), 2**63 - 1]
    values = data.draw(
        st.lists(
            st.sampled_from(around) | st.integers() | st.floats(allow_nan=False),
            min_size=1,
            max_size=20,
        )
    )
    one_kind = data.draw(st.sampled_from([int, float, None]))
    if one_kind is not None:
        values = [v for v in values if type(v) is one_kind] or [one_kind(0)]
    _agree({"type": "number", keyword: limit}, values)


@settings(max_examples=200)
@given(st.sampled_from(["date", "gb11643"]), st.data())
def test_formats_agree_with_jsonschema(fmt: str, data: st.DataObject) -> None:
    dates = st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
    values = data.draw(
        st.lists(
            st.one_of(
                dates, _ids(), dates.map(lambda d: d + "\n"), st.text(max_size=20), st.integers()
            ),
            min_size=1,
            max_size=20,
        )
    )
    _agree({"format": fmt}, values)


def test_numbers_the_column_cannot_hold_are_refused_not_stored_wrong() -> None:
    """JSON Schema calls 1e300 and 2**70 integers; an int64 column cannot hold them."""
    contract = _contract({"type": "integer"}, required=True, closed=True)
    column = column_from_values("f", [1e300, 2**70, 5, -(2**63)])
    assert contract.validator().is_valid({"f": 1e300})  # jsonschema itself accepts it
    part = batch(pa.array([1, 2, 3, 4], pa.int64()), pa.nulls(4, pa.string()),
                 pa.nulls(4, pa.string()), [column[0]], [column[1]])  # fmt: skip
    result = BatchValidator(contract).validate(part)
    assert [(v["row"], v["keyword"]) for v in result.violations.to_pylist()] == [
        (1, "storage"),
        (2, "storage"),
    ]
    assert result.accepted.column("f").to_pylist() == [5, -(2**63)]
