"""Facts: declared, reviewed questions over published datasets.

A fact contract is a JSON file, `schemas/facts/<fact id>/<semver>.json`::

    {
      "id": "person.alive", "version": "1.0.0",
      "title": "是否健在 — is the person alive today?",
      "parameters": {"person_id": {"type": "resident_id", "subject": true, "title": "…"}},
      "result": {"type": "boolean"},
      "reads": {"household_register": {"versions": ">=1.0.0,<2.0.0",
                                       "fields": ["id_number", "status"]}, …},
      "query": "SELECT p._n, … AS answer FROM {params} p …"
    }

- **Parameters** are typed (`resident_id`, `division_code`, `city_code`, `integer`,
  `date`, `enum`, `string`); a `subject: true` parameter names a citizen the ask is
  about, who then appears in the ledger as a keyed tag, never as a number.
- **The result** is minimal: `boolean`, `enum` (with its `values`), `count` or `date`
  (which may be null: "not deceased"). Never a record (DESIGN.md, minimal disclosure).
- **Reads** names every dataset the query touches, the schema versions it was written
  for, and the fields it relies on; the schema-compatibility check reports a fact whose
  fields a new dataset version breaks (`dependents`).
- **The query** is one SQL statement over ``{params}`` — a relation with one row per
  question (``_n``, one column per parameter, and ``_today``, the date of the ask) — and
  ``{<dataset>}`` for each dataset read. It returns one row per ``_n`` with the column
  ``answer``. The exchange substitutes relation names only (the pinned publication
  tables, so an answer can be re-derived "as of" any past publication); every value
  reaches DuckDB as data in the parameter table, never as SQL text. One query serves a
  single ask (one row) and a caseworker's whole batch (a million rows) alike.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exchange.errors import ExchangeError
from exchange.paths import schemas_dir
from exchange.residentid import problem as id_problem
from exchange.residentid import valid_mask

PARAMETER_TYPES = ("resident_id", "division_code", "city_code", "integer", "date", "enum", "string")
RESULT_TYPES = ("boolean", "enum", "count", "date")

_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_SEMVER = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_COMPARATOR = re.compile(r"(>=|<=|>|<|=)?\s*(\S+)")
_DIVISION = re.compile(r"[1-8][0-9]{5}")
_CITY = re.compile(r"[1-8][0-9]{3}00")
MAX_STRING = 64
MAX_INTEGER = 10_000


class FactError(ExchangeError):
    """A fact contract is malformed, unknown, or cannot read the data it needs."""


class UnknownFact(FactError):
    """No fact with that id (or version) is declared in schemas/facts."""


class InvalidParameters(ExchangeError):
    """The values given for a fact's parameters do not fit its contract."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    title: str
    subject: bool = False
    values: tuple[str, ...] = ()  # for enums

    @property
    def arrow_type(self) -> pa.DataType:
        if self.type == "integer":
            return pa.int64()
        if self.type == "date":
            return pa.date32()
        return pa.string()


@dataclass(frozen=True)
class Reads:
    dataset: str
    versions: str  # e.g. ">=1.0.0,<2.0.0"
    fields: tuple[str, ...]

    def admits(self, version: str) -> bool:
        return version_in_range(version, self.versions)


@dataclass(frozen=True)
class Fact:
    id: str
    version: str
    title: str
    question: str
    parameters: tuple[Parameter, ...]
    result_type: str
    result_values: tuple[str, ...]
    reads: tuple[Reads, ...]
    query: str
    path: Path

    # Cached (in the instance's dict; the fields stay frozen): every single ask reads
    # these several times.
    @cached_property
    def ref(self) -> str:
        """`id@version`, how catalogues and answers name one fact contract."""
        return f"{self.id}@{self.version}"

    @cached_property
    def subjects(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.subject)

    @cached_property
    def parameter_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.parameters)

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise InvalidParameters(f"{self.ref} has no parameter {name!r}")

    def sql(self, params: str, relations: Mapping[str, str]) -> str:
        """The query with ``{params}`` and each ``{dataset}`` replaced by relation names."""
        names = {"params": params, **relations}
        return _PLACEHOLDER.sub(lambda m: names[m.group(1)], self.query)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "question": self.question,
            "parameters": {
                p.name: {"type": p.type, "title": p.title, "subject": p.subject}
                | ({"values": list(p.values)} if p.values else {})
                for p in self.parameters
            },
            "result": {"type": self.result_type}
            | ({"values": list(self.result_values)} if self.result_values else {}),
            "reads": {
                r.dataset: {"versions": r.versions, "fields": list(r.fields)} for r in self.reads
            },
        }


