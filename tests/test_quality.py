"""The dataset-level quality gate: suites are files, clean data passes, planted defects fail.

One clean city is built per module (as Arrow tables, straight from the generator) and every
test plants its defect in a copy of one table. Great Expectations is imported once, on the
first check (about 2 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exchange.errors import ExchangeError
from exchange.paths import SCHEMAS_ENV, schemas_dir
from exchange.quality import (
    EXPECTATION_TYPES,
    QualityFailed,
    QualitySuiteInvalid,
    check_quality,
    load_suite,
    require_quality,
)
from exchange.synth.departments import SPECS, build_all
from exchange.synth.population import generate

PERSONS = 3000
DATASETS = [spec.name for spec in SPECS]
UNIQUE = "expect_column_values_to_be_unique"
COMPOUND_UNIQUE = "expect_compound_columns_to_be_unique"
NOT_NULL = "expect_column_values_to_not_be_null"

Tables = dict[str, pa.Table]


@pytest.fixture(scope="module")
def tables() -> Tables:
    rng = np.random.default_rng(1)
    population = generate(PERSONS, rng, dt.date(2026, 6, 30))
    return build_all(population, rng, 36)


def _contract(dataset: str) -> dict[str, Any]:
    """The dataset's newest contract, read here without the code under test."""
    folder = schemas_dir() / "datasets" / dataset
    newest = max(folder.glob("*.json"), key=lambda p: tuple(int(x) for x in p.stem.split(".")))
    contract: dict[str, Any] = json.loads(newest.read_text("utf-8"))
    return contract


def _suite_file(dataset: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (schemas_dir() / "quality" / f"{dataset}.json").read_text("utf-8")
    )
    return document


def _replace(table: pa.Table, column: str, values: list[Any]) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, pa.array(values, table.schema.field(column).type))


def _with_row_value(table: pa.Table, column: str, row: int, value: Any) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    return _replace(table, column, values)


def _failures_of(report: Any, prefix: str) -> list[str]:
    return [line for line in report.failures if line.startswith(prefix)]


# --- the suite files ------------------------------------------------------------------


def test_every_dataset_has_exactly_one_suite() -> None:
    files = {path.stem for path in (schemas_dir() / "quality").glob("*.json")}
    contracts = {path.name for path in (schemas_dir() / "datasets").iterdir() if path.is_dir()}
    assert files == contracts == set(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_suite_loads_and_names_only_contract_columns(dataset: str) -> None:
    suite = load_suite(dataset)
    document = _suite_file(dataset)
    contract = _contract(dataset)

    assert suite.dataset == dataset
    assert suite.name == document["name"]
    assert len(suite.expectations) == len(document["expectations"])
    assert {e["type"] for e in suite.expectations} <= EXPECTATION_TYPES
    assert 0 < suite.max_row_count_change <= 1
    assert suite.columns
    assert suite.columns <= set(contract["properties"])


@pytest.mark.parametrize("dataset", DATASETS)
def test_suite_keeps_the_contract_key_present_and_unique(dataset: str) -> None:
    key = _contract(dataset)["x-onceonly"]["key"]
    expectations = load_suite(dataset).expectations
    not_null = {e["kwargs"]["column"] for e in expectations if e["type"] == NOT_NULL}
    if len(key) == 1:
        unique = [e for e in expectations if e["type"] == UNIQUE]
        assert key[0] in {e["kwargs"]["column"] for e in unique}
    else:
        compound = [e for e in expectations if e["type"] == COMPOUND_UNIQUE]
        assert key in [e["kwargs"]["column_list"] for e in compound]
    # The key must be complete, not just unique where present (GX uniqueness skips nulls).
    assert set(key) <= not_null


def test_suite_file_shape_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), schemas)
    monkeypatch.setenv(SCHEMAS_ENV, str(schemas))
    path = schemas / "quality" / "births.json"
    original = json.loads(path.read_text("utf-8"))

    def write(document: dict[str, Any]) -> None:
        path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")

    broken = json.loads(json.dumps(original))
    broken["expectations"][0]["type"] = "expect_column_values_to_be_of_type"
    write(broken)
    with pytest.raises(QualitySuiteInvalid, match="not a supported expectation type"):
        load_suite("births")

    broken = json.loads(json.dumps(original))
    broken["x-onceonly"]["dataset"] = "deaths"
    write(broken)
    with pytest.raises(QualitySuiteInvalid, match="dataset"):
        load_suite("births")

    broken = json.loads(json.dumps(original))
    broken["x-onceonly"]["max_row_count_change"] = 0
    write(broken)
    with pytest.raises(QualitySuiteInvalid, match="max_row_count_change"):
        load_suite("births")

    broken = json.loads(json.dumps(original))
    broken["expectations"].append(broken["expectations"][0])
    write(broken)
    with pytest.raises(QualitySuiteInvalid, match="repeats"):
        load_suite("births")

    broken = json.loads(json.dumps(original))
    broken["expectations"][0]["kwargs"]["row_condition"] = "father_id.notnull()"
    write(broken)
    with pytest.raises(QualitySuiteInvalid, match="row_condition"):
        load_suite("births")

    path.unlink()
    with pytest.raises(QualitySuiteInvalid, match="missing"):
        load_suite("births")
    with pytest.raises(QualitySuiteInvalid, match="not a dataset name"):
        load_suite("../datasets/births/1.0.0")


