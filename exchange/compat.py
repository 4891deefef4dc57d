"""Schema evolution: is a new dataset contract compatible with the versions before it?

Compatibility is judged on the set of records each version accepts. BACKWARD means every
record valid under the earlier version stays valid (consumers can upgrade first); FORWARD
means every record valid under the new version was already valid under the earlier one
(old consumers can read new data); FULL is both. The TRANSITIVE modes compare against
every earlier version instead of only the latest; NONE skips the comparison.

The check is keyword by keyword over the subset of JSON Schema 2020-12 that dataset
contracts use. A record's validity is the conjunction of its keywords, so when every
keyword of the new version admits everything the old one admitted, the whole record set
is contained: a "compatible" verdict is therefore sound. It is not complete — a change
that is harmless only through the interplay of keywords (a `minimum` added to a field
whose enum already lies above it) is reported as breaking. Anything the check cannot
decide (a changed pattern or format, a keyword outside the subset) is breaking in both
directions, so the registry fails closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exchange.contracts import FIELD_KEYWORDS
from exchange.errors import ExchangeError, InvalidArgument

RECORD = "(record)"  # the field name of problems with record-level keywords


class Mode(StrEnum):
    """A dataset's compatibility mode, declared in its registration."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    FULL = "FULL"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        """Whether the mode compares against every earlier version, not only the latest."""
        return self.endswith("_TRANSITIVE")

    @property
    def directions(self) -> frozenset[Direction]:
        """The directions the mode requires."""
        base = self.removesuffix("_TRANSITIVE")
        if base == "FULL":
            return frozenset({Direction.BACKWARD, Direction.FORWARD})
        if base == "NONE":
            return frozenset()
        return frozenset({Direction(base)})


class Direction(StrEnum):
    """Which promise a problem breaks; REGISTRATION for version and dataset identity."""

    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    REGISTRATION = "REGISTRATION"


@dataclass(frozen=True)
class Problem:
    """One reason a new version is refused."""

    field: str
    against: str
    direction: str
    keyword: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """The problem as plain JSON values."""
        return {
            "field": self.field,
            "against": self.against,
            "direction": str(self.direction),
            "keyword": self.keyword,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class CompatibilityReport:
    """Every problem found with a new version, and the registered facts each one breaks."""

    dataset: str
    version: str
    mode: Mode
    problems: tuple[Problem, ...]
    breaking_facts: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    checked_against: tuple[str, ...] = ()

    @property
    def compatible(self) -> bool:
        """True when the new version can be registered."""
        return not self.problems

    def lines(self) -> list[str]:
        """One human line per problem, naming the facts that read the field."""
        out = []
        for problem in self.problems:
            facts = self.breaking_facts.get(problem.field, ())
            suffix = f"; facts affected: {', '.join(facts)}" if facts else ""
            out.append(problem.reason + suffix)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "dataset": self.dataset,
            "version": self.version,
            "mode": str(self.mode),
            "compatible": self.compatible,
            "checked_against": list(self.checked_against),
            "problems": [problem.to_dict() for problem in self.problems],
            "breaking_facts": {name: list(ids) for name, ids in self.breaking_facts.items()},
        }


class IncompatibleSchema(ExchangeError):
    """A new schema version breaks its dataset's compatibility mode."""

    def __init__(self, report: CompatibilityReport) -> None:
        self.report = report
        count = len(report.problems)
        noun = "problem" if count == 1 else "problems"
        first = report.lines()[0] if report.problems else "no details"
        # The CLI prints one line; the full list is in `diagnostics()` and the report.
        super().__init__(
            f"{report.dataset} {report.version} refused under {report.mode}: "
            f"{count} {noun}; first: {first}"
        )

    def diagnostics(self) -> str:
        """Every problem, one per line."""
        return "\n".join(self.report.lines())


Dependents = Callable[[str, str], Iterable[str]]
"""`dependents(dataset, field)`: the ids of registered facts that read that field."""


def check(
    new: Mapping[str, Any],
    earlier: Sequence[Mapping[str, Any]],
    mode: Mode | str,
    *,
    dependents: Dependents | None = None,
) -> CompatibilityReport:
    """Check a new schema version against the earlier ones (ordered oldest to newest)."""
    mode = _mode(mode)
    dataset, version = _identity(new)
    problems = _registration_problems(dataset, version, earlier)

    targets = list(earlier if mode.transitive else earlier[-1:])
    if not mode.directions:
        targets = []
    for old in targets:
        against = _identity(old)[1]
        for change in _diff(old, new):
            for direction in (Direction.BACKWARD, Direction.FORWARD):
                if direction in mode.directions and direction in change.breaks:
                    reason = _reason(change, direction, against, version)
                    problems.append(
                        Problem(change.field, against, direction, change.keyword, reason)
                    )

    broken = [p for p in problems if p.direction != Direction.REGISTRATION]
    facts = _breaking_facts(dataset, broken, [new, *targets], dependents)
    return CompatibilityReport(
        dataset=dataset,
        version=version,
        mode=mode,
        problems=tuple(problems),
        breaking_facts=facts,
        checked_against=tuple(_identity(old)[1] for old in targets),
    )


