"""The steward path end to end: contracts, packages, signatures, atomic ingest.

Invariants checked here (DESIGN.md): nothing lost (rows read = accepted + quarantined,
each quarantined row with its source position and reason); atomic publication (also
after kill -9 mid-ingest); contracts are files; every publication stays queryable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from connectors import load_source, source_files
from exchange import registry
from exchange.contracts import contract_files, load_contract, load_contract_file
from exchange.home import Home, init_home
from exchange.keys import generate_key, raw_public
from exchange.package import DATA, MANIFEST, QUARANTINE, PackageInvalid, build_package
from exchange.publish import PublicationRefused, department_signer, ingest, publish
from exchange.quality import QualityFailed
from exchange.store import ExchangeStore, publication_table
from exchange.synth.city import generate_city

SOURCES = Path(__file__).resolve().parent.parent / "connectors" / "sources"
DEPARTMENTS = {"public_security": "公安", "health": "卫健", "civil_affairs": "民政",
               "hrss": "人社", "housing": "住建", "education": "教育"}  # fmt: skip

# What each planted fault must be quarantined as (the rule that catches it).
EXPECTED_RULE = {
    "bad_check_digit": {"format"},
    "impossible_date": {"format", "pattern"},  # a date's format, a month's pattern
    "missing_required": {"required"},
    "duplicate_key": {"unique"},
    "wrong_type": {"type"},
    "out_of_range": {"minimum", "maximum"},
    "wrong_encoding": {"encoding"},
    "truncated_row": {"fields", "json"},  # too few CSV fields, or a cut JSON line
    "stray_delimiter": {"fields"},
    "stray_quote": {"pattern"},  # a quote is not a letter of a name
}


def make_home(root: Path) -> tuple[Home, ExchangeStore]:
    home = init_home(Home(root))
    store = ExchangeStore(home.exchange_db)
    for code, name in DEPARTMENTS.items():
        key = generate_key(home.department_keys / f"{code}.pem")
        registry.add_department(store, code, name, raw_public(key))
    for path in contract_files():
        registry.register_schema(store, load_contract_file(path))
    return home, store


@pytest.fixture(scope="module")
def published(dirty_city: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root, _ = dirty_city
    home, store = make_home(tmp_path_factory.mktemp("home") / "h")
    results = {}
    for path in source_files(SOURCES):
        source = load_source(path)
        results[source.dataset] = publish(store, home, source, city=root)
    yield {"home": home, "store": store, "city": root, "results": results}
    store.close()


def test_every_planted_fault_is_quarantined_with_its_reason(published: dict[str, Any]) -> None:
    manifest = [
        json.loads(line) for line in (published["city"] / "faults.jsonl").read_text().splitlines()
    ]
    planted = defaultdict(dict)
    for fault in manifest:
        planted[fault["dataset"]][fault["row"]] = fault
    for dataset, (package, publication) in published["results"].items():
        quarantine = pq.read_table(package.path / QUARANTINE).to_pylist()
        rules = defaultdict(set)
        fields = defaultdict(set)
        for violation in quarantine:
            rules[violation["row"]].add(violation["keyword"])
            fields[violation["row"]].add(violation["field"])
        # Exactly the planted rows are quarantined: every fault caught, no clean row lost.
        assert set(rules) == set(planted[dataset]), dataset
        for row, fault in planted[dataset].items():
            assert rules[row] & EXPECTED_RULE[fault["kind"]], (dataset, fault, rules[row])
            if fault["kind"] in (
                "bad_check_digit",
                "missing_required",
                "wrong_type",
                "out_of_range",
            ):
                assert fault["field"] in fields[row], (dataset, fault, fields[row])
        assert publication.rows["quarantined"] == len(planted[dataset])


def test_nothing_is_lost(published: dict[str, Any]) -> None:
    summary = json.loads((published["city"] / "city.json").read_text())
    written = {d["dataset"]: d["rows"] for d in summary["datasets"]}
    store = published["store"]
    for dataset, (package, publication) in published["results"].items():
        rows = publication.rows
        assert rows["read"] == written[dataset]  # every row the department wrote was read
        assert rows["read"] == rows["accepted"] + rows["quarantined"]
        visible = store.one(f'SELECT count(*) AS n FROM published."{dataset}"')
        assert visible == {"n": rows["accepted"]}
        quarantined = pq.read_table(package.path / QUARANTINE, columns=["row"])
        assert len(set(quarantined.column("row").to_pylist())) == rows["quarantined"]
        assert pq.read_metadata(package.path / DATA).num_rows == rows["accepted"]


def test_accepted_rows_are_typed_by_the_contract(published: dict[str, Any]) -> None:
    store = published["store"]
    types = {r["column_name"]: r["data_type"] for r in store.rows(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'published' AND table_name = 'criminal_records'")}  # fmt: skip
    assert types["sentence_months"] == "BIGINT" and types["person_id"] == "VARCHAR"
    contract = load_contract("criminal_records", "1.0.0")
    assert list(types) == ["_row", *contract.properties]  # each row keeps its source position


def test_republishing_the_same_data_changes_nothing(published: dict[str, Any]) -> None:
    store, home = published["store"], published["home"]
    before = store.rows("SELECT id FROM publications ORDER BY id")
    source = load_source(SOURCES / "public_security.household_register.toml")
    _, again = publish(store, home, source, city=published["city"])
    assert again.unchanged
    assert again.id == published["results"]["household_register"][1].id
    assert store.rows("SELECT id FROM publications ORDER BY id") == before


def _copy(package_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / package_path.name
    shutil.copytree(package_path, target)
    return target


def test_a_package_signed_by_another_key_is_refused(
    published: dict[str, Any], tmp_path: Path
) -> None:
    store, home = published["store"], published["home"]
    impostor = generate_key(tmp_path / "impostor.pem")
    source = load_source(SOURCES / "health.deaths.toml")
    forged = build_package(source, tmp_path / "out", impostor, city=published["city"])
    with pytest.raises(PackageInvalid, match="does not verify with health's registered key"):
        ingest(store, home, forged.path)


def test_an_altered_package_is_refused(published: dict[str, Any], tmp_path: Path) -> None:
    store, home = published["store"], published["home"]
    package, _ = published["results"]["deaths"]
    data = _copy(package.path, tmp_path / "data")
    (data / DATA).write_bytes((data / DATA).read_bytes()[:-12] + b"\x00" * 12)
    with pytest.raises(PackageInvalid, match=r"data\.parquet has been altered"):
        ingest(store, home, data)
    counts = _copy(package.path, tmp_path / "counts")
    manifest = json.loads((counts / MANIFEST).read_text())
    manifest["rows"]["quarantined"] -= 1  # hide a rejected row
    (counts / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PackageInvalid, match="signature does not verify"):
        ingest(store, home, counts)


def test_a_department_cannot_publish_another_departments_dataset(
    published: dict[str, Any], tmp_path: Path
) -> None:
    # A source config claiming health's dataset for education: the contract says who owns it.
    stolen = dataclasses.replace(
        load_source(SOURCES / "health.deaths.toml"), department="education"
    )
    with pytest.raises(PackageInvalid, match="belongs to health"):
        build_package(stolen, tmp_path, generate_key(tmp_path / "k.pem"), city=published["city"])


def test_unregistered_datasets_and_departments_are_refused(tmp_path: Path, dirty_city: Any) -> None:
    home = init_home(Home(tmp_path / "h"))
    store = ExchangeStore(home.exchange_db)
    key = generate_key(home.department_keys / "health.pem")
    with pytest.raises(registry.UnknownDepartment):
        registry.register_schema(store, load_contract("deaths", "1.0.0"))
    registry.add_department(store, "health", "卫健", raw_public(key))
    package = build_package(
        load_source(SOURCES / "health.deaths.toml"), tmp_path / "o", key, city=dirty_city[0]
    )
    with pytest.raises(PublicationRefused, match="not a registered dataset"):
        ingest(store, home, package.path)
    store.close()


def _two_cities(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "c1", tmp_path / "c2"
    generate_city(first, persons=1500, seed=21)
    generate_city(second, persons=1600, seed=22)
    return first, second


def test_every_publication_stays_queryable_as_of_itself(tmp_path: Path) -> None:
    first, second = _two_cities(tmp_path)
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    _, old = publish(store, home, source, city=first)
    _, new = publish(store, home, source, city=second)
    assert (old.id, new.id) == (1, 2)
    count = "SELECT count(*) AS n FROM {}"
    assert store.one(count.format(publication_table(old.id))) == {"n": 1500}
    assert store.one(count.format(publication_table(new.id))) == {"n": 1600}
    assert store.one(count.format('published."household_register"')) == {"n": 1600}
    store.close()


def test_a_truncated_extract_is_refused_as_a_whole(tmp_path: Path) -> None:
    first = tmp_path / "full"
    generate_city(first, persons=3000, seed=5)
    truncated = tmp_path / "cut"
    shutil.copytree(first, truncated)
    register = truncated / "public_security" / "household_register.csv"
    lines = register.read_bytes().split(b"\r\n")
    register.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    _, kept = publish(store, home, source, city=first)
    with pytest.raises(QualityFailed, match="row count"):
        publish(store, home, source, city=truncated)
    current = store.one("SELECT id FROM current_publications WHERE dataset = 'household_register'")
    assert current == {"id": kept.id}
    store.close()


KILLER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from exchange.home import Home
    from exchange.store import ExchangeStore
    from exchange.publish import ingest
    home = Home(Path(sys.argv[1]))
    store = ExchangeStore(home.exchange_db)
    def pause():
        print("inside the transaction", flush=True)
        time.sleep(120)
    ingest(store, home, Path(sys.argv[2]), before_commit=pause)
    """
)


