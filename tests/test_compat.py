"""Schema evolution: the mode matrix, transitivity, every reason, the facts hook, and a
property test holding "compatible" verdicts to real JSON Schema validation."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from exchange.compat import RECORD, IncompatibleSchema, Mode, check
from exchange.errors import ExchangeError, InvalidArgument
from exchange.paths import schemas_dir

Schema = dict[str, Any]
Edit = Callable[[Schema], object]
B, F = "BACKWARD", "FORWARD"

BASE: Schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "x-onceonly": {
        "dataset": "people",
        "version": "1.0.0",
        "department": "test",
        "key": ["id"],
        "personal": ["id"],
        "compatibility": "BACKWARD",
    },
    "properties": {
        "id": {"type": "string", "description": "person number"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "sex": {"enum": ["M", "F"]},
        "note": {"type": ["string", "null"], "maxLength": 200},
        "born": {"type": "string", "format": "date"},
    },
    "required": ["id", "age", "sex"],
    "additionalProperties": False,
}


def version(schema: Schema, number: str) -> Schema:
    """A deep copy of `schema` registered as version `number`."""
    out = copy.deepcopy(schema)
    out["x-onceonly"]["version"] = number
    return out


def edited(edit: Edit, number: str = "1.1.0") -> Schema:
    """BASE as a new version with one edit applied."""
    out = version(BASE, number)
    edit(out)
    return out


def props(schema: Schema) -> dict[str, Any]:
    return schema["properties"]  # type: ignore[no-any-return]


def _keep(schema: Schema) -> None:
    """No edit."""


# The semantics by hand: which directions each change breaks, on which field, and with
# which keyword. BACKWARD breaks when an old record may fail the new schema; FORWARD when
# a new record may fail the old one. Each row: (edit making the old version from BASE,
# edit making the new version from the old one, field, {direction: keyword}).
CHANGES: dict[str, tuple[Edit, Edit, str, dict[str, str]]] = {
    "version bump only": (_keep, _keep, "", {}),
    "description changed": (
        _keep,
        lambda s: props(s)["id"].update(description="the person's number"),
        "",
        {},
    ),
    "add optional field": (
        _keep,
        lambda s: props(s).update(email={"type": "string"}),
        "email",
        {F: "properties"},  # old schema is closed: new records carrying it fail there
    ),
    "add required field": (
        _keep,
        lambda s: (props(s).update(email={"type": "string"}), s["required"].append("email")),
        "email",
        {B: "required", F: "properties"},
    ),
    "remove optional field": (
        _keep,
        lambda s: props(s).pop("note"),
        "note",
        {B: "properties"},  # new schema is closed: old records carrying it fail
    ),
    "remove required field": (
        _keep,
        lambda s: (props(s).pop("age"), s["required"].remove("age")),
        "age",
        {B: "properties", F: "required"},
    ),
    "widen type": (_keep, lambda s: props(s)["age"].update(type="number"), "age", {F: "type"}),
    "narrow type": (_keep, lambda s: props(s)["note"].update(type="string"), "note", {B: "type"}),
    "widen enum": (
        _keep,
        lambda s: props(s)["sex"].update(enum=["M", "F", "X"]),
        "sex",
        {F: "enum"},
    ),
    "narrow enum": (_keep, lambda s: props(s)["sex"].update(enum=["F"]), "sex", {B: "enum"}),
    "raise minimum": (_keep, lambda s: props(s)["age"].update(minimum=18), "age", {B: "minimum"}),
    "lower maximum": (_keep, lambda s: props(s)["age"].update(maximum=100), "age", {B: "maximum"}),
    "add pattern": (
        _keep,
        lambda s: props(s)["id"].update(pattern="^[0-9]+$"),
        "id",
        {B: "pattern"},
    ),
    "change format": (
        _keep,
        lambda s: props(s)["born"].update(format="date-time"),
        "born",
        {B: "format", F: "format"},  # cannot be decided, so breaking both ways
    ),
    "open additionalProperties": (
        _keep,
        lambda s: s.update(additionalProperties=True),
        RECORD,
        {F: "additionalProperties"},
    ),
    "close additionalProperties": (
        lambda s: s.update(additionalProperties=True),
        lambda s: s.update(additionalProperties=False),
        RECORD,
        {B: "additionalProperties"},
    ),
}

# Which directions each mode requires; NONE requires none.
MODE_DIRECTIONS = {
    Mode.NONE: set(),
    Mode.BACKWARD: {B},
    Mode.FORWARD: {F},
    Mode.FULL: {B, F},
    Mode.BACKWARD_TRANSITIVE: {B},
    Mode.FORWARD_TRANSITIVE: {F},
    Mode.FULL_TRANSITIVE: {B, F},
}


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("change", list(CHANGES))
def test_mode_matrix(change: str, mode: Mode) -> None:
    edit_old, edit_new, name, breaks = CHANGES[change]
    old = version(BASE, "1.0.0")
    edit_old(old)
    new = version(old, "1.1.0")  # the new version starts from the old one, then changes
    edit_new(new)

    report = check(new, [old], mode)

    expected = {(name, d, kw) for d, kw in breaks.items() if d in MODE_DIRECTIONS[mode]}
    assert {(p.field, p.direction, p.keyword) for p in report.problems} == expected
    assert report.compatible is (not expected)
    subject = "record:" if name == RECORD else f"field '{name}':"
    for problem in report.problems:
        assert problem.against == "1.0.0"
        assert problem.reason.startswith(subject)
        assert problem.reason.endswith(f"({problem.direction})")
        assert "1.0.0" in problem.reason


def test_reason_reads_as_documented() -> None:
    new = edited(lambda s: props(s)["age"].update(maximum=100))
    report = check(new, [BASE], "BACKWARD")
    assert report.lines() == [
        "field 'age': maximum lowered from 120 to 100; records valid under 1.0.0 may be "
        "rejected (BACKWARD)"
    ]


def test_forward_reason_names_both_versions() -> None:
    new = edited(lambda s: props(s)["age"].update(maximum=150))
    (problem,) = check(new, [BASE], "FORWARD").problems
    assert "maximum raised from 120 to 150" in problem.reason
    assert "records valid under 1.1.0 may be invalid under 1.0.0" in problem.reason


def test_transitive_compares_against_every_earlier_version() -> None:
    v1 = edited(lambda s: props(s).update(nickname={"type": "string"}), "1.0.0")
    v2 = version(BASE, "2.0.0")  # dropped nickname: fine for FORWARD, its mode back then
    v3 = edited(lambda s: props(s).update(nickname={"type": "integer"}), "3.0.0")
    assert check(v2, [v1], "FORWARD").compatible
    assert not check(v2, [v1], "BACKWARD").compatible

    latest_only = check(v3, [v1, v2], "BACKWARD")
    assert latest_only.compatible
    assert latest_only.checked_against == ("2.0.0",)

    every = check(v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert not every.compatible
    assert every.checked_against == ("1.0.0", "2.0.0")
    assert [(p.field, p.against, p.keyword) for p in every.problems] == [
        ("nickname", "1.0.0", "type")
    ]
    assert 'type changed from "string" to "integer"' in every.problems[0].reason


def test_every_problem_is_reported() -> None:
    def three(s: Schema) -> None:
        props(s)["age"]["minimum"] = 18
        props(s)["sex"]["enum"] = ["F"]
        s["required"].append("note")

    report = check(edited(three), [BASE], "BACKWARD")
    assert [(p.field, p.keyword) for p in report.problems] == [
        ("age", "minimum"),
        ("sex", "enum"),
        ("note", "required"),
    ]
    error = IncompatibleSchema(report)
    assert isinstance(error, ExchangeError)
    assert "\n" not in str(error)  # the CLI prints one line
    assert str(error).startswith("people 1.1.0 refused under BACKWARD: 3 problems; first: ")
    assert str(error).endswith(report.lines()[0])
    assert error.diagnostics().splitlines() == report.lines()


def test_full_reports_both_directions_of_each_change() -> None:
    def two(s: Schema) -> None:
        props(s)["age"]["minimum"] = 18  # breaks BACKWARD
        props(s)["sex"]["enum"] = ["M", "F", "X"]  # breaks FORWARD

    report = check(edited(two), [BASE], "FULL")
    assert [(p.field, p.direction) for p in report.problems] == [("age", B), ("sex", F)]


@pytest.mark.parametrize(
    ("old", "new", "breaks"),
    [
        ({}, {"type": "string"}, {B}),
        ({"type": "string"}, {}, {F}),
        ({"type": "integer"}, {"type": ["number", "null"]}, {F}),
        ({"type": ["string", "integer"], "enum": ["a"]}, {"type": "string", "enum": ["a"]}, set()),
        ({"type": "string", "enum": ["a", 1]}, {"type": "string", "enum": ["a", 1]}, set()),
        ({"minimum": 5}, {"exclusiveMinimum": 5}, {B}),
        ({"exclusiveMinimum": 5}, {"minimum": 5}, {F}),
        ({"maximum": 5}, {"exclusiveMaximum": 5}, {B}),
        ({"exclusiveMaximum": 5}, {"maximum": 6}, {F}),
        ({"exclusiveMaximum": 5}, {"exclusiveMaximum": 5, "maximum": 9}, set()),
        ({}, {"exclusiveMinimum": 0}, {B}),
        ({"minLength": 2}, {"minLength": 1}, {F}),
        ({"maxLength": 2}, {"maxLength": 1}, {B}),
        ({}, {"minLength": 0}, set()),  # the default: no record changes
        ({"pattern": "^a"}, {}, {F}),
        ({"pattern": "^a"}, {"pattern": "^(a)"}, {B, F}),  # same language, still undecided
        ({"const": "a"}, {"enum": ["a", "b"]}, {F}),
        ({"enum": [1, 2]}, {"enum": [2.0, 1.0]}, set()),  # JSON equality: 1 == 1.0
        ({"enum": [1]}, {"enum": [True]}, {B, F}),  # ... but true is not 1
        ({"multipleOf": 2}, {"multipleOf": 4}, {B, F}),  # outside the subset: undecided
    ],
)
def test_keyword_directions(old: Schema, new: Schema, breaks: set[str]) -> None:
    before = edited(lambda s: props(s).update(x=old), "1.0.0")
    after = edited(lambda s: props(s).update(x=new))
    report = check(after, [before], "FULL")
    assert {p.direction for p in report.problems} == breaks
    assert all(p.field == "x" for p in report.problems)


def test_typing_an_untyped_enum_is_compatible_when_the_values_fit() -> None:
    as_string = edited(lambda s: props(s)["sex"].update(type="string"))
    assert check(as_string, [BASE], "FULL").compatible
    as_integer = edited(lambda s: props(s)["sex"].update(type="integer"))
    problems = check(as_integer, [BASE], "FULL").problems
    assert [(p.field, p.direction, p.keyword) for p in problems] == [("sex", B, "type")]


def test_entangled_record_keywords_are_never_waved_through() -> None:
    new = edited(lambda s: s.update(patternProperties={"^x_": {"type": "string"}}))
    report = check(new, [BASE], "FULL")
    assert {(p.field, p.keyword) for p in report.problems} == {(RECORD, "patternProperties")}
    assert {p.direction for p in report.problems} == {B, F}


def test_dependents_name_the_facts_of_broken_fields_only() -> None:
    reads = {"age": ["adult", "age_band", "adult"], "sex": ["sex_is"], "id": ["exists"]}
    asked: list[tuple[str, str]] = []

    def dependents(dataset: str, name: str) -> list[str]:
        asked.append((dataset, name))
        return reads.get(name, [])

    new = edited(lambda s: props(s)["age"].update(minimum=18))
    report = check(new, [BASE], "BACKWARD", dependents=dependents)
    assert report.breaking_facts == {"age": ("adult", "age_band")}
    assert asked == [("people", "age")]
    assert report.lines()[0].endswith("; facts affected: adult, age_band")

    # A problem without readers lists nothing; a compatible change asks nothing.
    asked.clear()
    no_readers = edited(lambda s: props(s)["born"].update(format="date-time"))
    assert check(no_readers, [BASE], "FULL", dependents=dependents).breaking_facts == {}
    assert check(edited(_keep), [BASE], "FULL", dependents=dependents).breaking_facts == {}
    assert asked == [("people", "born")]


def test_a_record_level_break_reaches_every_reading_fact() -> None:
    reads = {"age": ["adult"], "sex": ["sex_is"], "id": ["exists", "adult"]}
    old = version(BASE, "1.0.0")
    old["additionalProperties"] = True
    report = check(edited(_keep), [old], "BACKWARD", dependents=lambda _d, f: reads.get(f, []))
    assert report.breaking_facts == {RECORD: ("adult", "exists", "sex_is")}


def test_without_a_hook_no_facts_are_listed() -> None:
    report = check(edited(lambda s: props(s)["age"].update(minimum=18)), [BASE], "BACKWARD")
    assert report.breaking_facts == {}
    assert not report.compatible


# Semantic Versioning 2.0.0, section 11: the precedence example, lowest first.
SEMVER_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.9.0",
    "1.10.0",
    "2.0.0",
]


@pytest.mark.parametrize(("lower", "higher"), list(itertools.pairwise(SEMVER_ORDER)))
def test_versions_must_increase(lower: str, higher: str) -> None:
    assert check(version(BASE, higher), [version(BASE, lower)], "NONE").compatible
    backwards = check(version(BASE, lower), [version(BASE, higher)], "NONE")
    assert [(p.field, p.against, p.direction, p.keyword) for p in backwards.problems] == [
        (RECORD, higher, "REGISTRATION", "x-onceonly.version")
    ]


@pytest.mark.parametrize("same", ["1.0.0", "1.0.0+build.7"])
def test_an_equal_version_is_refused(same: str) -> None:
    report = check(version(BASE, same), [version(BASE, "1.0.0")], "FULL")
    assert [p.keyword for p in report.problems] == ["x-onceonly.version"]


def test_the_version_must_exceed_every_earlier_one() -> None:
    earlier = [version(BASE, "1.0.0"), version(BASE, "2.0.0")]
    report = check(version(BASE, "1.5.0"), earlier, "BACKWARD")
    assert [(p.against, p.keyword) for p in report.problems] == [("2.0.0", "x-onceonly.version")]
    assert "1.5.0 is not greater than earlier version 2.0.0" in report.problems[0].reason


def test_a_version_that_is_not_semver_is_refused() -> None:
    report = check(version(BASE, "2"), [BASE], "NONE")
    assert [p.keyword for p in report.problems] == ["x-onceonly.version"]
    assert "not a semantic version" in report.problems[0].reason


def test_the_dataset_must_match() -> None:
    new = edited(lambda s: s["x-onceonly"].update(dataset="deaths"))
    report = check(new, [BASE], "BACKWARD")
    assert [(p.against, p.direction, p.keyword) for p in report.problems] == [
        ("1.0.0", "REGISTRATION", "x-onceonly.dataset")
    ]
    assert "'deaths' does not match 'people'" in report.problems[0].reason


def test_the_first_version_has_nothing_to_break() -> None:
    report = check(BASE, [], "FULL_TRANSITIVE")
    assert report.compatible
    assert report.checked_against == ()


def test_modes_are_read_by_name() -> None:
    assert check(edited(_keep), [BASE], "full_transitive").mode is Mode.FULL_TRANSITIVE
    with pytest.raises(InvalidArgument, match="SIDEWAYS"):
        check(edited(_keep), [BASE], "SIDEWAYS")


def test_report_is_json_and_inputs_are_untouched() -> None:
    new = edited(lambda s: props(s)["age"].update(minimum=18))
    snapshot = copy.deepcopy((new, BASE))
    report = check(new, [BASE], Mode.FULL, dependents=lambda _d, _f: ["f1"])
    assert (new, BASE) == snapshot
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "dataset": "people",
        "version": "1.1.0",
        "mode": "FULL",
        "compatible": False,
        "checked_against": ["1.0.0"],
        "problems": [
            {
                "field": "age",
                "against": "1.0.0",
                "direction": "BACKWARD",
                "keyword": "minimum",
                "reason": report.problems[0].reason,
            }
        ],
        "breaking_facts": {"age": ["f1"]},
    }


CONTRACTS = sorted((schemas_dir() / "datasets").glob("*/*.json"))


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_contracts_evolve_as_expected(path: Path) -> None:
    old = json.loads(path.read_text(encoding="utf-8"))
    number = old["x-onceonly"]["version"]
    major, minor, _patch = (int(part) for part in number.split("."))
    same = version(old, f"{major}.{minor + 1}.0")
    assert check(same, [old], "FULL_TRANSITIVE").compatible

    added = version(old, f"{major}.{minor + 1}.0")
    added["properties"]["remark"] = {"type": "string"}
    assert check(added, [old], "BACKWARD").compatible
    assert [p.field for p in check(added, [old], "FORWARD").problems] == ["remark"]


# --- soundness: "compatible" must never admit a counterexample ------------------------------

FIELDS = ("a", "b", "c")
NUMBERS = [-1, 0, 2, 2.5, 5]
TYPES = ["null", "boolean", "integer", "number", "string"]
ENUM_POOL = [0, 1, 2, 5, 2.5, "a", "ab", None, True]
KEYWORDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(
        st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), min_size=1, unique=True)
    ),
    "enum": st.lists(st.sampled_from(ENUM_POOL), min_size=1, max_size=4, unique_by=repr),
    "const": st.sampled_from([1, 2.5, "a", None]),
    "minimum": st.sampled_from(NUMBERS),
    "maximum": st.sampled_from(NUMBERS),
    "exclusiveMinimum": st.sampled_from(NUMBERS),
    "exclusiveMaximum": st.sampled_from(NUMBERS),
    "minLength": st.integers(0, 4),
    "maxLength": st.integers(0, 4),
    "pattern": st.sampled_from(["^a", "b$", "^a*$"]),
}
PAIRED = {
    "minimum": "exclusiveMinimum",
    "exclusiveMinimum": "minimum",
    "maximum": "exclusiveMaximum",
    "exclusiveMaximum": "maximum",
}
# Each soundness run focuses on one family of keywords: Hypothesis explores a small space
# far better than a wide one, where a run can miss a whole family by chance.
FOCUS = {
    "numbers": ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
    "values": ("type", "enum", "const"),
    "strings": ("type", "minLength", "maxLength", "pattern"),
    "record": ("type", "maximum"),
}
RARELY = st.sampled_from([True, False, False, False])
# None: the keyword is absent. False is the common case: every contract has it.
ADDITIONAL = st.sampled_from([None, True, False, False])


@st.composite
def field_schemas(draw: st.DrawFn, keywords: tuple[str, ...] = tuple(KEYWORDS)) -> Schema:
    return {k: draw(KEYWORDS[k]) for k in keywords if draw(st.booleans())}


@st.composite
def nudged(draw: st.DrawFn, field: Schema, keywords: tuple[str, ...]) -> Schema:
    """The field schema with one keyword moved a small step: where near misses hide."""
    out = copy.deepcopy(field)
    keyword = draw(st.sampled_from([*sorted(out), "(another)"]))
    if keyword == "(another)":
        keyword = draw(st.sampled_from(keywords))
        out[keyword] = draw(KEYWORDS[keyword])
        return out
    value = out.pop(keyword)
    step = draw(st.sampled_from(["drop", "nudge", "nudge", "nudge"]))
    if step == "drop":
        return out
    if keyword in ("type", "enum"):
        items = [value] if isinstance(value, str) else list(value)
        pool = TYPES if keyword == "type" else ENUM_POOL
        unused = [v for v in pool if repr(v) not in map(repr, items)]
        way = draw(st.sampled_from(["narrow", "widen", "swap"]))
        if way != "widen" and len(items) > 1:
            items.remove(draw(st.sampled_from(items)))
        if way != "narrow" and unused:
            items.append(draw(st.sampled_from(unused)))
        out[keyword] = items[0] if keyword == "type" and len(items) == 1 else items
    elif keyword in PAIRED:
        if draw(st.booleans()):
            out[PAIRED[keyword]] = value  # the same number, the other exclusivity
        else:
            out[keyword] = value + draw(st.sampled_from([-1, -0.5, 0.5, 1]))
    elif keyword in ("minLength", "maxLength"):
        out[keyword] = max(0, value + draw(st.sampled_from([-1, 1])))
    else:
        out[keyword] = draw(KEYWORDS[keyword])
    return out


def record_schema(number: str, properties: Schema, required: list[str], extra: Any) -> Schema:
    schema: Schema = {
        "type": "object",
        "x-onceonly": {"dataset": "gen", "version": number},
        "properties": properties,
        "required": required,
    }
    if extra is not None:
        schema["additionalProperties"] = extra
    return schema


@st.composite
def record_schemas(
    draw: st.DrawFn, keywords: tuple[str, ...] = tuple(KEYWORDS), every_field: bool = False
) -> Schema:
    listed = st.just(True) if every_field else st.booleans()
    properties = {name: draw(field_schemas(keywords)) for name in FIELDS if draw(listed)}
    required = [name for name in FIELDS if draw(RARELY)]
    return record_schema("1.0.0", properties, required, draw(ADDITIONAL))


@st.composite
def schema_pairs(draw: st.DrawFn, focus: str) -> tuple[Schema, Schema]:
    """An old record schema and a new one that differs from it by a few small edits."""
    keywords = FOCUS[focus]
    # Keyword runs keep the record's shape and only nudge keywords; "record" reshapes it.
    reshape = focus == "record"
    old = draw(record_schemas(keywords, every_field=not reshape))
    new = copy.deepcopy(old)
    new["x-onceonly"]["version"] = "1.1.0"
    edits = ["field", "required", "additional"] if reshape else ["keyword"]
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(FIELDS))
        edit = draw(st.sampled_from(edits))
        if edit == "keyword":
            new["properties"][name] = draw(nudged(new["properties"][name], keywords))
        elif edit == "field":
            if name in new["properties"]:
                del new["properties"][name]
            else:
                new["properties"][name] = draw(field_schemas(keywords))
        elif edit == "required":
            required = set(new["required"]) ^ {name}
            new["required"] = [n for n in FIELDS if n in required]
        else:
            new.pop("additionalProperties", None)
            extra = draw(ADDITIONAL)
            if extra is not None:
                new["additionalProperties"] = extra
    return old, new


VALUES = [None, True, False, 0, 1, 2.5, -1.5, "", "a", "b", "ab", "ba", "aaaa", "x"]


def near(schemas: tuple[Schema, ...], name: str) -> list[Any]:
    """Values at and just beside the limits the schemas set on a field, where breaks show."""
    out = list(VALUES)
    for schema in schemas:
        field = schema["properties"].get(name, {})
        for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if keyword in field:
                out += [field[keyword] + step for step in (-1, -0.5, 0, 0.5, 1)]
        for keyword in ("minLength", "maxLength"):
            if keyword in field:
                out += ["a" * max(0, field[keyword] + step) for step in (-1, 0, 1)]
        out += field.get("enum", []) + ([field["const"]] if "const" in field else [])
    return out


@st.composite
def records(draw: st.DrawFn, guide: Schema, *schemas: Schema) -> list[Schema]:
    """Records mostly valid under `guide`, with values that probe every schema's limits."""
    listed, rest = guide["properties"], guide.get("additionalProperties", True)
    every = {name: near(schemas, name) for name in (*FIELDS, "d")}
    fits = {
        name: [v for v in pool if Draft202012Validator(listed.get(name, rest)).is_valid(v)]
        for name, pool in every.items()
    }
    sometimes = st.sampled_from([True, True, False])
    out = []
    for _ in range(draw(st.integers(1, 8))):
        record = {}
        for name in every:
            # Now and then a value the guide rejects, so invalid records are seen too.
            pool = fits[name] if fits[name] and not draw(RARELY) else every[name]
            if name in guide["required"] or draw(sometimes):
                record[name] = draw(st.sampled_from(pool))
        out.append(record)
    return out