def test_expectation_gx_rejects_fails_the_check_not_silently(
    tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), schemas)
    monkeypatch.setenv(SCHEMAS_ENV, str(schemas))
    path = schemas / "quality" / "births.json"
    document = json.loads(path.read_text("utf-8"))
    mistyped = next(e for e in document["expectations"] if "mostly" in e["kwargs"])
    mistyped["kwargs"]["mostyl"] = mistyped["kwargs"].pop("mostly")
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")

    load_suite("births")  # the shape is fine; GX's own check of the kwargs is not
    with pytest.raises(QualitySuiteInvalid, match="mostyl"):
        check_quality("births", tables["births"], previous_rows=None)


# --- clean data -------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", DATASETS)
def test_clean_table_passes_every_expectation(tables: Tables, dataset: str) -> None:
    table = tables[dataset]
    report = check_quality(dataset, table, previous_rows=table.num_rows)

    assert report.passed, report.failures
    assert report.failures == ()
    expectations = report.results["expectations"]
    assert len(expectations) == len(_suite_file(dataset)["expectations"])
    assert all(e["success"] for e in expectations)
    assert report.results["rows"] == report.rows == table.num_rows
    assert require_quality(dataset, table, previous_rows=table.num_rows).passed


# --- planted defects --------------------------------------------------------------------


def test_duplicate_key_fails_without_naming_the_person(tables: Tables) -> None:
    table = tables["household_register"]
    twin = table.column("id_number")[1].as_py()
    report = check_quality(
        "household_register", _with_row_value(table, "id_number", 0, twin), previous_rows=None
    )

    assert not report.passed
    # GX counts every row of a duplicated group: the planted pair is two rows.
    assert _failures_of(report, f"{UNIQUE}(id_number): 2 unexpected values")
    assert len(report.failures) == 1
    # ID numbers are personal: neither the failure nor the stored results name one.
    assert twin not in " ".join(report.failures)
    assert twin not in json.dumps(report.results, ensure_ascii=False)


def test_duplicate_compound_key_fails(tables: Tables) -> None:
    table = tables["contributions"]
    doubled = pa.concat_tables([table, table.slice(5, 1)])
    report = check_quality("contributions", doubled, previous_rows=None)

    assert _failures_of(report, f"{COMPOUND_UNIQUE}(person_id, city_code, month): 2 unexpected")
    assert len(report.failures) == 1


def test_duplicate_non_personal_key_is_named(tables: Tables) -> None:
    table = tables["deaths"]
    record_no = table.column("record_no")[3].as_py()
    report = check_quality(
        "deaths", _with_row_value(table, "record_no", 4, record_no), previous_rows=None
    )

    [line] = _failures_of(report, f"{UNIQUE}(record_no): 2 unexpected values")
    assert f'e.g. "{record_no}"' in line


def _father_ids(table: pa.Table, null_share: float) -> list[str | None]:
    """father_id with exactly the given share of nulls (mother IDs stand in elsewhere)."""
    rows = table.num_rows
    nulls = math.ceil(null_share * rows)
    filler = table.column("mother_id").to_pylist()
    return [None if row < nulls else filler[row] for row in range(rows)]