def test_kill_9_during_ingest_leaves_the_previous_publication(tmp_path: Path) -> None:
    first, second = _two_cities(tmp_path)
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    _, old = publish(store, home, source, city=first)
    signer = department_signer(home, "public_security")
    package = build_package(source, tmp_path / "out", signer, city=second)
    store.close()  # one writer: the child process takes the database
    child = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(home.root), str(package.path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "inside the transaction"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    reopened = ExchangeStore(home.exchange_db)
    assert reopened.rows("SELECT id FROM publications") == [{"id": old.id}]
    assert reopened.one('SELECT count(*) AS n FROM published."household_register"') == {"n": 1500}
    tables = reopened.rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'pub'"
    )
    assert tables == [{"table_name": "p000001"}]
    # And the exchange goes on: the same package now ingests cleanly.
    assert ingest(reopened, home, package.path).rows["read"] == 1600
    reopened.close()


def test_every_contract_has_a_source_and_a_quality_suite() -> None:
    datasets = {p.parent.name for p in contract_files()}
    configured = {load_source(p).dataset for p in source_files(SOURCES)}
    suites = {p.stem for p in (SOURCES.parent.parent / "schemas" / "quality").glob("*.json")}
    assert datasets == configured == suites


def test_the_quality_gate_samples_large_publications_and_counts_exactly(tmp_path: Path) -> None:
    import pyarrow as pa

    from exchange.publish import gate_sample
    from exchange.quality import check_quality

    rows = 2_500
    ids = [f"{i:06d}" for i in range(rows)]
    path = tmp_path / "data.parquet"
    table = pa.table({"_row": pa.array(range(1, rows + 1), pa.int64()), "record_no": ids})
    pq.write_table(table, path, row_group_size=700)
    small = gate_sample(path, "deaths", seed=1, limit=5_000)
    assert small.num_rows == rows  # under the limit: every row
    sample = gate_sample(path, "deaths", seed=1, limit=1_000)
    assert abs(sample.num_rows - 1_000) <= 4  # proportional per row group, rounded
    assert sample.equals(gate_sample(path, "deaths", seed=1, limit=1_000))  # seeded
    assert not sample.equals(gate_sample(path, "deaths", seed=2, limit=1_000))
    assert set(sample.column("record_no").to_pylist()) <= set(ids)
    assert len(set(sample.column("record_no").to_pylist())) == sample.num_rows  # no repeats
    assert "_row" not in sample.column_names  # only the suite's columns are read
    report = check_quality("deaths", sample, previous_rows=None, rows=rows)
    assert (report.results["rows"], report.results["rows_checked"]) == (rows, sample.num_rows)