# --- registration: identity and version order -------------------------------------------

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def _precedence(version: str) -> tuple[Any, ...] | None:
    """A sort key with Semantic Versioning 2.0.0 precedence, or None when not semver."""
    match = _SEMVER.match(version)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        # A release outranks every pre-release of the same version.
        return (int(major), int(minor), int(patch), (1,))
    # Numeric identifiers rank below alphanumeric ones and compare as numbers.
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), (0, parts))


def _identity(schema: Mapping[str, Any]) -> tuple[str, str]:
    """(dataset, version) from the `x-onceonly` annotation, "?" where missing."""
    meta = schema.get("x-onceonly")
    if not isinstance(meta, Mapping):
        return "?", "?"
    return str(meta.get("dataset", "?")), str(meta.get("version", "?"))


def _registration_problems(
    dataset: str, version: str, earlier: Sequence[Mapping[str, Any]]
) -> list[Problem]:
    """Problems with the new version's identity: unknown, wrong dataset, not increasing."""
    problems: list[Problem] = []

    def add(against: str, keyword: str, reason: str) -> None:
        problems.append(Problem(RECORD, against, Direction.REGISTRATION, keyword, reason))

    mine = _precedence(version)
    if dataset == "?":
        add("-", "x-onceonly.dataset", "record: x-onceonly.dataset is missing")
    if mine is None:
        add("-", "x-onceonly.version", f"record: version {version!r} is not a semantic version")
    for old in earlier:
        old_dataset, old_version = _identity(old)
        if dataset != "?" and old_dataset != dataset:
            add(
                old_version,
                "x-onceonly.dataset",
                f"record: dataset {dataset!r} does not match {old_dataset!r} of {old_version}",
            )
        theirs = _precedence(old_version)
        if mine is not None and theirs is None:
            add(
                old_version,
                "x-onceonly.version",
                f"record: version {version} cannot be ordered against earlier {old_version!r}",
            )
        elif mine is not None and theirs is not None and mine <= theirs:
            add(
                old_version,
                "x-onceonly.version",
                f"record: version {version} is not greater than earlier version {old_version}",
            )
    return problems


def _mode(mode: Mode | str) -> Mode:
    """The mode, accepting its name in any case."""
    try:
        return Mode(str(mode).upper())
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise InvalidArgument(f"unknown compatibility mode {mode!r}; one of {choices}") from None


def _breaking_facts(
    dataset: str,
    problems: Sequence[Problem],
    schemas: Sequence[Mapping[str, Any]],
    dependents: Dependents | None,
) -> dict[str, tuple[str, ...]]:
    """Per problem field, the facts that read it; a record-level break reaches every field."""
    if dependents is None or not problems:
        return {}
    every_field = sorted({name for schema in schemas for name in _properties(schema)})
    cache: dict[str, set[str]] = {}

    def reading(name: str) -> set[str]:
        if name not in cache:
            cache[name] = set(dependents(dataset, name))
        return cache[name]

    out: dict[str, tuple[str, ...]] = {}
    for name in sorted({p.field for p in problems}):
        facts: set[str] = set()
        for read in every_field if name == RECORD else [name]:
            facts |= reading(read)
        if facts:
            out[name] = tuple(sorted(facts))
    return out


# --- the comparison ------------------------------------------------------------------------

_B = frozenset({Direction.BACKWARD})
_F = frozenset({Direction.FORWARD})
_BOTH = _B | _F

# Keywords that only annotate: changing them changes no record's validity.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
_RECORD_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties"})
# Record keywords that change which fields `additionalProperties` governs: with them the
# per-field comparison below is not sound, so their presence alone is undecidable.
_ENTANGLED = frozenset({"patternProperties", "unevaluatedProperties"})


_Found = tuple[str, str, frozenset[Direction]]  # (keyword, what changed, directions broken)


@dataclass(frozen=True)
class _Change:
    """A difference between two versions, described old → new, and whom it breaks."""

    field: str
    keyword: str
    what: str
    breaks: frozenset[Direction]