# --- versions -------------------------------------------------------------------------


def _semver(version: str) -> tuple[int, int, int]:
    match = _SEMVER.fullmatch(version)
    if not match:
        raise FactError(f"not a semantic version: {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def version_in_range(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies every comparator of ``spec`` (">=1.0.0,<2.0.0")."""
    have = _semver(version)
    for part in spec.split(","):
        match = _COMPARATOR.fullmatch(part.strip())
        if not match:
            raise FactError(f"not a version range: {spec!r}")
        op, bound = match.group(1) or "=", _semver(match.group(2))
        ok = {
            ">=": have >= bound,
            "<=": have <= bound,
            ">": have > bound,
            "<": have < bound,
            "=": have == bound,
        }[op]
        if not ok:
            return False
    return True


# --- loading --------------------------------------------------------------------------


def _text(document: Mapping[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FactError(f"{where}: {key!r} must be a non-empty string")
    return value


def parse_fact(document: object, path: Path) -> Fact:
    """Check a fact contract's shape and return it (`FactError` naming the file)."""
    where = str(path)
    if not isinstance(document, dict):
        raise FactError(f"{where}: a fact contract is a JSON object")
    fact_id, version = _text(document, "id", where), _text(document, "version", where)
    if not _ID.fullmatch(fact_id):
        raise FactError(f"{where}: id {fact_id!r} must be dotted lower-case words")
    _semver(version)
    if path.parent.name != fact_id or path.stem != version:
        raise FactError(f"{where}: must live at schemas/facts/{fact_id}/{version}.json")

    raw_params = document.get("parameters")
    if not isinstance(raw_params, dict) or not raw_params:
        raise FactError(f"{where}: 'parameters' must be a non-empty object")
    parameters = []
    for name, spec in raw_params.items():
        if not _NAME.fullmatch(name) or name.startswith("_"):
            raise FactError(f"{where}: parameter name {name!r} must be a lower-case word")
        if not isinstance(spec, dict) or spec.get("type") not in PARAMETER_TYPES:
            raise FactError(f"{where}: parameter {name!r} needs a type in {PARAMETER_TYPES}")
        values = tuple(spec.get("values", ()))
        if spec["type"] == "enum" and not (values and all(isinstance(v, str) for v in values)):
            raise FactError(f"{where}: enum parameter {name!r} needs string 'values'")
        subject = bool(spec.get("subject", False))
        if subject and spec["type"] != "resident_id":
            raise FactError(f"{where}: only a resident_id parameter can be a subject")
        title = spec.get("title", name)
        parameters.append(Parameter(name, spec["type"], str(title), subject, values))

    result = document.get("result")
    if not isinstance(result, dict) or result.get("type") not in RESULT_TYPES:
        raise FactError(f"{where}: 'result' needs a type in {RESULT_TYPES} (never a record)")
    result_values = tuple(result.get("values", ()))
    if result["type"] == "enum" and not result_values:
        raise FactError(f"{where}: an enum result needs its 'values'")

    raw_reads = document.get("reads")
    if not isinstance(raw_reads, dict) or not raw_reads:
        raise FactError(f"{where}: 'reads' must name the datasets the query reads")
    reads = []
    for dataset, spec in raw_reads.items():
        if not isinstance(spec, dict):
            raise FactError(f"{where}: reads.{dataset} must be an object")
        versions = _text(spec, "versions", f"{where} reads.{dataset}")
        version_in_range("1.0.0", versions)  # parses, or raises
        fields = spec.get("fields")
        if (
            not isinstance(fields, list)
            or not fields
            or not all(isinstance(f, str) for f in fields)
        ):
            raise FactError(f"{where}: reads.{dataset}.fields must list the fields it reads")
        reads.append(Reads(dataset, versions, tuple(fields)))

    query = _text(document, "query", where)
    if ";" in query:
        raise FactError(f"{where}: the query must be a single statement")
    used = set(_PLACEHOLDER.findall(query))
    declared = {r.dataset for r in reads}
    if "params" not in used:
        raise FactError(f"{where}: the query must read {{params}}")
    if used - declared - {"params"}:
        raise FactError(
            f"{where}: the query reads undeclared {sorted(used - declared - {'params'})}"
        )
    if declared - used:
        raise FactError(
            f"{where}: 'reads' declares datasets the query never reads: {sorted(declared - used)}"
        )

    return Fact(
        id=fact_id,
        version=version,
        title=_text(document, "title", where),
        question=_text(document, "question", where),
        parameters=tuple(parameters),
        result_type=result["type"],
        result_values=result_values,
        reads=tuple(reads),
        query=query,
        path=path,
    )


def load_fact_file(path: Path) -> Fact:
    try:
        document = json.loads(Path(path).read_text("utf-8"))
    except OSError as problem:
        raise FactError(f"cannot read {path}: {problem.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise FactError(f"{path} is not UTF-8 JSON: {problem}") from None
    return parse_fact(document, Path(path))


def facts_dir() -> Path:
    return schemas_dir() / "facts"


@cache
def _catalogue(root: Path) -> dict[str, dict[str, Fact]]:
    facts: dict[str, dict[str, Fact]] = {}
    for path in sorted(root.glob("*/*.json")):
        fact = load_fact_file(path)
        facts.setdefault(fact.id, {})[fact.version] = fact
    return facts


def all_facts(root: Path | None = None) -> list[Fact]:
    """The latest version of every declared fact, by id."""
    root = root or facts_dir()
    return [load_fact(fact_id, root=root) for fact_id in sorted(_catalogue(root))]


def load_fact(fact_id: str, version: str | None = None, *, root: Path | None = None) -> Fact:
    """A declared fact: the given version, else the latest."""
    if "@" in fact_id and version is None:
        fact_id, version = fact_id.split("@", 1)
    versions = _catalogue(root or facts_dir()).get(fact_id)
    if not versions:
        raise UnknownFact(f"no fact {fact_id!r} is declared (see schemas/facts/)")
    if version is None:
        return versions[max(versions, key=_semver)]
    if version not in versions:
        raise UnknownFact(
            f"fact {fact_id} has no version {version} (has {', '.join(sorted(versions))})"
        )
    return versions[version]


def dependents(dataset: str, field: str, *, root: Path | None = None) -> list[str]:
    """The facts (`id@version`) that read ``field`` of ``dataset``: the compatibility hook."""
    return [
        fact.ref
        for versions in _catalogue(root or facts_dir()).values()
        for fact in versions.values()
        for reads in fact.reads
        if reads.dataset == dataset and field in reads.fields
    ]


# --- parameters -----------------------------------------------------------------------


def parameter_table(
    fact: Fact, rows: pa.Table | Iterable[Mapping[str, object]], *, today: dt.date
) -> tuple[pa.Table, pa.Array]:
    """The ``{params}`` relation for ``rows``, and which rows' values fit the contract.

    Values are checked column-wise (a batch of a million subjects is checked at Arrow
    speed): resident IDs must carry a valid GB 11643 check character, division and city
    codes their shape, enums their declared values, integers 0..10000, dates ISO 8601.
    Rows that do not fit are answered as refused by the caller, never queried.
    """
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    names = [p.name for p in fact.parameters]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise InvalidParameters(f"{fact.ref} needs parameter(s) {', '.join(missing)}")
    extra = [c for c in table.column_names if c not in names]
    if extra:
        raise InvalidParameters(f"{fact.ref} has no parameter(s) {', '.join(extra)}")
    n = table.num_rows
    ok = pa.array(np.ones(n, dtype=bool))
    columns: dict[str, pa.Array] = {"_n": pa.array(np.arange(n, dtype=np.int64))}
    for parameter in fact.parameters:
        column, fits = _typed(parameter, table.column(parameter.name).combine_chunks())
        columns[parameter.name] = column
        ok = pc.and_kleene(ok, pc.fill_null(fits, False))
    columns["_today"] = pa.repeat(pa.scalar(today, pa.date32()), n)
    return pa.table(columns), ok


def _as_text(column: pa.Array) -> pa.Array:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.utf8_trim_whitespace(column.cast(pa.string()))
    if pa.types.is_null(column.type):
        return column.cast(pa.string())
    return column.cast(pa.string())


def _typed(parameter: Parameter, column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The column as the query sees it, and per row whether the value fits."""
    kind = parameter.type
    if kind == "integer":
        text = _as_text(column)
        fits = pc.match_substring_regex(text, r"^[0-9]{1,5}$")
        safe = pc.if_else(fits, text, pa.scalar(None, pa.string()))
        value = pc.cast(safe, pa.int64())
        fits = pc.and_kleene(fits, pc.less_equal(value, MAX_INTEGER))
        return pc.if_else(fits, value, pa.scalar(None, pa.int64())), fits
    if kind == "date":
        if pa.types.is_date(column.type):
            value = column.cast(pa.date32())
            return value, pc.is_valid(value)
        text = _as_text(column)
        shaped = pc.match_substring_regex(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
        parsed = pc.strptime(
            pc.if_else(shaped, text, pa.scalar(None, pa.string())),
            "%Y-%m-%d",
            "s",
            error_is_null=True,
        )
        value = pc.cast(parsed, pa.date32())
        return value, pc.is_valid(value)
    text = _as_text(column)
    if kind == "resident_id":
        fits = valid_mask(text).combine_chunks()
    elif kind == "division_code":
        fits = pc.match_substring_regex(text, f"^{_DIVISION.pattern}$")
    elif kind == "city_code":
        fits = pc.match_substring_regex(text, f"^{_CITY.pattern}$")
    elif kind == "enum":
        fits = pc.is_in(text, value_set=pa.array(parameter.values, pa.string()))
    else:
        fits = pc.less_equal(pc.utf8_length(text), MAX_STRING)
    return pc.if_else(fits, text, pa.scalar(None, pa.string())), fits


def check_one(
    fact: Fact, params: Mapping[str, object], *, today: dt.date
) -> dict[str, object] | None:
    """One question's parameters, typed as the query sees them; None if any does not fit.

    The scalar twin of `parameter_table` (same rules, same verdicts — a property test
    holds them together) for the single ask, where building Arrow arrays for one row
    would cost more than the checks. Unknown or missing names raise `InvalidParameters`.
    """
    names = fact.parameter_names
    if set(params) != names:
        missing, extra = names - set(params), set(params) - names
        raise InvalidParameters(
            f"{fact.ref}: missing {sorted(missing)}"
            if missing
            else f"{fact.ref}: no {sorted(extra)}"
        )
    typed: dict[str, object] = {"_n": 0}
    for parameter in fact.parameters:
        raw = params[parameter.name]
        if isinstance(raw, bool) or raw is None:
            return None
        if parameter.type == "date" and isinstance(raw, dt.date):
            typed[parameter.name] = raw
            continue
        text = str(raw).strip()
        kind = parameter.type
        value: object = text
        if kind == "resident_id":
            ok = id_problem(text) is None
        elif kind == "division_code":
            ok = bool(_DIVISION.fullmatch(text))
        elif kind == "city_code":
            ok = bool(_CITY.fullmatch(text))
        elif kind == "enum":
            ok = text in parameter.values
        elif kind == "integer":
            ok = bool(re.fullmatch(r"[0-9]{1,5}", text)) and int(text) <= MAX_INTEGER
            value = int(text) if ok else None
        elif kind == "date":
            try:
                ok = bool(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text))
                value = dt.date.fromisoformat(text) if ok else None
            except ValueError:
                ok = False
        else:
            ok = len(text) <= MAX_STRING
        if not ok:
            return None
        typed[parameter.name] = value
    typed["_today"] = today
    return typed


def param_schema(fact: Fact) -> pa.Schema:
    """The Arrow schema of a fact's ``{params}`` relation."""
    return pa.schema(
        [("_n", pa.int64())]
        + [(p.name, p.arrow_type) for p in fact.parameters]
        + [("_today", pa.date32())]
    )


def parse_param_args(fact: Fact, pairs: Iterable[str]) -> dict[str, str]:
    """`k=v` command-line pairs as a parameter mapping (checked later, with the contract)."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidParameters(f"--param takes name=value, got {pair!r}")
        fact.parameter(name)  # unknown names fail here, with the fact's name
        values[name] = value
    return values


# --- results --------------------------------------------------------------------------


def result_value(fact: Fact, value: object) -> object:
    """An answer value as JSON carries it, checked against the declared result type."""
    kind = fact.result_type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FactError(f"{fact.ref} returned {value!r}, not a boolean")
        return value
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FactError(f"{fact.ref} returned {value!r}, not a count")
        return value
    if kind == "enum":
        if value not in fact.result_values:
            raise FactError(f"{fact.ref} returned {value!r}, not one of {fact.result_values}")
        return value
    if value is None:
        return None
    if not isinstance(value, dt.date):
        raise FactError(f"{fact.ref} returned {value!r}, not a date")
    return value.isoformat()


def result_column(fact: Fact, column: pa.Array) -> pa.Array:
    """A whole batch's answers, checked against the declared result type at Arrow speed."""
    kind = fact.result_type
    if kind == "boolean":
        if not pa.types.is_boolean(column.type) or column.null_count:
            raise FactError(f"{fact.ref} returned {column.type} answers, not booleans")
        return column
    if kind == "count":
        if not pa.types.is_integer(column.type) or column.null_count:
            raise FactError(f"{fact.ref} returned {column.type} answers, not counts")
        if len(column) and pc.min(column).as_py() < 0:
            raise FactError(f"{fact.ref} returned a negative count")
        return column.cast(pa.int64())
    if kind == "enum":
        if not pc.all(pc.is_in(column, value_set=pa.array(fact.result_values))).as_py():
            raise FactError(f"{fact.ref} returned a value outside {fact.result_values}")
        return column
    if not pa.types.is_date(column.type):
        raise FactError(f"{fact.ref} returned {column.type} answers, not dates")
    return column.cast(pa.date32())


# --- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The publication a fact reads for one dataset."""

    dataset: str
    publication_id: int
    version: str
    relation: str


Published = Mapping[str, list[tuple[int, str]]]
"""Each dataset's publications as (id, schema version), newest first: `published(con)`."""


def published(con: Any) -> dict[str, list[tuple[int, str]]]:
    """A snapshot of every dataset's publications (the exchange caches it between asks)."""
    rows = con.execute("SELECT dataset, id, version FROM publications ORDER BY id DESC").fetchall()
    out: dict[str, list[tuple[int, str]]] = {}
    for dataset, publication_id, version in rows:
        out.setdefault(str(dataset), []).append((int(publication_id), str(version)))
    return out


def pin_publications(
    con: Any, fact: Fact, *, as_of: int | None = None, snapshot: Published | None = None
) -> list[Source]:
    """The publication of each dataset the fact reads: current, or as of publication ``as_of``.

    "As of N" means the data as it stood right after publication N: for each dataset,
    its latest publication with an id up to N. A dataset not yet published, or published
    under a schema version outside the fact's declared range, is a `FactError`.
    ``snapshot`` (from `published`) saves the catalogue query on every ask.
    """
    from exchange.store import publication_table

    known = snapshot if snapshot is not None else published(con)
    sources = []
    for reads in fact.reads:
        found = [
            (pid, version)
            for pid, version in known.get(reads.dataset, [])
            if as_of is None or pid <= as_of
        ]
        if not found:
            when = f" as of publication {as_of}" if as_of is not None else ""
            raise FactError(f"{fact.ref} reads {reads.dataset}, which has no publication{when}")
        publication_id, version = found[0]
        if not reads.admits(version):
            raise FactError(
                f"{fact.ref} reads {reads.dataset} {reads.versions}; "
                f"publication {publication_id} is version {version}"
            )
        sources.append(
            Source(reads.dataset, publication_id, version, publication_table(publication_id))
        )
    return sources


def evaluate(con: Any, fact: Fact, params: pa.Table, sources: list[Source]) -> pa.Table:
    """Run the fact's query over ``params`` (from `parameter_table`): one answer per ``_n``.

    ``con`` is a DuckDB connection or cursor owned by the calling thread. The parameter
    table reaches DuckDB as an Arrow relation under a name unique to this call; the query
    text holds relation names only.
    """
    import threading

    name = f"_params_{threading.get_ident()}_{id(params)}"
    con.register(name, params)
    try:
        sql = fact.sql(name, {s.dataset: s.relation for s in sources})
        table: pa.Table = con.sql(f"SELECT _n, answer FROM ({sql}) ORDER BY _n").to_arrow_table()
    finally:
        con.unregister(name)
    if table.num_rows != params.num_rows:
        raise FactError(
            f"{fact.ref} answered {table.num_rows} of {params.num_rows} questions: "
            "its query must return one row per _n"
        )
    return table.combine_chunks()


_SQL_TYPES = {"integer": "BIGINT", "date": "DATE"}


def evaluate_one(
    con: Any, fact: Fact, params: pa.Table | Mapping[str, object], sources: list[Source]
) -> object:
    """One question's answer: the same query, its parameters bound as named values.

    For a single ask this skips registering an Arrow table: the parameter relation is a
    one-row SELECT of bound parameters (``$p_<name>``), still never SQL text.
    ``params`` is a one-row table or a row from `check_one`.
    """
    row = params.slice(0, 1).to_pylist()[0] if isinstance(params, pa.Table) else params
    columns = ", ".join(
        [
            f"CAST($p_{p.name} AS {_SQL_TYPES.get(p.type, 'VARCHAR')}) AS {p.name}"
            for p in fact.parameters
        ]
    )
    relation = f"(SELECT CAST(0 AS BIGINT) AS _n, {columns}, CAST($p__today AS DATE) AS _today)"
    sql = fact.sql(relation, {s.dataset: s.relation for s in sources})
    values = {f"p_{p.name}": row[p.name] for p in fact.parameters} | {"p__today": row["_today"]}
    found = con.execute(f"SELECT answer FROM ({sql})", values).fetchall()
    if len(found) != 1:
        raise FactError(f"{fact.ref} returned {len(found)} rows for one question, not 1")
    return found[0][0]