# --- every publication event is a ledger entry (DESIGN.md: fail closed) ---------------


def _ledger_entries(home: Home) -> list[Any]:
    from exchange.ledgerlink import open_log
    from ledger.entries import decode

    with open_log(home) as log:
        return [decode(log.entry(i)) for i in range(log.size)]


def test_each_publication_and_each_refusal_is_in_the_ledger(tmp_path: Path) -> None:
    first = tmp_path / "full"
    generate_city(first, persons=1500, seed=5)
    truncated = tmp_path / "cut"
    shutil.copytree(first, truncated)
    register = truncated / "public_security" / "household_register.csv"
    lines = register.read_bytes().split(b"\r\n")
    register.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    package, kept = publish(store, home, source, city=first, principal="steward:public_security/li")
    with pytest.raises(QualityFailed):
        publish(store, home, source, city=truncated)
    impostor = generate_key(tmp_path / "impostor.pem")
    forged = build_package(source, tmp_path / "forged", impostor, city=first)
    with pytest.raises(PackageInvalid):
        ingest(store, home, forged.path)
    store.close()

    published, gate, forgery = _ledger_entries(home)
    assert (published.kind, published.outcome, published.publication_id) == (
        "publication", "answered", kept.id)  # fmt: skip
    assert published.principal == "steward:public_security/li"
    assert published.dataset == "household_register" and published.dataset_version == "1.0.0"
    manifest = json.loads((package.path / MANIFEST).read_text())
    from exchange.package import canonical

    assert published.answer_digest == __import__("hashlib").sha256(canonical(manifest)).digest()
    assert (gate.outcome, forgery.outcome) == ("refused", "refused")
    assert "row count" in gate.reason
    assert "registered key" in forgery.reason