def test_null_ratio_beyond_the_limit_fails(tables: Tables) -> None:
    table = tables["births"]
    nulled = _replace(table, "father_id", _father_ids(table, 0.35))
    report = check_quality("births", nulled, previous_rows=None)

    [line] = report.failures
    expected_nulls = math.ceil(0.35 * table.num_rows)
    assert line.startswith(f"{NOT_NULL}(father_id): {expected_nulls} null values (35")
    assert line.endswith("at most 30 % allowed)")


def test_null_ratio_within_the_limit_passes(tables: Tables) -> None:
    table = tables["births"]
    nulled = _replace(table, "father_id", _father_ids(table, 0.25))
    assert check_quality("births", nulled, previous_rows=None).passed


def test_value_outside_the_set_fails_and_is_named(tables: Tables) -> None:
    table = _with_row_value(tables["household_register"], "status", 7, "失踪")
    report = check_quality("household_register", table, previous_rows=None)

    assert report.failures == (
        'expect_column_values_to_be_in_set(status): 1 unexpected value (0.033 %), e.g. "失踪"',
    )


def test_share_of_a_value_beyond_its_limit_fails(tables: Tables) -> None:
    table = tables["household_register"]
    deceased = ["死亡" if row % 5 < 2 else "正常" for row in range(table.num_rows)]  # 40 %
    report = check_quality(
        "household_register", _replace(table, "status", deceased), previous_rows=None
    )

    [line] = report.failures
    assert line.startswith("expect_column_values_to_not_be_in_set(status): 1200 unexpected")
    assert "(40 %, at most 30 % allowed)" in line


def test_value_out_of_range_fails(tables: Tables) -> None:
    table = _with_row_value(tables["births"], "birth_weight_g", 2, 99999)
    report = check_quality("births", table, previous_rows=None)

    [line] = report.failures
    assert line.startswith("expect_column_values_to_be_between(birth_weight_g): 1 unexpected")
    assert "e.g. 99999; expected between 500 and 6500" in line


def test_wrong_unit_fails_the_mean(tables: Tables) -> None:
    table = tables["births"]
    kilograms = [round(grams / 1000) for grams in table.column("birth_weight_g").to_pylist()]
    report = check_quality(
        "births", _replace(table, "birth_weight_g", kilograms), previous_rows=None
    )

    [line] = _failures_of(report, "expect_column_mean_to_be_between(birth_weight_g): observed ")
    assert line.endswith(", expected between 2800 and 3800")


def test_implausibly_early_date_fails(tables: Tables) -> None:
    table = _with_row_value(tables["deaths"], "death_date", 9, "1901-02-03")
    report = check_quality("deaths", table, previous_rows=None)

    assert report.failures == (
        'expect_column_min_to_be_between(death_date): observed "1901-02-03", '
        'expected at least "1950-01-01"',
    )


def test_early_date_in_a_personal_column_is_withheld(tables: Tables) -> None:
    table = _with_row_value(tables["births"], "birth_date", 9, "1987-06-05")
    report = check_quality("births", table, previous_rows=None)

    [line] = report.failures
    assert line.startswith("expect_column_min_to_be_between(birth_date): expected at least")
    assert "1987-06-05" not in line
    assert "1987-06-05" not in json.dumps(report.results)


def test_swapped_columns_fail_the_pair_check(tables: Tables) -> None:
    table = tables["cremations"]
    swapped = table.set_column(
        table.schema.get_field_index("cremated_on"), "cremated_on", table.column("death_date")
    ).set_column(table.schema.get_field_index("death_date"), "death_date", table["cremated_on"])
    later = pc.sum(pc.greater(table["cremated_on"], table["death_date"])).as_py()
    report = check_quality("cremations", swapped, previous_rows=None)

    assert later > 0.01 * table.num_rows  # the clean data has cremations after the death day
    assert _failures_of(
        report,
        f"expect_column_pair_values_a_to_be_greater_than_b(cremated_on, death_date): {later} ",
    )


def test_missing_column_fails_rather_than_passes(tables: Tables) -> None:
    table = tables["property"].drop_columns(["area_m2"])
    report = check_quality("property", table, previous_rows=None)

    assert not report.passed
    assert report.failures
    assert all("(area_m2): could not be evaluated" in line for line in report.failures)
    assert all('"area_m2"' in line for line in report.failures)