def _reason(change: _Change, direction: Direction, against: str, version: str) -> str:
    """The human line for one change seen in one direction."""
    subject = "record" if change.field == RECORD else f"field {change.field!r}"
    if direction is Direction.BACKWARD:
        effect = f"records valid under {against} may be rejected"
    else:
        effect = f"records valid under {version} may be invalid under {against}"
    return f"{subject}: {change.what}; {effect} ({direction})"


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[_Change]:
    """Every difference between two record schemas that breaks a direction."""
    changes = [
        _Change(RECORD, keyword, what, breaks)
        for keyword, what, breaks in _record_keyword_changes(old, new)
    ]
    old_props, new_props = _properties(old), _properties(new)
    old_req, new_req = _required(old), _required(new)
    names = list(dict.fromkeys([*old_props, *new_props, *sorted(old_req | new_req)]))
    for name in names:
        if name in new_req and name not in old_req:
            changes.append(_Change(name, "required", "newly required", _B))
        if name in old_req and name not in new_req:
            changes.append(_Change(name, "required", "no longer required", _F))
        changes.extend(
            _Change(name, keyword, what, breaks)
            for keyword, what, breaks in _field_changes(
                _field_schema(old, name),
                _field_schema(new, name),
                listed_old=name in old_props,
                listed_new=name in new_props,
            )
        )
    return changes


def _record_keyword_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[_Found]:
    """Changes in the record-level keywords other than per-field ones."""
    found: list[_Found] = []
    found.extend(_type_change(old, new))
    for keyword in sorted((old.keys() | new.keys()) - _RECORD_KEYWORDS - _ANNOTATIONS):
        if keyword.startswith("x-"):
            continue
        if keyword in _ENTANGLED:
            found.append(
                (keyword, f"{keyword} is present; this check cannot decide its effect", _BOTH)
            )
        elif _canon(old.get(keyword, _ABSENT)) != _canon(new.get(keyword, _ABSENT)):
            found.append(_undecidable(keyword, old, new))

    old_rest, new_rest = _other_fields(old), _other_fields(new)
    old_shown = _show(old.get("additionalProperties", True))
    new_shown = _show(new.get("additionalProperties", True))
    if old_rest is None and new_rest is not None:
        what = f"additionalProperties opened from {old_shown} to {new_shown}"
        found.append(("additionalProperties", what + "; unlisted fields are now admitted", _F))
    elif old_rest is not None and new_rest is None:
        what = f"additionalProperties closed from {old_shown} to {new_shown}"
        found.append(("additionalProperties", what + "; unlisted fields are now rejected", _B))
    elif old_rest is not None and new_rest is not None:
        found.extend(
            (keyword, f"unlisted fields: {what}", breaks)
            for keyword, what, breaks in _value_changes(old_rest, new_rest)
        )
    return found


def _field_changes(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    listed_old: bool,
    listed_new: bool,
) -> list[_Found]:
    """Changes to the values one field may take (None: the field is not admitted)."""
    if old is None and new is None:
        return []
    if old is None:
        if listed_old:
            return [("properties", "field was forbidden (schema false) and is now admitted", _F)]
        return [("properties", "field added while the earlier version forbids it", _F)]
    if new is None:
        if listed_new:
            return [("properties", "field is now forbidden (schema false)", _B)]
        return [("properties", "field removed while additionalProperties is false", _B)]
    found = _value_changes(old, new)
    if listed_old and not listed_new:
        context = "no longer listed, so additionalProperties governs it: "
    elif listed_new and not listed_old:
        context = "newly listed where additionalProperties admitted it: "
    else:
        context = ""
    return [(keyword, context + what, breaks) for keyword, what, breaks in found]


def _value_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[_Found]:
    """Keyword-by-keyword changes between two schemas for one value."""
    found: list[_Found] = []
    found.extend(_type_change(old, new))
    found.extend(_values_change(old, new))
    found.extend(_bound_change(old, new, lower=True))
    found.extend(_bound_change(old, new, lower=False))
    found.extend(_length_change(old, new, "minLength"))
    found.extend(_length_change(old, new, "maxLength"))
    found.extend(_undecidable_change(old, new, "pattern"))
    found.extend(_undecidable_change(old, new, "format"))
    for keyword in sorted((old.keys() | new.keys()) - FIELD_KEYWORDS - _ANNOTATIONS):
        if keyword.startswith("x-"):
            continue
        if _canon(old.get(keyword, _ABSENT)) != _canon(new.get(keyword, _ABSENT)):
            found.append(_undecidable(keyword, old, new))
    return found


# --- keyword comparisons -------------------------------------------------------------------

_ABSENT = object()
_ANY: Mapping[str, Any] = {}
_JSON_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")