def test_a_publication_whose_ledger_entry_fails_does_not_become_current(
    tmp_path: Path, dirty_city: Any
) -> None:
    from exchange.ledgerlink import open_log
    from ledger.store import StoreClosed

    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "health.deaths.toml")
    package = build_package(
        source, tmp_path / "o", department_signer(home, "health"), city=dirty_city[0]
    )
    log = open_log(home)
    log.close()  # a ledger that can no longer write
    with pytest.raises(StoreClosed):
        ingest(store, home, package.path, log=log)
    assert store.one("SELECT count(*) AS n FROM publications") == {"n": 0}
    assert store.one(
        "SELECT count(*) AS n FROM duckdb_views() WHERE schema_name = 'published'"
    ) == {"n": 0}
    # Once the ledger works again, the same package publishes, under a fresh id.
    publication = ingest(store, home, package.path)
    assert publication.id == 2 and _ledger_entries(home)[-1].publication_id == 2
    store.close()


# --- how a publication is stored: a view over its kept, verified Parquet ---------------


def test_a_publication_is_a_view_over_its_kept_package(tmp_path: Path) -> None:
    first, second = _two_cities(tmp_path)
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    package_a, one = publish(store, home, source, city=first)
    _, two = publish(store, home, source, city=second)
    # The same data again, after another publication: a new publication of its own.
    three = ingest(store, home, package_a.path)
    assert (one.id, two.id, three.id) == (1, 2, 3) and not three.unchanged
    views = store.rows(
        "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'pub' ORDER BY view_name"
    )
    assert [v["view_name"] for v in views] == ["p000001", "p000002", "p000003"]
    kept = {p.id: p.package for p in (one, two, three)}
    assert len(set(kept.values())) == 3  # each publication keeps a folder of its own
    for publication, view in zip((one, two, three), views, strict=True):
        assert str(kept[publication.id] / DATA) in view["sql"]
        assert kept[publication.id].parent == home.packages / "household_register"
    # Each reads as of itself, and a point lookup by resident ID finds its row.
    sample = pq.read_table(kept[1] / DATA, columns=["id_number", "name"]).slice(700, 1).to_pylist()
    lookup = "SELECT name FROM {} WHERE id_number = ?"
    for publication in (one, three):
        table = publication_table(publication.id)
        assert store.rows(lookup.format(table), [sample[0]["id_number"]]) == [
            {"name": sample[0]["name"]}
        ]
    assert store.one("SELECT count(*) AS n FROM pub.p000002") == {"n": 1600}
    store.close()


