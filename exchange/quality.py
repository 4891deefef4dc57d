"""Dataset-level quality gates: a publication's accepted rows pass as a whole, or it is rejected.

The row checks (the dataset's JSON Schema contract) quarantine bad rows first. This gate
then looks at the rows they accepted, all together: key uniqueness, null ratios, value sets
and plausible ranges, from a Great Expectations suite per dataset in
`schemas/quality/<dataset>.json`, and the row count against the previous publication's,
which onceonly checks itself (the guard against a truncated extract).

Great Expectations lives in this module and nowhere else. It is imported on first use (the
import alone takes about 2 s) and validates pandas frames in one ephemeral context per
process; GX against DuckDB does not work in 1.24, and typing stays with the contract.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import pyarrow as pa

from exchange.errors import ExchangeError
from exchange.paths import schemas_dir

QUALITY_DIR: Final = "quality"
EXTENSION: Final = "x-onceonly"

# The expectation types this module has been checked against on frames converted from Arrow
# under pandas 3. Column type expectations are left out on purpose: they behave differently
# under pandas 3, and per-row typing is the contract's job.
EXPECTATION_TYPES: Final = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_table_row_count_to_be_between",
    }
)
_COLUMN_KWARGS: Final = ("column", "column_A", "column_B")
# Settings that belong to this module, not to a suite file: the result format decides what
# reaches the publication record, and a row condition would quietly narrow the gate.
_RESERVED_KWARGS: Final = frozenset(
    {"result_format", "catch_exceptions", "batch_id", "row_condition", "condition_parser"}
)
_EXPECTATION_KEYS: Final = frozenset({"type", "kwargs", "meta", "notes", "description", "id"})
_INDEX: Final = "x-onceonly-index"  # meta key that ties a GX result back to the suite file
_SAMPLES: Final = 5  # example values named in a failure line, from non-personal columns only
_RESULT_FORMAT: Final = {"result_format": "BASIC", "partial_unexpected_count": 20}
_KEPT_RESULT_KEYS: Final = (
    "element_count",
    "missing_count",
    "unexpected_count",
    "unexpected_percent",
    "observed_value",
)
_SINGLE_VALUE_TYPES: Final = frozenset(
    {"expect_column_min_to_be_between", "expect_column_max_to_be_between"}
)
_WITHHELD: Final = "withheld (personal column)"
_DATASET_NAME: Final = re.compile(r"[a-z][a-z0-9_]*\Z")


class QualitySuiteInvalid(ExchangeError):
    """A dataset's quality suite file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class QualitySuite:
    """One dataset's quality suite, as read from its file under `schemas/quality/`."""

    dataset: str
    name: str
    expectations: tuple[Mapping[str, Any], ...]  # GX's serialised shape: type, kwargs, meta
    max_row_count_change: float  # the largest allowed |rows - previous| / previous
    sha256: str  # of the file's bytes, recorded with every result

    @property
    def columns(self) -> frozenset[str]:
        """Every column the suite's expectations name."""
        names: set[str] = set()
        for expectation in self.expectations:
            names.update(_columns_of(expectation["kwargs"]))
        return frozenset(names)


@dataclass(frozen=True)
class QualityReport:
    """The verdict on one publication's accepted rows."""

    dataset: str
    rows: int
    passed: bool
    failures: tuple[str, ...]  # one line per failed expectation or gate
    results: dict[str, Any]  # JSON-safe and deterministic, for the publication record

    def summary(self) -> str:
        """One line for a log or the CLI."""
        if self.passed:
            return f"{self.dataset}: {self.rows} rows passed the quality gate"
        more = len(self.failures) - 1
        tail = f" (and {more} more)" if more else ""
        return f"{self.dataset}: publication rejected by the quality gate: {self.failures[0]}{tail}"


class QualityFailed(ExchangeError):
    """A publication failed its dataset-level quality gate; `report` holds every failure."""

    def __init__(self, report: QualityReport) -> None:
        super().__init__(report.summary())
        self.report = report


