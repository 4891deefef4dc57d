"""The caseworker path: policy, fail-closed ledgering, minimal signed answers, batches.

Invariants checked here (DESIGN.md): fail closed (no answer without a durable ledger
entry; refusals and errors are entries too), minimal disclosure (answers name the
publications they relied on and can be re-derived as of them), no personal data in the
ledger, deny by default, injectable time.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import demo
from exchange.ask import (
    AnswerRecorder,
    AskArchive,
    AskRefused,
    Exchange,
    answer_digest,
    canonical_answer,
)
from exchange.facts import all_facts, evaluate, pin_publications
from exchange.home import Home
from exchange.ledgerlink import log_verifier, open_log
from exchange.policy import load_policy
from exchange.residentid import check_character
from exchange.store import ExchangeStore
from ledger.entries import Entry, decode
from ledger.errors import LedgerError
from ledger.log import Log, verify_receipt
from ledger.note import Signer, verify_note
from ledger.store import LedgerStore, StoreFailed

NOW = dt.datetime(2026, 7, 1, 9, 30, tzinfo=dt.UTC)
HRSS = {"principal": "caseworker:hrss/zhang", "service_matter": "RS-YL-01"}
CASE = "RS-2026-000123"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ask")
    home = Home(root / "home")
    demo.run(home, root / "city", persons=3000, seed=7, dirty_rate=0.0)
    store = ExchangeStore(home.exchange_db)
    rows = store.rows(
        'SELECT id_number, status FROM published."household_register" ORDER BY id_number'
    )
    dead = {r["person_id"] for r in store.rows('SELECT person_id FROM published."deaths"')}
    store.close()
    alive = [r["id_number"] for r in rows if r["status"] == "正常" and r["id_number"] not in dead]
    return {"home": home, "root": root, "alive": alive, "dead": sorted(dead)}


def _entries(home: Home) -> list[Any]:
    with open_log(home) as log:
        return [decode(log.entry(i)) for i in range(log.size)]


def test_an_answer_is_minimal_signed_and_ledgered_first(city: dict[str, Any]) -> None:
    person = city["alive"][0]
    with Exchange.open(city["home"]) as exchange:
        answer = exchange.ask("person.alive", {"person_id": person}, case_ref=CASE, now=NOW, **HRSS)
        entry = decode(exchange.log.entry(answer.ledger_index))
    assert answer.result is True
    assert (entry.kind, entry.outcome, entry.fact_id) == ("ask", "answered", "person.alive")
    assert (entry.principal, entry.service_matter, entry.case_ref) == (
        HRSS["principal"],
        "RS-YL-01",
        CASE,
    )
    assert entry.time == "2026-07-01T09:30:00Z"  # injectable time
    assert entry.relied_on == answer.relied_on and len(answer.relied_on) == 4
    # The digest in the ledger is recomputable from the answer the caseworker holds.
    canonical = canonical_answer(
        "person.alive@1.0.0", answer.params, answer.result, answer.relied_on, answer.time
    )
    assert entry.answer_digest == answer_digest(canonical, bytes.fromhex(answer.nonce))
    assert entry.answer_digest.hex() == answer.digest
    # The receipt is a note signed by the exchange's log key over that digest.
    text, _, _ = verify_note(answer.receipt, [log_verifier(city["home"])])
    assert f"index {answer.ledger_index}\n" in text
    assert base64.b64encode(entry.answer_digest).decode() in text
    # The subject is in the entry only as a keyed tag.
    with Exchange.open(city["home"]) as exchange:
        assert entry.subject_tags == (exchange.subject_tag(person),)


def test_the_answer_follows_the_data(city: dict[str, Any]) -> None:
    with Exchange.open(city["home"]) as exchange:
        dead = exchange.ask("person.alive", {"person_id": city["dead"][0]}, case_ref=CASE, **HRSS)
    assert dead.result is False


REFUSALS = {
    "no grant": ({"principal": "caseworker:education/li", "service_matter": "JY-RX-01"}, CASE,
                 "no grant for this fact and service matter"),
    "not on the power list": ({"principal": "caseworker:hrss/zhang", "service_matter": "JY-RX-01"},
                              CASE, "service matter is not on the department's power list"),
    "auditors do not ask": ({"principal": "auditor:audit/wu", "service_matter": "RS-YL-01"}, CASE,
                            "role auditor may not ask facts"),
    "malformed principal": ({"principal": "zhang", "service_matter": "RS-YL-01"}, CASE,
                            "malformed principal"),
    "no case": (HRSS, "", "no case reference"),
    "malformed case": (HRSS, "whatever 110105194912310021", "malformed case reference"),
}  # fmt: skip


@pytest.mark.parametrize(("who", "case", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refusals_are_ledger_entries_with_their_reason(
    city: dict[str, Any], who: dict[str, str], case: str, reason: str
) -> None:
    person = city["alive"][1]
    with Exchange.open(city["home"]) as exchange:
        with pytest.raises(AskRefused) as refused:
            exchange.ask("person.alive", {"person_id": person}, case_ref=case, **who)
        entry = decode(exchange.log.entry(refused.value.index))
        tag = exchange.subject_tag(person)
    assert entry.outcome == "refused" and entry.reason.startswith(reason)
    assert entry.answer_digest is None and entry.relied_on == ()
    assert entry.subject_tags == (tag,)  # the citizen can see the refused ask too


def test_bad_parameters_and_unknown_facts_are_refused_on_the_record(city: dict[str, Any]) -> None:
    good = city["alive"][2]
    bad = good[:17] + ("0" if good[17] != "0" else "1")  # a wrong check character
    with Exchange.open(city["home"]) as exchange:
        with pytest.raises(AskRefused, match="parameters do not fit") as refused:
            exchange.ask("person.alive", {"person_id": bad}, case_ref=CASE, **HRSS)
        assert decode(exchange.log.entry(refused.value.index)).subject_tags == ()
        with pytest.raises(AskRefused, match="unknown fact"):
            exchange.ask("person.immortal", {"person_id": good}, case_ref=CASE, **HRSS)


def test_fail_closed_no_answer_without_a_durable_entry(city: dict[str, Any]) -> None:
    home = city["home"]
    with Exchange.open(home) as exchange:
        before = exchange.log.size
        exchange.log.close()  # the ledger can no longer write: as if its disk failed
        with pytest.raises(LedgerError):
            exchange.ask("person.alive", {"person_id": city["alive"][3]}, case_ref=CASE, **HRSS)
        with pytest.raises(LedgerError):
            exchange.ask_batch(
                "person.alive", pa.table({"person_id": city["alive"][:5]}), case_ref=CASE, **HRSS
            )
    with open_log(home) as log:
        assert log.size == before


def test_a_batch_whose_commit_fails_leaves_no_answers_and_no_archive(
    city: dict[str, Any],
) -> None:
    """The archive file is written while the entries become durable: a failed commit
    (the disk failing at COMMIT, after the entries had their indexes) must leave none."""
    from exchange.ask import archive_path
    from ledger.store import StoreFailed

    home = city["home"]
    batches = archive_path(home).parent / "batches"
    people = pa.table({"person_id": city["alive"][:80]})

    def disk_fails(count: int) -> None:
        raise OSError("no space left on device (simulated)")

    with Exchange.open(home) as exchange:
        exchange.ask_batch("person.alive", people, case_ref=CASE, **HRSS)  # a kept one
        files = sorted(p.name for p in batches.iterdir())
        before = exchange.log.size
        exchange.log._store._before_commit = disk_fails  # the store's hook for a bad disk
        with pytest.raises(StoreFailed):
            exchange.ask_batch("person.alive", people, case_ref=CASE, **HRSS)
        assert sorted(p.name for p in batches.iterdir()) == files  # nothing staged is left
        assert exchange.archive.get(before) is None
    with open_log(home) as log:
        assert log.size == before


def test_rate_limits_and_embargo_rights(city: dict[str, Any]) -> None:
    policy = dataclasses.replace(load_policy(), per_minute=3)
    person = city["alive"][4]
    with Exchange.open(city["home"], policy=policy) as exchange:
        for second in range(3):
            exchange.ask("person.alive", {"person_id": person}, case_ref=CASE,
                         now=NOW + dt.timedelta(seconds=second), **HRSS)  # fmt: skip
        with pytest.raises(AskRefused, match="rate limit"):
            exchange.ask("person.alive", {"person_id": person}, case_ref=CASE,
                         now=NOW + dt.timedelta(seconds=10), **HRSS)  # fmt: skip
        # A minute later the window has moved on.
        exchange.ask("person.alive", {"person_id": person}, case_ref=CASE,
                     now=NOW + dt.timedelta(seconds=61), **HRSS)  # fmt: skip
        # Embargo: only under a covert grant (public security's investigations).
        with pytest.raises(AskRefused, match="embargo"):
            exchange.ask("person.alive", {"person_id": person}, case_ref=CASE,
                         embargo_until=dt.date(2027, 1, 1), **HRSS)  # fmt: skip
        covert = exchange.ask(
            "person.alive", {"person_id": person}, principal="caseworker:public_security/chen",
            service_matter="GA-XZ-01", case_ref="GA-2026-0007", embargo_until=dt.date(2027, 1, 1),
        )  # fmt: skip
        assert decode(exchange.log.entry(covert.ledger_index)).embargo_until == "2027-01-01"


def test_receipts_verify_offline_and_fail_when_altered(city: dict[str, Any]) -> None:
    home = city["home"]
    with Exchange.open(home) as exchange:
        answer = exchange.ask(
            "person.alive", {"person_id": city["alive"][5]}, case_ref=CASE, **HRSS
        )
        exchange.log.checkpoint()
        proof = exchange.proof(answer.ledger_index)
        entry = exchange.log.entry(answer.ledger_index)
    verifier = log_verifier(home)
    verify_receipt(proof, entry, verifier)  # the receipt, the entry and the key: nothing else
    lines = proof.split("\n")
    hashed = next(
        i for i, line in enumerate(lines) if i > 1 and line and not line.startswith("index")
    )
    flipped = base64.b64decode(lines[hashed])
    lines[hashed] = base64.b64encode(bytes([flipped[0] ^ 1]) + flipped[1:]).decode()
    with pytest.raises(Exception, match=r"(?i)proof|mismatch|verify"):
        verify_receipt("\n".join(lines), entry, verifier)
    with pytest.raises(Exception, match=r"(?i)proof|mismatch|verify|leaf"):
        verify_receipt(proof, entry[:-1] + bytes([entry[-1] ^ 1]), verifier)


def test_as_of_re_derives_an_old_answer_after_a_newer_publication(tmp_path: Path) -> None:
    from connectors import load_source
    from exchange.publish import publish
    from exchange.synth.city import generate_city

    home = Home(tmp_path / "home")
    demo.run(home, tmp_path / "c1", persons=1500, seed=21, dirty_rate=0.0)
    with ExchangeStore(home.exchange_db) as store:
        row = store.rows(
            "SELECT id_number FROM published.\"household_register\" WHERE status = '正常' "
            'AND id_number NOT IN (SELECT person_id FROM published."deaths") '
            'AND id_number NOT IN (SELECT person_id FROM published."cremations") '
            "ORDER BY id_number LIMIT 1"
        )
        person = row[0]["id_number"]
        first = store.one("SELECT max(id) AS id FROM publications")["id"]  # type: ignore[index]
    # A later register in which that person is marked deceased.
    generate_city(tmp_path / "c2", persons=1500, seed=21, dirty_rate=0.0)
    register = tmp_path / "c2" / "public_security" / "household_register.csv"
    raw = register.read_bytes().decode("gb18030")
    line = next(line for line in raw.split("\r\n") if line.startswith(person))
    register.write_bytes(raw.replace(line, line.replace(",正常", ",死亡")).encode("gb18030"))
    sources = Path(__file__).resolve().parent.parent / "connectors" / "sources"
    with ExchangeStore(home.exchange_db) as store:
        _, newer = publish(
            store, home, load_source(sources / "public_security.household_register.toml"),
            city=tmp_path / "c2",
        )  # fmt: skip
    assert newer.id > first
    with Exchange.open(home) as exchange:
        now_answer = exchange.ask("person.alive", {"person_id": person}, case_ref=CASE, **HRSS)
        then_answer = exchange.ask(
            "person.alive", {"person_id": person}, case_ref=CASE, as_of=first, **HRSS
        )
    assert (now_answer.result, then_answer.result) == (False, True)
    assert newer.id in now_answer.relied_on and newer.id not in then_answer.relied_on
    assert max(then_answer.relied_on) <= first


INJECTIONS = [
    "'; DROP TABLE publications; --",
    "x' OR '1'='1",
    '") UNION SELECT * FROM publications --',
    "110105194912310021'; DELETE FROM pub.p000001; --",
    "$1",
    "{params}",
    "\x00",
    "NULL",
]


def test_injection_strings_never_reach_sql(city: dict[str, Any]) -> None:
    home = city["home"]
    with ExchangeStore(home.exchange_db) as store:
        before = store.rows("SELECT id, rows_accepted FROM publications ORDER BY id")
    with Exchange.open(home) as exchange:
        valid = city["alive"][6]
        for fact in all_facts():
            for parameter in fact.parameters:
                for attack in INJECTIONS:
                    params = {p.name: _sample(p, valid) for p in fact.parameters}
                    params[parameter.name] = attack
                    department, matter = _granted(fact.id)
                    with pytest.raises(AskRefused, match="parameters do not fit"):
                        exchange.ask(fact.id, params, principal=f"caseworker:{department}/x",
                                     service_matter=matter, case_ref=CASE)  # fmt: skip
        # Below the contract checks, the query itself takes the text as data, not SQL:
        # every attack string, unchecked, is just a value that matches nothing.
        cursor = exchange.store.con.cursor()
        for fact in all_facts():
            raw = pa.table(
                {"_n": pa.array(range(len(INJECTIONS)), pa.int64())}
                | {p.name: _raw_column(p, INJECTIONS) for p in fact.parameters}
                | {"_today": pa.array([NOW.date()] * len(INJECTIONS), pa.date32())}
            )
            answers = evaluate(cursor, fact, raw, pin_publications(cursor, fact))
            assert answers.num_rows == len(INJECTIONS)
        # And through a batch file.
        batch = tmp = city["root"] / "attack.csv"
        tmp.write_text(
            "person_id\n" + "\n".join(f'"{a}"' for a in INJECTIONS if "\x00" not in a) + "\n"
        )
        from exchange.batchio import read_params

        out = exchange.ask_batch("person.alive", read_params(batch), case_ref=CASE, **HRSS)
        assert set(out.column("outcome").to_pylist()) == {"refused"}
    with ExchangeStore(home.exchange_db) as store:
        assert store.rows("SELECT id, rows_accepted FROM publications ORDER BY id") == before


def _granted(fact_id: str) -> tuple[str, str]:
    grant = next(g for g in load_policy().grants if g.fact == fact_id)
    return grant.department, grant.service_matter


def _sample(parameter: Any, resident: str) -> str:
    return {"resident_id": resident, "division_code": "440106", "city_code": "440100",
            "integer": "12", "date": "2026-01-01", "enum": (parameter.values or ("x",))[0],
            "string": "x"}[parameter.type]  # fmt: skip


def _raw_column(parameter: Any, values: list[str]) -> pa.Array:
    if parameter.type == "integer":
        return pa.array([len(v) for v in values], pa.int64())
    if parameter.type == "date":
        return pa.array([NOW.date()] * len(values), pa.date32())
    return pa.array(values, pa.string())


def test_a_batch_is_one_entry_per_subject_in_one_commit(city: dict[str, Any]) -> None:
    people = city["alive"][:50] + city["dead"][:50]
    bad = people[0][:17] + ("0" if people[0][17] != "0" else "1")
    with Exchange.open(city["home"]) as exchange:
        before = exchange.log.size
        out = exchange.ask_batch(
            "person.alive", pa.table({"person_id": [*people, bad]}), case_ref=CASE, now=NOW, **HRSS
        )
        entries = [decode(exchange.log.entry(i)) for i in range(before, exchange.log.size)]
        tags = [exchange.subject_tag(p) for p in people]
        kept = exchange.archive.get(before + 7)
    # The archive keeps each question, so an auditor can recompute the ledgered digest.
    assert kept is not None and kept["params"] == {"person_id": people[7]}
    canonical = canonical_answer(
        kept["fact"], kept["params"], kept["result"], tuple(kept["relied_on"]), kept["time"]
    )
    assert answer_digest(canonical, bytes.fromhex(kept["nonce"])) == entries[7].answer_digest
    assert out.num_rows == 101 == len(entries)
    assert out.column("answer").to_pylist() == [True] * 50 + [False] * 50 + [None]
    assert out.column("outcome").to_pylist()[-1] == "refused"
    assert out.column("ledger_index").to_pylist() == list(range(before, before + 101))
    assert [e.subject_tags for e in entries[:100]] == [(t,) for t in tags]
    assert entries[-1].outcome == "refused" and entries[-1].subject_tags == ()


def test_ask_batch_cli_writes_answers(city: dict[str, Any], tmp_path: Path) -> None:
    params = tmp_path / "pensioners.parquet"
    pq.write_table(pa.table({"person_id": city["alive"][:20] + city["dead"][:5]}), params)
    out = tmp_path / "answers.csv"
    result = _cli(city["home"], "ask-batch", "person.alive", "--params", str(params),
                  "--as", HRSS["principal"], "--purpose", "RS-YL-01", "--case", CASE,
                  "--out", str(out), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["answered"], summary["refused"]) == (25, 25, 0)
    lines = out.read_text().splitlines()
    assert lines[0].startswith('"person_id","answer"') and len(lines) == 26


def test_ask_cli_round_trip_to_an_offline_receipt(city: dict[str, Any], tmp_path: Path) -> None:
    home = city["home"]
    person = city["alive"][7]
    who = ["--as", HRSS["principal"], "--purpose", "RS-YL-01", "--case", CASE]
    asked = _cli(home, "ask", "person.alive", "--param", f"person_id={person}", *who, "--json")
    assert asked.returncode == 0, asked.stderr
    index = json.loads(asked.stdout)["ledger_index"]
    other = ["--as", "caseworker:housing/x", "--purpose", "ZJ-GF-01", "--case", CASE]
    refused = _cli(home, "ask", "person.alive", "--param", f"person_id={person}", *other)
    assert refused.returncode == 1 and "no grant" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with open_log(home) as log:
        log.checkpoint()
        entry = log.entry(index)
    receipt = _cli(home, "receipt", str(index))
    assert receipt.returncode == 0, receipt.stderr
    verify_receipt(receipt.stdout, entry, log_verifier(home))


def test_no_resident_id_reaches_the_ledger(city: dict[str, Any]) -> None:
    stored = b"".join(
        path.read_bytes() for path in city["home"].ledger_dir.iterdir() if path.is_file()
    )
    asked = city["alive"][:60] + city["dead"][:60]
    assert stored  # the scan looks at something
    for resident in asked:
        assert resident.encode() not in stored
        assert resident[:17].encode() not in stored


def _cli(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", "--home", str(home.root), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_check_character_is_what_the_bad_ids_above_break() -> None:
    # The refused-parameter tests flip the check character; make sure that really breaks it.
    good = "11010519491231002X"
    assert check_character(good[:17]) == "X"


def test_a_schema_change_that_breaks_a_fact_names_it(city: dict[str, Any]) -> None:
    from exchange import registry
    from exchange.compat import IncompatibleSchema
    from exchange.contracts import contract_from_schema, load_contract

    births = load_contract("births", "1.0.0").schema
    new = json.loads(json.dumps(births))
    new["x-onceonly"]["version"] = new["$id"] = "2.0.0"
    new["$id"] = "urn:onceonly:dataset:births:2.0.0"
    new["properties"]["mother_id"]["type"] = "integer"  # a change readers cannot take
    with (
        ExchangeStore(city["home"].exchange_db) as store,
        pytest.raises(IncompatibleSchema) as refused,
    ):
        registry.register_schema(store, contract_from_schema(new))
    report = refused.value.report
    assert "kinship.parent_of@1.0.0" in report.breaking_facts["mother_id"]
    assert any("kinship.parent_of" in line for line in report.lines())


def test_concurrent_asks_share_queries_and_each_gets_its_own_answer(city: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    people = city["alive"][:40] + city["dead"][:40]
    policy = dataclasses.replace(load_policy(), per_minute=10**6, per_day=10**6)
    with Exchange.open(city["home"], policy=policy) as exchange:

        def ask(person: str) -> tuple[object, int]:
            answer = exchange.ask("person.alive", {"person_id": person}, case_ref=CASE, **HRSS)
            return answer.result, answer.ledger_index

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, people))
        entries = {i: decode(exchange.log.entry(i)) for _, i in answers}
        tags = {p: exchange.subject_tag(p) for p in people}
    assert [a for a, _ in answers] == [True] * 40 + [False] * 40
    assert len({i for _, i in answers}) == 80  # one entry each
    for person, (_, index) in zip(people, answers, strict=True):
        assert entries[index].subject_tags == (tags[person],)  # and each its own subject


@given(
    values=st.lists(
        st.one_of(
            st.text(alphabet="0123456789X -", max_size=20),
            st.sampled_from(["11010519491231002X", " 11010519491231002X ", "110105194912310021"]),
        ),
        min_size=1,
        max_size=8,
    ),
    months=st.one_of(st.integers(-5, 20_000).map(str), st.text(max_size=6)),
    level=st.sampled_from(["associate", "bachelor", "master", "doctorate", "phd", ""]),
)
def test_check_one_agrees_with_the_column_checks(
    values: list[str], months: str, level: str
) -> None:
    from exchange.facts import check_one, load_fact, parameter_table

    today = dt.date(2026, 6, 30)
    for fact_id, make in (
        ("person.alive", lambda v: {"person_id": v}),
        ("social_insurance.months_at_least",
         lambda v: {"person_id": v, "city_code": "440100", "months": months}),
        ("education.degree_at_least", lambda v: {"person_id": v, "level": level}),
    ):  # fmt: skip
        fact = load_fact(fact_id)
        rows = [make(v) for v in values]
        _, ok = parameter_table(fact, rows, today=today)
        assert [check_one(fact, row, today=today) is not None for row in rows] == ok.to_pylist()


@pytest.mark.parametrize(
    ("fact", "who", "columns"),
    [
        ("education.degree_at_least", ("caseworker:hrss/zhang", "RS-ZP-01"),
         {"level": ["bachelor", "master", "doctorate"]}),
        ("social_insurance.months_at_least", ("caseworker:education/li", "JY-RX-01"),
         {"city_code": ["440100", "110100", "440100"], "months": ["0", "12", "36"]}),
    ],
)  # fmt: skip
def test_batch_digests_re_derive_for_every_parameter_type(
    city: dict[str, Any], fact: str, who: tuple[str, str], columns: dict[str, list[str]]
) -> None:
    people = city["alive"][10:13]
    with Exchange.open(city["home"]) as exchange:
        out = exchange.ask_batch(
            fact, pa.table({"person_id": people, **columns}), principal=who[0],
            service_matter=who[1], case_ref=CASE,
        )  # fmt: skip
        for index in out.column("ledger_index").to_pylist():
            kept = exchange.archive.get(index)
            entry = decode(exchange.log.entry(index))
            assert kept is not None
            canonical = canonical_answer(
                kept["fact"], kept["params"], kept["result"], tuple(kept["relied_on"]),
                kept["time"],
            )  # fmt: skip
            assert answer_digest(canonical, bytes.fromhex(kept["nonce"])) == entry.answer_digest


def test_a_database_error_is_an_error_entry_and_no_answer(tmp_path: Path) -> None:
    """DuckDB failing under a fact (here: a publication's view gone) is ledgered, then raised."""
    from exchange.ask import AskFailed

    home = Home(tmp_path / "home")
    demo.run(home, tmp_path / "city", persons=300, seed=5, dirty_rate=0.0)
    with ExchangeStore(home.exchange_db) as store:
        person = store.rows('SELECT id_number FROM published."household_register" LIMIT 1')[0]
        deaths = store.one("SELECT max(id) AS id FROM publications WHERE dataset = 'deaths'")
        assert deaths is not None
        store.con.execute(f"DROP VIEW pub.p{deaths['id']:06d}")
    with Exchange.open(home) as exchange, pytest.raises(AskFailed) as failed:
        exchange.ask("person.alive", {"person_id": person["id_number"]}, case_ref=CASE, **HRSS)
    entry = _entries(home)[failed.value.index]
    assert (entry.outcome, entry.answer_digest) == ("error", None)
    assert entry.reason.startswith("fact could not be answered")


def test_batch_dates_are_iso_text_like_single_answers(city: dict[str, Any]) -> None:
    rows = pa.table({"person_id": [city["dead"][0], city["alive"][0]]})
    with Exchange.open(city["home"]) as exchange:
        out = exchange.ask_batch(
            "person.deceased_since", rows, principal="caseworker:hrss/zhang",
            service_matter="RS-YL-02", case_ref=CASE,
        )  # fmt: skip
        single = exchange.ask(
            "person.deceased_since", {"person_id": city["dead"][0]}, case_ref=CASE,
            principal="caseworker:hrss/zhang", service_matter="RS-YL-02",
        )  # fmt: skip
    assert pa.types.is_string(out.column("answer").type)
    assert out.column("answer").to_pylist() == [single.result, None]
    assert isinstance(single.result, str) and dt.date.fromisoformat(single.result)


def test_a_refused_ask_tags_an_integer_id_as_an_answered_one_does(city: dict[str, Any]) -> None:
    numeric = next(p for p in city["alive"] if p.isdigit())
    with Exchange.open(city["home"]) as exchange:
        tag = exchange.subject_tag(numeric)
        with pytest.raises(AskRefused) as refused:
            exchange.ask(
                "person.alive", {"person_id": int(numeric)}, case_ref=CASE,
                principal="caseworker:education/li", service_matter="JY-RX-01",
            )  # fmt: skip
        answered = exchange.ask("person.alive", {"person_id": int(numeric)}, case_ref=CASE, **HRSS)
    entries = _entries(city["home"])
    assert entries[refused.value.index].subject_tags == (tag,)
    assert entries[answered.ledger_index].subject_tags == (tag,)


@given(
    values=st.lists(st.binary(max_size=300), max_size=40),
    cut=st.integers(0, 40),
    skip=st.integers(0, 3),
    large=st.booleans(),
)
def test_batch_digests_hash_each_value_in_place(
    values: list[bytes], cut: int, skip: int, large: bool
) -> None:
    """`_sha256_each` reads values from Arrow buffers: chunks, slices and 64-bit offsets."""
    import hashlib

    from exchange.ask import _sha256_each

    kind = pa.large_binary() if large else pa.binary()
    cut = min(cut, len(values))
    column = pa.chunked_array(
        [pa.array(values[:cut], kind), pa.array([b"x" * skip, *values[cut:]], kind).slice(1)],
        kind,
    )
    expected = [hashlib.sha256(v).digest() for v in values]
    assert _sha256_each(column) == expected
    assert _sha256_each(column.combine_chunks()) == expected
    with pytest.raises(ValueError, match="missing"):
        _sha256_each(pa.array([b"a", None], kind))


def _recorded_together(
    recorder: AnswerRecorder, asks: list[tuple[Entry, tuple[str, ...]]]
) -> list[object]:
    """Record ``asks`` from a thread each while a recording is under way, so they gather
    into one (the first one's thread waits to write it); then let it write. Returns each
    ask's ledger index or exception."""
    import threading
    import time

    outcomes: list[object] = [None] * len(asks)

    def record(n: int) -> None:
        try:
            outcomes[n] = recorder.record(*asks[n])  # type: ignore[arg-type]
        except Exception as problem:
            outcomes[n] = problem

    threads = [threading.Thread(target=record, args=(n,)) for n in range(len(asks))]
    with recorder._writing:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(recorder._open.entries) < len(asks) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(recorder._open.entries) == len(asks)  # one recording, its writer waiting
    for t in threads:
        t.join()
    return outcomes


def _answered_asks(count: int) -> list[tuple[Entry, tuple[str, ...]]]:
    import hashlib

    asks = []
    for n in range(count):
        digest = hashlib.sha256(b"answer %d" % n).digest()
        entry = Entry(
            kind="ask", time="2026-06-30T08:00:00Z", department="hrss",
            principal="caseworker:hrss/zhang", outcome="answered", fact_id="person.alive",
            fact_version="1.0.0", service_matter="RS-YL-01", case_ref=f"RS-2026-{n:06d}",
            answer_digest=digest, relied_on=(1, 2),
        )  # fmt: skip
        tail = ("person.alive@1.0.0", json.dumps({"person_id": f"P{n:05d}"}), "true", "[1, 2]",
                "2026-06-30T08:00:00Z", f"{n:032x}", digest.hex())  # fmt: skip
        asks.append((entry, tail))
    return asks


def _ledger(tmp_path: Path, before_commit: Any = None) -> Log:
    origin = "onceonly.test/ledger"
    store = LedgerStore(tmp_path / "ledger.sqlite", before_commit=before_commit)
    return Log(store=store, origin=origin, signer=Signer.generate(origin))


def test_concurrent_answers_are_recorded_together_each_under_its_own_index(
    tmp_path: Path,
) -> None:
    archive = AskArchive(tmp_path / "asks" / "archive.sqlite")
    commits: list[int] = []
    with _ledger(tmp_path, commits.append) as log:
        try:
            recorder = AnswerRecorder(log, archive)
            asks = _answered_asks(40)
            indexes = _recorded_together(recorder, asks)
            assert sorted(indexes) == list(range(40))  # type: ignore[type-var]
            assert commits == [40]  # one ledger transaction for the lot
            for (entry, tail), index in zip(asks, indexes, strict=True):
                assert isinstance(index, int)
                assert decode(log.entry(index)) == entry  # each its own entry
                kept = archive.get(index)
                assert kept is not None
                assert (kept["params"], kept["nonce"], kept["digest"]) == (
                    json.loads(tail[1]),
                    tail[5],
                    tail[6],
                )
            alone = recorder.record(*_answered_asks(1)[0])  # type: ignore[arg-type]
            assert alone == 40 and archive.get(40) is not None
        finally:
            archive.close()


def test_a_failed_recording_fails_every_ask_in_it_and_archives_none(tmp_path: Path) -> None:
    def failing_disk(count: int) -> None:
        raise OSError("disk full")

    archive = AskArchive(tmp_path / "asks" / "archive.sqlite")
    with _ledger(tmp_path, failing_disk) as log:
        try:
            outcomes = _recorded_together(AnswerRecorder(log, archive), _answered_asks(5))
            assert all(isinstance(o, StoreFailed) for o in outcomes), outcomes
            assert all(archive.get(n) is None for n in range(5))
            assert log.size == 0
        finally:
            archive.close()