def _types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The declared types, None when any type is allowed."""
    declared = schema.get("type")
    if declared is None:
        return None
    names = {declared} if isinstance(declared, str) else set(declared)
    if "number" in names:
        names.discard("integer")  # every integer is a number
    return frozenset(names)


def _effective_types(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """The types a value can actually have: an enum or const narrows the declared ones."""
    declared = _types(schema)
    values = _allowed_values(schema)
    if values is None:
        return declared
    return frozenset(
        kind for kind in map(_kind, values) if declared is None or _covers(declared, {kind})
    )


def _covers(wide: frozenset[str] | None, narrow: Iterable[str] | None) -> bool:
    """Whether every value of the types in `narrow` has a type in `wide`."""
    if wide is None:
        return True
    if narrow is None:
        return False
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _type_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[_Found]:
    """A change of `type`, judged on the types each side's values can have."""
    old_types, new_types = _types(old), _types(new)
    breaks = frozenset(
        {
            *([Direction.BACKWARD] if not _covers(new_types, _effective_types(old)) else []),
            *([Direction.FORWARD] if not _covers(old_types, _effective_types(new)) else []),
        }
    )
    if not breaks:
        return []
    wider, narrower = _covers(new_types, old_types), _covers(old_types, new_types)
    verb = "widened" if wider and not narrower else "narrowed" if narrower else "changed"
    what = f"type {verb} from {_show_type(old)} to {_show_type(new)}"
    return [("type", what, breaks)]


def _show_type(schema: Mapping[str, Any]) -> str:
    return "any type" if "type" not in schema else _show(schema["type"])