def load_suite(dataset: str) -> QualitySuite:
    """Read and check `schemas/quality/<dataset>.json` (Great Expectations is not imported)."""
    if not _DATASET_NAME.match(dataset):
        raise QualitySuiteInvalid(f"not a dataset name: {dataset!r}")
    path = schemas_dir() / QUALITY_DIR / f"{dataset}.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise QualitySuiteInvalid(f"no quality suite for {dataset}: {path} is missing") from None
    except OSError as error:
        raise QualitySuiteInvalid(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise QualitySuiteInvalid(f"{path} is not UTF-8 JSON: {error}") from None
    try:
        return _parse_suite(dataset, document, hashlib.sha256(raw).hexdigest())
    except _Malformed as problem:
        raise QualitySuiteInvalid(f"{path}: {problem}") from None


def check_quality(
    dataset: str, table: pa.Table, *, previous_rows: int | None, rows: int | None = None
) -> QualityReport:
    """Run the dataset's quality gate on a publication's accepted rows.

    `previous_rows` is the row count of the dataset's previous publication (None for the
    first one); the row count may move from it by at most the suite's
    `max_row_count_change`, as a fraction of it. `rows` is the publication's row count when
    `table` is a sample of it (the expectations then judge the sample, the count is exact).
    """
    if previous_rows is not None and previous_rows < 0:
        raise ValueError(f"previous_rows must not be negative, got {previous_rows}")
    suite = load_suite(dataset)
    rows = table.num_rows if rows is None else rows
    row_count, row_failure = _row_count_gate(rows, previous_rows, suite.max_row_count_change)
    outcomes = _validate(suite, table, _personal_columns(dataset))

    failures = [row_failure] if row_failure else []
    failures += [outcome.line for outcome in outcomes if not outcome.success]
    passed = not failures
    results: dict[str, Any] = {
        "dataset": dataset,
        "suite": suite.name,
        "suite_sha256": suite.sha256,
        "engine": f"great_expectations {_runtime().version}",
        "passed": passed,
        "rows": rows,
        "rows_checked": table.num_rows,
        "row_count": row_count,
        "expectations": [outcome.record for outcome in outcomes],
        "failures": list(failures),
    }
    return QualityReport(dataset, rows, passed, tuple(failures), results)


def require_quality(
    dataset: str, table: pa.Table, *, previous_rows: int | None, rows: int | None = None
) -> QualityReport:
    """`check_quality`, raising `QualityFailed` unless the publication passes."""
    report = check_quality(dataset, table, previous_rows=previous_rows, rows=rows)
    if not report.passed:
        raise QualityFailed(report)
    return report


# --- the suite file -------------------------------------------------------------------


class _Malformed(Exception):
    """A suite file breaks the expected shape; `load_suite` adds the path."""


def _parse_suite(dataset: str, document: object, sha256: str) -> QualitySuite:
    if not isinstance(document, dict):
        raise _Malformed("the suite must be a JSON object")
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise _Malformed('"name" must be a non-empty string')
    extension = document.get(EXTENSION)
    if not isinstance(extension, dict):
        raise _Malformed(f'"{EXTENSION}" must be an object')
    if extension.get("dataset") != dataset:
        raise _Malformed(f'"{EXTENSION}.dataset" must be {dataset!r}')
    limit = extension.get("max_row_count_change")
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int | float)
        or not math.isfinite(limit)
        or limit <= 0
    ):
        raise _Malformed(f'"{EXTENSION}.max_row_count_change" must be a positive number')
    expectations = document.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise _Malformed('"expectations" must be a non-empty list')
    seen: set[str] = set()
    for number, expectation in enumerate(expectations, start=1):
        _check_expectation(number, expectation)
        identity = json.dumps([expectation["type"], expectation["kwargs"]], sort_keys=True)
        if identity in seen:
            raise _Malformed(f"expectation {number} repeats an earlier one")
        seen.add(identity)
    return QualitySuite(dataset, name, tuple(expectations), float(limit), sha256)


def _check_expectation(number: int, expectation: object) -> None:
    if not isinstance(expectation, dict):
        raise _Malformed(f"expectation {number} must be an object")
    unknown = set(expectation) - _EXPECTATION_KEYS
    if unknown:
        raise _Malformed(f"expectation {number} has unknown keys: {', '.join(sorted(unknown))}")
    kind = expectation.get("type")
    if kind not in EXPECTATION_TYPES:
        raise _Malformed(f"expectation {number}: {kind!r} is not a supported expectation type")
    kwargs = expectation.get("kwargs")
    if not isinstance(kwargs, dict):
        raise _Malformed(f'expectation {number} ({kind}): "kwargs" must be an object')
    reserved = set(kwargs) & _RESERVED_KWARGS
    if reserved:
        raise _Malformed(
            f"expectation {number} ({kind}): a suite may not set {', '.join(sorted(reserved))}"
        )
    if not kind.startswith("expect_table_") and not _columns_of(kwargs):
        raise _Malformed(f"expectation {number} ({kind}) names no column")
    if not isinstance(expectation.get("meta", {}), dict):
        raise _Malformed(f'expectation {number} ({kind}): "meta" must be an object')


def _columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    names = [kwargs[key] for key in _COLUMN_KWARGS if key in kwargs]
    names += kwargs.get("column_list") or []
    return [str(name) for name in names]


