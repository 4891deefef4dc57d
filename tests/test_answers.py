"""Precomputed answers (exchange.answers): a fact's own query, tabulated for everyone.

What must hold: a table's answer for an ID is the query's answer for that ID over the
same publications and date; an ask answered from a table is ledgered, archived and
re-derivable exactly like one answered by the query; a new publication, another date
or an ``as_of`` ask never reads a table made for something else; a failed build leaves
asks answered by the query.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

import pytest

from exchange import demo
from exchange.answers import (
    PrecomputedAnswers,
    answers_key,
    build_table,
    candidate_ids,
    precomputable,
)
from exchange.ask import Exchange
from exchange.facts import (
    all_facts,
    check_one,
    evaluate_one,
    load_fact,
    pin_publications,
    published,
)
from exchange.home import Home
from exchange.store import ExchangeStore, publication_table

NOW = dt.datetime(2026, 7, 1, 9, 30, tzinfo=dt.UTC)
HRSS = {"principal": "caseworker:hrss/zhang", "service_matter": "RS-YL-01"}
CASE = "RS-2026-000123"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("answers")
    home = Home(root / "home")
    demo.run(home, root / "city", persons=2000, seed=11, dirty_rate=0.0)
    with ExchangeStore(home.exchange_db) as store:
        residents = [
            r["id_number"]
            for r in store.rows('SELECT id_number FROM published."household_register"')
        ]
        dead = [r["person_id"] for r in store.rows('SELECT person_id FROM published."deaths"')]
        changed = store.rows('SELECT old_id, new_id FROM published."id_changes"')
    return {"home": home, "root": root, "residents": residents, "dead": dead, "changed": changed}


def _precomputable() -> list[Any]:
    facts = [load_fact(i) for i in sorted({f.id for f in all_facts()})]
    return [f for f in facts if precomputable(f)]


def test_the_one_resident_facts_are_the_ones_tabulated() -> None:
    assert {f.id for f in _precomputable()} >= {
        "person.alive",
        "person.deceased_since",
        "person.marital_status",
        "person.no_criminal_record",
        "kinship.only_child",
    }
    assert not precomputable(load_fact("kinship.parent_of"))  # two residents
    assert not precomputable(load_fact("person.registered_in_district"))  # and a code


def test_every_table_answers_as_its_query_does(city: dict[str, Any]) -> None:
    """For every tabulated fact: each sampled ID's table answer is the query's own."""
    rng = random.Random(5)
    with ExchangeStore(city["home"].exchange_db) as store:
        cursor = store.con.cursor()
        snapshot = published(cursor)
        register = publication_table(snapshot["household_register"][0][0])
        for fact in _precomputable():
            sources = pin_publications(cursor, fact, snapshot=snapshot)
            table = build_table(
                cursor, fact, sources, NOW.date(), clock=time.perf_counter, population=register
            )
            assert table.key == answers_key(fact, sources, NOW.date())
            # Everyone registered is a candidate, plus every ID the fact's data mentions.
            assert set(city["residents"]) <= {i.decode() for i in table.ids}
            assert list(table.ids) == sorted(table.ids) and len(table.ids) == len(table.results)
            without = candidate_ids(cursor, fact, sources)
            assert len(without) <= len(table)
            sample = rng.sample(city["residents"], 25) + city["dead"][:5]
            sample += [c["old_id"] for c in city["changed"][:5]]
            (parameter,) = fact.parameters
            for resident in sample:
                found, answer = table.lookup(resident)
                assert found, resident
                row = check_one(fact, {parameter.name: resident}, today=NOW.date())
                assert row is not None
                expected = evaluate_one(cursor, fact, row, sources)
                if isinstance(expected, dt.date):
                    expected = expected.isoformat()
                assert answer == expected, (fact.ref, resident)


def test_an_id_outside_the_table_is_not_answered_from_it(city: dict[str, Any]) -> None:
    with ExchangeStore(city["home"].exchange_db) as store:
        cursor = store.con.cursor()
        fact = load_fact("person.alive")
        sources = pin_publications(cursor, fact)
        table = build_table(cursor, fact, sources, NOW.date(), clock=time.perf_counter)
    # The dict (small tables) and the binary search (big ones) agree, in and out.
    searched = dataclasses.replace(table, by_id=None)
    assert table.by_id is not None
    for resident in [*city["residents"][::97], *city["dead"][:5]]:
        assert table.lookup(resident) == searched.lookup(resident)
        assert table.lookup(resident)[0]
    for stranger in ("11010519491231002X", "short", "", "0" * 17 + "X", "Z" * 18):
        assert table.lookup(stranger) == searched.lookup(stranger) == (False, None)


ASKS = (("person.alive", "RS-YL-01"), ("person.deceased_since", "RS-YL-02"))


def _ask_all(exchange: Exchange, people: list[str], now: dt.datetime) -> list[Any]:
    return [
        exchange.ask(
            fact,
            {"person_id": person},
            case_ref=CASE,
            now=now,
            principal=HRSS["principal"],
            service_matter=matter,
        )
        for person in people
        for fact, matter in ASKS
    ]


def test_tabulated_asks_are_the_query_asks_and_re_derive(city: dict[str, Any]) -> None:
    from exchange.audit import verify_home

    home = city["home"]
    people = city["residents"][:20] + city["dead"][:5] + [c["old_id"] for c in city["changed"][:3]]
    people += ["11010519491231002X"]  # valid, but nobody here: the query answers it
    with Exchange.open(home) as exchange:
        assert exchange.answers is None
        by_query = _ask_all(exchange, people, NOW)
    with Exchange.open(home, precompute=True, clock=lambda: NOW) as exchange:
        assert exchange.answers is not None
        exchange.precompute(NOW.date(), wait=True)
        assert exchange.answers.failures == []
        by_table = _ask_all(exchange, people, NOW)
        hits, misses = exchange.answers.hits, exchange.answers.misses
    assert (hits, misses) == (2 * (len(people) - 1), 2)  # only the stranger went to the query
    for a, b in zip(by_query, by_table, strict=True):
        same = ("fact", "result", "relied_on", "params")
        assert [getattr(a, k) for k in same] == [getattr(b, k) for k in same]
        assert a.ledger_index < b.ledger_index
    assert any(a.result is False for a in by_table) and any(a.result is True for a in by_table)
    # An auditor re-derives every answer, the tabulated ones included, from the query.
    report = verify_home(home, sample=None)
    assert report.ok, report.lines()


def test_a_new_publication_or_date_never_reads_an_old_table(
    city: dict[str, Any], tmp_path: Path
) -> None:
    from connectors import load_source
    from exchange.package import build_package
    from exchange.publish import department_signer, ingest
    from exchange.synth.city import generate_city

    home = Home(tmp_path / "home")
    demo.run(home, tmp_path / "c1", persons=800, seed=23, dirty_rate=0.0)
    with ExchangeStore(home.exchange_db) as store:
        person = store.rows(
            "SELECT id_number FROM published.\"household_register\" WHERE status = '正常' "
            'AND id_number NOT IN (SELECT person_id FROM published."deaths") '
            'AND id_number NOT IN (SELECT person_id FROM published."cremations") '
            "ORDER BY id_number LIMIT 1"
        )[0]["id_number"]
    generate_city(tmp_path / "c2", persons=800, seed=23, dirty_rate=0.0)
    register = tmp_path / "c2" / "public_security" / "household_register.csv"
    raw = register.read_bytes().decode("gb18030")
    line = next(line for line in raw.split("\r\n") if line.startswith(person))
    register.write_bytes(raw.replace(line, line.replace(",正常", ",死亡")).encode("gb18030"))
    sources = Path(__file__).resolve().parent.parent / "connectors" / "sources"
    ask = {"case_ref": CASE, "now": NOW, **HRSS}
    with Exchange.open(home, precompute=True, clock=lambda: NOW) as exchange:
        assert exchange.answers is not None
        exchange.precompute(NOW.date(), wait=True)
        first = exchange.ask("person.alive", {"person_id": person}, **ask)
        assert first.result is True and exchange.answers.hits == 1
        # The register changes: the same process (the one writer) ingests, then refreshes.
        package = build_package(
            load_source(sources / "public_security.household_register.toml"),
            home.root / "outbox", department_signer(home, "public_security"), city=tmp_path / "c2",
        )  # fmt: skip
        newer = ingest(exchange.store, home, package.path, log=exchange.log)
        exchange.refresh()
        second = exchange.ask("person.alive", {"person_id": person}, **ask)
        assert second.result is False and newer.id in second.relied_on
        exchange.precompute(NOW.date(), wait=True)
        table = exchange.answers.table("person.alive@1.0.0")
        assert table is not None and newer.id in table.key[1]
        hits = exchange.answers.hits
        third = exchange.ask("person.alive", {"person_id": person}, **ask)
        assert third.result is False and exchange.answers.hits == hits + 1
        # As of the first publication: the query, over the old register.
        then = exchange.ask("person.alive", {"person_id": person}, as_of=first.relied_on[-1], **ask)
        assert then.result is True and exchange.answers.hits == hits + 1
        # Another day is another key: not answered from today's table.
        tomorrow = exchange.ask(
            "person.alive", {"person_id": person}, case_ref=CASE,
            now=NOW + dt.timedelta(days=1), **HRSS,
        )  # fmt: skip
        assert tomorrow.result is False and exchange.answers.hits == hits + 1


def test_a_failed_build_leaves_the_query_answering(city: dict[str, Any]) -> None:
    with Exchange.open(city["home"]) as exchange:
        # A population relation that does not exist: the build fails, on the record.
        exchange.answers = PrecomputedAnswers(
            exchange._cursor, time.perf_counter, lambda: "pub.p999999"
        )
        fact = load_fact("person.alive")
        sources = pin_publications(exchange._cursor(), fact)
        exchange.answers.request(fact, sources, NOW.date())
        exchange.answers.wait()
        assert len(exchange.answers.failures) == 1
        assert exchange.answers.table(fact.ref) is None
        answer = exchange.ask(
            "person.alive", {"person_id": city["dead"][0]}, case_ref=CASE, now=NOW, **HRSS
        )
        assert answer.result is False
        exchange.answers.request(fact, sources, NOW.date())  # not retried
        exchange.answers.wait()
        assert len(exchange.answers.failures) == 1
        exchange.answers.close()


def test_an_older_table_never_replaces_a_newer_one(city: dict[str, Any]) -> None:
    """An ask pinned just before a refresh asks for the old key: it is not built over the new."""
    from exchange.answers import _newer

    today, yesterday = NOW.date(), NOW.date() - dt.timedelta(days=1)
    assert _newer(("f@1", (2, 9), today), ("f@1", (2, 8), today))
    assert _newer(("f@1", (1, 1), today), ("f@1", (9, 9), yesterday))
    assert not _newer(("f@1", (2, 8), today), ("f@1", (2, 8), today))
    with Exchange.open(city["home"], precompute=True, clock=lambda: NOW) as exchange:
        assert exchange.answers is not None
        exchange.precompute(NOW.date(), wait=True)
        fact = load_fact("person.alive")
        sources = pin_publications(exchange._cursor(), fact)
        exchange.answers.request(fact, sources, yesterday)  # older: not even queued
        assert exchange.answers.pending() == 0
        exchange.answers.wait()
        table = exchange.answers.table(fact.ref)
        assert table is not None and table.key[2] == NOW.date()
        assert exchange.answers.ready() == sorted(f.ref for f in _precomputable())