def _allowed_values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values `enum` and `const` together allow, None when they do not restrict."""
    values: list[Any] | None = None
    if "enum" in schema:
        values = list(schema["enum"])
    if "const" in schema:
        const = _canon(schema["const"])
        values = [schema["const"]] if values is None else [v for v in values if _canon(v) == const]
    return values


def _values_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[_Found]:
    """A change of `enum` or `const`, compared as sets of JSON values."""
    old_values, new_values = _allowed_values(old), _allowed_values(new)
    if old_values is None and new_values is None:
        return []
    # Name the keyword the new version uses; a removed restriction is named as it was.
    keyword = "enum" if "enum" in new or ("enum" in old and "const" not in new) else "const"
    if old_values is None:
        return [(keyword, f"{keyword} added: {_show(new.get(keyword))}", _B)]
    if new_values is None:
        return [(keyword, f"{keyword} removed (was {_show(old.get(keyword))})", _F)]
    old_keys = {_canon(v) for v in old_values}
    new_keys = {_canon(v) for v in new_values}
    dropped = [v for v in old_values if _canon(v) not in new_keys]
    added = [v for v in new_values if _canon(v) not in old_keys]
    span = f"from {_show(old_values)} to {_show(new_values)}"
    if dropped and added:
        return [(keyword, f"{keyword} changed {span}", _BOTH)]
    if dropped:
        return [(keyword, f"{keyword} narrowed {span} (dropped {_show(dropped)})", _B)]
    if added:
        return [(keyword, f"{keyword} widened {span} (added {_show(added)})", _F)]
    return []


@dataclass(frozen=True)
class _Bound:
    value: float
    exclusive: bool
    keyword: str

    def show(self, lower: bool) -> str:
        sign = (">" if lower else "<") + ("" if self.exclusive else "=")
        return f"{sign} {_show(self.value)} ({self.keyword})"


def _bound(schema: Mapping[str, Any], *, lower: bool) -> _Bound | None:
    """The tightest of the inclusive and exclusive bounds on one side."""
    inclusive, exclusive = (
        ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
    )
    bounds = [
        _Bound(schema[keyword], keyword == exclusive, keyword)
        for keyword in (inclusive, exclusive)
        if keyword in schema
    ]
    if not bounds:
        return None
    sign = 1 if lower else -1
    return max(bounds, key=lambda b: (sign * b.value, b.exclusive))


def _within(inner: _Bound | None, outer: _Bound | None, *, lower: bool) -> bool:
    """Whether every number `inner` admits is admitted by `outer`."""
    if outer is None:
        return True
    if inner is None:
        return False
    sign = 1 if lower else -1
    return (sign * inner.value, inner.exclusive) >= (sign * outer.value, outer.exclusive)


def _bound_change(old: Mapping[str, Any], new: Mapping[str, Any], *, lower: bool) -> list[_Found]:
    """A change of the lower (minimum, exclusiveMinimum) or upper bound."""
    before, after = _bound(old, lower=lower), _bound(new, lower=lower)
    breaks = frozenset(
        {
            *([Direction.BACKWARD] if not _within(before, after, lower=lower) else []),
            *([Direction.FORWARD] if not _within(after, before, lower=lower) else []),
        }
    )
    if not breaks:
        return []
    if before is None:
        assert after is not None
        return [(after.keyword, f"{after.keyword} added ({_show(after.value)})", breaks)]
    if after is None:
        return [(before.keyword, f"{before.keyword} removed (was {_show(before.value)})", breaks)]
    if before.keyword == after.keyword:
        verb = "raised" if after.value > before.value else "lowered"
        what = f"{after.keyword} {verb} from {_show(before.value)} to {_show(after.value)}"
    else:
        side = "lower" if lower else "upper"
        verb = "tightened" if Direction.BACKWARD in breaks else "loosened"
        what = f"{side} bound {verb} from {before.show(lower)} to {after.show(lower)}"
    return [(after.keyword, what, breaks)]


def _length_change(old: Mapping[str, Any], new: Mapping[str, Any], keyword: str) -> list[_Found]:
    """A change of minLength (absent: 0) or maxLength (absent: unbounded)."""
    if old.get(keyword) == new.get(keyword):
        return []
    if keyword not in old:
        what = f"{keyword} added ({new[keyword]})"
    elif keyword not in new:
        what = f"{keyword} removed (was {old[keyword]})"
    else:
        verb = "raised" if new[keyword] > old[keyword] else "lowered"
        what = f"{keyword} {verb} from {old[keyword]} to {new[keyword]}"
    if keyword == "minLength":
        before, after = old.get(keyword, 0), new.get(keyword, 0)
        tighter = after > before
    else:
        before, after = old.get(keyword, float("inf")), new.get(keyword, float("inf"))
        tighter = after < before
    if before == after:  # e.g. minLength 0 added: no record changes
        return []
    return [(keyword, what, _B if tighter else _F)]


def _undecidable_change(
    old: Mapping[str, Any], new: Mapping[str, Any], keyword: str
) -> list[_Found]:
    """A pattern or format: added narrows, removed widens, changed cannot be decided."""
    if keyword not in old and keyword not in new:
        return []
    if keyword not in old:
        return [(keyword, f"{keyword} added ({_show(new[keyword])})", _B)]
    if keyword not in new:
        return [(keyword, f"{keyword} removed (was {_show(old[keyword])})", _F)]
    if old[keyword] == new[keyword]:
        return []
    what = (
        f"{keyword} changed from {_show(old[keyword])} to {_show(new[keyword])}; "
        f"whether one {keyword} admits everything the other does cannot be decided in "
        "general, so the change is treated as breaking both ways"
    )
    return [(keyword, what, _BOTH)]


def _undecidable(keyword: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> _Found:
    """A change to a keyword outside the subset this check decides."""
    before = _show(old[keyword]) if keyword in old else "absent"
    after = _show(new[keyword]) if keyword in new else "absent"
    what = (
        f"{keyword} changed from {before} to {after}; it is outside the keywords this "
        "check decides, so the change is treated as breaking both ways"
    )
    return (keyword, what, _BOTH)


# --- schema access -------------------------------------------------------------------------


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    props = schema.get("properties", {})
    return props if isinstance(props, Mapping) else {}


def _required(schema: Mapping[str, Any]) -> set[str]:
    return set(schema.get("required", ()))


def _as_schema(value: Any) -> Mapping[str, Any] | None:
    """A subschema, with the boolean forms: true admits anything, false nothing."""
    if isinstance(value, Mapping):
        return value
    return _ANY if value is True else None


def _other_fields(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema for fields not listed in `properties` (None: they are forbidden)."""
    return _as_schema(schema.get("additionalProperties", True))


def _field_schema(schema: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The schema a field's value must meet (None: the field is forbidden)."""
    props = _properties(schema)
    return _as_schema(props[name]) if name in props else _other_fields(schema)


def _kind(value: Any) -> str:
    """The JSON Schema type of a value; 1.0 is an integer, as in the specification."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list | tuple) else "object"


def _canon(value: Any) -> Any:
    """A hashable key with JSON equality: 1 equals 1.0, true does not equal 1."""
    if value is _ABSENT or value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int):
        return ("number", value)
    if isinstance(value, float):
        return ("number", int(value) if value.is_integer() else value)
    if isinstance(value, Mapping):
        return ("object", tuple(sorted((str(k), _canon(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canon(v) for v in value))
    return ("other", repr(value))


def _show(value: Any) -> str:
    """A value as JSON, keeping Chinese characters readable."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