def test_a_refused_ingest_leaves_earlier_kept_packages_alone(tmp_path: Path) -> None:
    first = tmp_path / "full"
    generate_city(first, persons=3000, seed=5)
    truncated = tmp_path / "cut"
    shutil.copytree(first, truncated)
    register = truncated / "public_security" / "household_register.csv"
    lines = register.read_bytes().split(b"\r\n")
    register.write_bytes(b"\r\n".join(lines[: len(lines) // 2]) + b"\r\n")
    home, store = make_home(tmp_path / "h")
    source = load_source(SOURCES / "public_security.household_register.toml")
    _, kept = publish(store, home, source, city=first)
    before = sorted(p.name for p in (home.packages / "household_register").iterdir())
    with pytest.raises(QualityFailed):
        publish(store, home, source, city=truncated)
    assert sorted(p.name for p in (home.packages / "household_register").iterdir()) == before
    assert store.one("SELECT count(*) AS n FROM published.household_register") == {
        "n": kept.rows["accepted"]
    }
    store.close()


def test_data_files_carry_bloom_filters_on_lookup_columns(published: dict[str, Any]) -> None:
    expected = {"household_register": {"id_number"}, "marriages": {"registration_no",
                "husband_id", "wife_id"}, "births": {"cert_no", "child_id", "mother_id",
                "father_id"}}  # fmt: skip
    for dataset, columns in expected.items():
        package, _ = published["results"][dataset]
        meta = pq.ParquetFile(package.path / DATA).metadata
        group = meta.row_group(0)
        with_bloom = {
            group.column(i).path_in_schema
            for i in range(group.num_columns)
            if group.column(i).bloom_filter_offset is not None
        }
        assert with_bloom == columns, dataset


def test_a_package_changed_after_verification_is_not_kept(
    published: dict[str, Any], tmp_path: Path
) -> None:
    from exchange.package import keep_package, open_package

    package, _ = published["results"]["deaths"]
    copy = _copy(package.path, tmp_path / "src")
    verified = open_package(copy)
    (copy / DATA).write_bytes((copy / DATA).read_bytes()[:-12] + b"\x00" * 12)
    with pytest.raises(PackageInvalid, match="changed while it was being kept"):
        keep_package(verified, tmp_path / "kept")


@pytest.mark.parametrize("clash", [False, True])
def test_repeated_keys_are_found_whatever_their_hashes(tmp_path: Path, clash: bool) -> None:
    """The first occurrence wins; rows whose key hashes collide but keys differ are kept."""
    import pyarrow as pa

    from exchange.package import _Keys

    class Clashing(_Keys):
        def digest(self) -> str:
            return "42"  # every key hashes alike: only the exact comparison can tell

    keys = (Clashing if clash else _Keys)(tmp_path, ["person_id", "month"])
    try:
        keys.add(pa.table({"_row": [1, 2, 3], "person_id": ["a", "a", "b"], "month": [1, 2, 1]}))
        keys.add(pa.table({"_row": [5, 7], "person_id": ["a", "b"], "month": [1, 1]}))
        keys.add(pa.table({"_row": [9], "person_id": ["a"], "month": [1]}))
        found = keys.duplicates().to_pylist()
    finally:
        keys.close()
    assert found == [{"row": 5, "first": 1}, {"row": 7, "first": 3}, {"row": 9, "first": 1}]


def test_a_failure_while_streaming_is_raised_and_lets_go_of_the_source(tmp_path: Path) -> None:
    import threading
    import time

    import pyarrow as pa

    from connectors.base import batch
    from exchange.package import _stream
    from exchange.validation import BatchValidator

    contract = load_contract("deaths", "1.0.0")
    validator = BatchValidator(contract)
    released = threading.Event()

    def source() -> Any:
        try:
            for n in range(1, 1001):
                nothing = pa.nulls(1, pa.string())
                yield batch(pa.array([n], pa.int64()), nothing, nothing, [], [])
        finally:
            released.set()

    calls = 0

    def judge(part: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("validation broke")
        return BatchValidator.validate(validator, part)

    validator.validate = judge  # type: ignore[method-assign]
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="validation broke"):
        _stream(source(), validator, tmp_path, None)
    assert released.wait(5), "the source was not let go"
    assert time.perf_counter() - started < 5