def test_empty_publication_fails_its_aggregates(tables: Tables) -> None:
    report = check_quality("deaths", tables["deaths"].slice(0, 0), previous_rows=None)

    mean = "expect_column_mean_to_be_between(age): observed no value, expected between 40 and 95"
    assert mean in report.failures


# --- the row-count gate -----------------------------------------------------------------


def test_truncated_extract_is_rejected_against_the_previous_count(tables: Tables) -> None:
    table = tables["household_register"]
    assert table.num_rows == PERSONS
    report = check_quality("household_register", table.slice(0, 612), previous_rows=3000)

    assert report.failures == (
        "row count 612 differs from the previous publication's 3000 by 79.6 % (limit 20 %)",
    )
    assert report.results["row_count"] == {
        "previous": 3000,
        "change": pytest.approx(2388 / 3000),
        "limit": 0.2,
        "passed": False,
    }


@pytest.mark.parametrize(
    ("previous", "passes"),
    [
        (None, True),  # the first publication
        (0, True),  # after an empty one there is no ratio to hold to
        (3000, True),
        (2600, True),  # 15.4 % more
        (2500, True),  # 20 % more: at the limit
        (2499, False),  # 20.05 % more
        (3750, True),  # 20 % fewer: at the limit
        (3751, False),  # 20.02 % fewer
        (30000, False),
    ],
)
def test_row_count_gate_limit(tables: Tables, previous: int | None, passes: bool) -> None:
    table = tables["household_register"]  # 3000 rows
    report = check_quality("household_register", table, previous_rows=previous)

    assert report.passed is passes
    assert report.results["row_count"]["passed"] is passes
    if not passes:
        [line] = report.failures
        assert line.startswith(f"row count 3000 differs from the previous publication's {previous}")
        assert line.endswith("(limit 20 %)")


def test_small_register_has_its_own_limit(tables: Tables) -> None:
    table = tables["id_changes"]
    rows = table.num_rows
    assert rows >= 4
    # id_changes allows 50 %: a previous count 40 % higher passes, twice as high does not.
    assert check_quality("id_changes", table, previous_rows=round(rows / 0.6)).passed
    assert not check_quality("id_changes", table, previous_rows=2 * rows + 1).passed


def test_negative_previous_count_is_a_caller_error(tables: Tables) -> None:
    with pytest.raises(ValueError, match="previous_rows"):
        check_quality("dibao", tables["dibao"], previous_rows=-1)


# --- reports ----------------------------------------------------------------------------


def test_require_quality_raises_with_the_report(tables: Tables) -> None:
    table = _with_row_value(tables["births"], "birth_weight_g", 2, 99999)
    previous = 2 * table.num_rows

    with pytest.raises(QualityFailed) as caught:
        require_quality("births", table, previous_rows=previous)

    error = caught.value
    assert isinstance(error, ExchangeError)
    assert not error.report.passed
    assert len(error.report.failures) == 2  # the row count and the weight
    assert error.report.failures[0].startswith(f"row count {table.num_rows} differs")
    assert str(error).startswith("births: publication rejected by the quality gate: row count")
    assert str(error).endswith("(and 1 more)")
    assert "\n" not in str(error)


def test_results_are_json_and_deterministic(tables: Tables) -> None:
    table = _with_row_value(tables["births"], "birth_weight_g", 2, 99999)
    first = check_quality("births", table, previous_rows=900)
    second = check_quality("births", table, previous_rows=900)

    text = json.dumps(first.results, ensure_ascii=False, allow_nan=False, sort_keys=True)
    assert json.loads(text) == first.results  # nothing that JSON would change (NumPy, NaN, …)
    assert first.results == second.results
    assert first.results["passed"] is False
    assert first.results["failures"] == list(first.failures)
    suite_file = (schemas_dir() / "quality" / "births.json").read_bytes()
    assert first.results["suite_sha256"] == hashlib.sha256(suite_file).hexdigest()
    weights = [
        e for e in first.results["expectations"] if e["kwargs"].get("column") == "birth_weight_g"
    ]
    assert weights[0]["kwargs"] == {"column": "birth_weight_g", "min_value": 500, "max_value": 6500}
    assert weights[0]["result"]["unexpected_count"] == 1
    assert weights[0]["result"]["unexpected_examples"] == [99999]