def counterexamples(old: Schema, new: Schema, records: list[Schema]) -> dict[str, list[Schema]]:
    """Records that show each direction broken, by real validation."""
    old_ok, new_ok = Draft202012Validator(old).is_valid, Draft202012Validator(new).is_valid
    return {
        B: [r for r in records if old_ok(r) and not new_ok(r)],
        F: [r for r in records if new_ok(r) and not old_ok(r)],
    }


@pytest.mark.parametrize("focus", list(FOCUS))
@settings(max_examples=300)
@given(data=st.data())
def test_compatible_verdicts_are_sound(focus: str, data: st.DataObject) -> None:
    old, new = data.draw(schema_pairs(focus))
    sample = data.draw(records(old, old, new)) + data.draw(records(new, old, new))
    found = counterexamples(old, new, sample)
    for direction in (B, F):
        report = check(new, [old], direction)
        if report.compatible:
            assert found[direction] == [], f"{direction} compatible, yet these break it"


@given(schema=record_schemas())
def test_an_unchanged_schema_is_fully_compatible(schema: Schema) -> None:
    assert check(version(schema, "1.0.1"), [schema], "FULL").problems == ()


def test_the_soundness_strategy_reaches_real_cases() -> None:
    # Guards the property test against vacuity: the generator does produce changed schemas
    # judged compatible with records valid under both, and breaks that a record shows.
    Example = tuple[tuple[Schema, Schema], list[Schema]]

    def compatible_change(direction: str) -> Callable[[Example], bool]:
        def holds(example: Example) -> bool:
            (old, new), sample = example
            valid = Draft202012Validator(new if direction == F else old).is_valid
            return (
                old["properties"] != new["properties"]
                and check(new, [old], direction).compatible
                and any(valid(r) and r for r in sample)
            )

        return holds

    def shown_break(example: Example) -> bool:
        (old, new), sample = example
        return bool(counterexamples(old, new, sample)[B]) and not check(new, [old], B).compatible

    budget = settings(max_examples=5000, database=None, phases=[Phase.generate])
    for focus in FOCUS:
        examples = schema_pairs(focus).flatmap(
            lambda pair: st.tuples(st.just(pair), records(pair[0], *pair))
        )
        find(examples, compatible_change(B), settings=budget)
        find(examples, compatible_change(F), settings=budget)
        find(examples, shown_break, settings=budget)