def _personal_columns(dataset: str) -> frozenset[str] | None:
    """Columns any version of the dataset's contract marks personal; None if none is found."""
    personal: set[str] = set()
    paths = sorted((schemas_dir() / "datasets" / dataset).glob("*.json"))
    for path in paths:
        try:
            contract = json.loads(path.read_text("utf-8"))
            personal.update(str(name) for name in contract[EXTENSION]["personal"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a contract that cannot be read: treat every column as personal
    return frozenset(personal) if paths else None


# --- the row-count gate ---------------------------------------------------------------


def _row_count_gate(
    rows: int, previous: int | None, limit: float
) -> tuple[dict[str, Any], str | None]:
    record: dict[str, Any] = {"previous": previous, "change": None, "limit": limit}
    if previous is None or previous == 0:
        # No previous publication, or an empty one: there is no ratio to hold the count to.
        record["passed"] = True
        return record, None
    change = Fraction(abs(rows - previous), previous)
    record["change"] = float(change)
    # Exact arithmetic, so a count exactly at the limit passes whatever the float rounding.
    record["passed"] = change <= Fraction(repr(limit))
    if record["passed"]:
        return record, None
    return record, (
        f"row count {rows} differs from the previous publication's {previous} "
        f"by {_percent(float(change))} % (limit {_percent(limit)} %)"
    )


# --- Great Expectations ---------------------------------------------------------------


@dataclass(frozen=True)
class _Runtime:
    version: str
    batch_definition: Any  # GX's whole-dataframe batch definition on a pandas data source
    lock: threading.Lock  # one validation at a time through the shared context


@dataclass(frozen=True)
class _Outcome:
    success: bool
    line: str  # the failure line (empty when the expectation passed)
    record: dict[str, Any]  # JSON-safe, for the results


_runtime_lock = threading.Lock()
_runtime_instance: _Runtime | None = None
_compiled: dict[str, Any] = {}  # suite sha256 -> GX ExpectationSuite


def _runtime() -> _Runtime:
    """The process's one ephemeral GX context, set up on first use."""
    global _runtime_instance
    with _runtime_lock:
        if _runtime_instance is None:
            _runtime_instance = _start_runtime()
        return _runtime_instance


def _start_runtime() -> _Runtime:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # GX fingerprints every pandas batch by hashing all of its cells, twice per validation:
    # about 0.3 s per million-row string column, for a batch marker that is never kept here.
    # A threshold of 0 skips it (the constant is read at each batch load).
    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas(name="onceonly").add_dataframe_asset(name="accepted")
    batch_definition = asset.add_batch_definition_whole_dataframe(name="publication")
    return _Runtime(str(gx.__version__), batch_definition, threading.Lock())


def _gx_suite(suite: QualitySuite) -> Any:
    """The suite as GX objects, built once per file content; GX's own checks apply here."""
    runtime = _runtime()
    with runtime.lock:
        cached = _compiled.get(suite.sha256)
    if cached is not None:
        return cached

    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for index, expectation in enumerate(suite.expectations):
        kind = expectation["type"]
        try:
            configuration = ExpectationConfiguration(
                type=kind,
                kwargs=json.loads(json.dumps(expectation["kwargs"])),  # GX may add to it
                meta={**expectation.get("meta", {}), _INDEX: index},
            )
            expectations.append(configuration.to_domain_obj())
        except Exception as error:  # GX reports bad kwargs through several error types
            reason = str(error).replace("\n", " ")
            raise QualitySuiteInvalid(
                f"{suite.dataset} quality suite, expectation {index + 1} ({kind}): {reason}"
            ) from error
    built = gx.ExpectationSuite(name=suite.name, expectations=expectations)
    if len(built.expectations) != len(suite.expectations):
        # GX logs and drops an expectation it cannot add; a gate must not lose one quietly.
        raise QualitySuiteInvalid(f"{suite.dataset} quality suite: GX dropped an expectation")
    with runtime.lock:
        _compiled[suite.sha256] = built
    return built


def _frame(table: pa.Table, columns: frozenset[str]) -> Any:  # a pandas DataFrame
    """The suite's columns as a pandas frame.

    Plain conversion, not Arrow-backed dtypes: pandas 3 already keeps strings in Arrow, and
    GX's range checks only vectorise on NumPy numbers (on `int64[pyarrow]` they call Python
    per value, ten times slower). A column the table lacks is left out, and the expectations
    on it fail with GX's "column does not exist".
    """
    arrays: dict[str, pa.ChunkedArray] = {}
    for name in sorted(columns & set(table.column_names)):
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
            column = column.cast(pa.string())  # the contracts' dates are ISO strings
        arrays[name] = column
    if not arrays:
        return pa.table({"_": pa.nulls(table.num_rows)}).to_pandas()
    return pa.table(arrays).to_pandas()


def _validate(
    suite: QualitySuite, table: pa.Table, personal: frozenset[str] | None
) -> list[_Outcome]:
    runtime = _runtime()
    gx_suite = _gx_suite(suite)
    frame = _frame(table, suite.columns)
    with runtime.lock:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(gx_suite, result_format=_RESULT_FORMAT)
    by_index: dict[int, dict[str, Any]] = {}
    for result in validation.results:
        document = result.to_json_dict()
        by_index[int(document["expectation_config"]["meta"][_INDEX])] = document
    if sorted(by_index) != list(range(len(suite.expectations))):
        raise RuntimeError(f"GX returned results for {sorted(by_index)} of {suite.name}")
    return [
        _outcome(expectation, by_index[index], personal)
        for index, expectation in enumerate(suite.expectations)
    ]


def _outcome(
    expectation: Mapping[str, Any], document: Mapping[str, Any], personal: frozenset[str] | None
) -> _Outcome:
    kind: str = expectation["type"]
    kwargs: Mapping[str, Any] = expectation["kwargs"]
    columns = _columns_of(kwargs)
    result = document.get("result") or {}
    error = _exception_message(document.get("exception_info"))
    success = bool(document.get("success")) and error is None

    kept = {key: _plain(result[key]) for key in _KEPT_RESULT_KEYS if key in result}
    samples: list[Any] = []
    disclosable = personal is not None and not set(columns) & personal
    if not disclosable and kind in _SINGLE_VALUE_TYPES and kept.get("observed_value") is not None:
        # A column's minimum or maximum is one row's value: not shown from a personal column.
        kept["observed_value"] = _WITHHELD
    listed = "partial_unexpected_list" in result
    if listed and disclosable and kind != "expect_column_values_to_not_be_null":
        for value in _plain(result.get("partial_unexpected_list") or []):
            if value not in samples:
                samples.append(value)
        samples = samples[:_SAMPLES]
        kept["unexpected_examples"] = samples
    record: dict[str, Any] = {
        "expectation": kind,
        "kwargs": _plain(kwargs),
        "success": success,
        "result": kept,
    }
    if error is not None:
        record["error"] = error
    line = "" if success else _failure_line(kind, columns, kwargs, kept, samples, error)
    return _Outcome(success, line, record)


def _exception_message(info: object) -> str | None:
    """GX's exception info is flat for an expectation, keyed by metric for a metric failure."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info or "exception_message" in info:
        if info.get("raised_exception") or info.get("exception_message"):
            return str(info.get("exception_message") or "an exception was raised")
        return None
    for nested in info.values():
        message = _exception_message(nested)
        if message is not None:
            return message
    return None


def _failure_line(
    kind: str,
    columns: Sequence[str],
    kwargs: Mapping[str, Any],
    result: Mapping[str, Any],
    samples: Sequence[Any],
    error: str | None,
) -> str:
    label = f"{kind}({', '.join(columns)})"
    if error is not None:
        return f"{label}: could not be evaluated: {error}"
    count = result.get("unexpected_count")
    if isinstance(count, int):
        noun = "null value" if kind == "expect_column_values_to_not_be_null" else "unexpected value"
        line = f"{label}: {count} {noun}{'' if count == 1 else 's'}"
        share = result.get("unexpected_percent")
        mostly = kwargs.get("mostly")
        if isinstance(share, int | float):
            allowed = ""
            if isinstance(mostly, int | float) and mostly < 1:
                allowed = f", at most {_percent(1 - mostly)} % allowed"
            line += f" ({_percent(share / 100)} %{allowed})"
        if samples:
            line += ", e.g. " + ", ".join(_show(value) for value in samples)
        if kind == "expect_column_values_to_be_between":
            line += f"; expected {_bounds(kwargs)}"
        return line
    if "observed_value" in result:
        observed = result["observed_value"]
        if observed == _WITHHELD:
            return f"{label}: expected {_bounds(kwargs)}; the observed value is {_WITHHELD}"
        seen = "no value" if observed is None else _show(observed)
        return f"{label}: observed {seen}, expected {_bounds(kwargs)}"
    return f"{label}: failed"


def _bounds(kwargs: Mapping[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        return f"between {_show(low)} and {_show(high)}"
    if low is not None:
        return f"at least {_show(low)}"
    if high is not None:
        return f"at most {_show(high)}"
    return "a value"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "(" + ", ".join(_show(item) for item in value) + ")"
    return str(value)


def _percent(fraction: float) -> str:
    """A fraction as a percentage for people: 79.6, 20, 0.0004."""
    value = fraction * 100
    if value == 0:
        return "0"
    decimals = 1 if value >= 1 else max(2, 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")


def _plain(value: object) -> Any:
    """JSON-safe plain Python: NumPy scalars unwrapped, NaN and NA as null, dates as ISO."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    unwrap = getattr(value, "item", None)  # NumPy scalars
    if callable(unwrap):
        return _plain(unwrap())
    isoformat = getattr(value, "isoformat", None)  # dates and datetimes
    if callable(isoformat):
        return str(isoformat())
    return str(value)
