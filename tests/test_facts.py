"""Every declared fact, checked against the synthetic city's ground truth.

One clean city (no planted faults, so the published data equals the generated data) is
published into an exchange once per module. The ground truth never comes from the
published tables: it is the generator's own `Population` (kinship, marriages, deaths,
households, ID changes) and, for the department records drawn at random on top of it
(criminal records, degrees, property, contributions, pensions, 低保 cases), the
generator's department tables rebuilt from the same random stream over a copy of the
population whose resident ID numbers are replaced by person tags ("P17"), so that every
record names the person it was made for, whichever number they carried at the time.

Each fact is asked for every person (or every relevant pair), by the current number and,
for people whose number changed, by the old number too; the answers must match the
ground truth with no mismatch, and both answers of a boolean must occur. The city holds
few ID changes, so a "renamed" copy of it (half its people with a later number, their
records split between the two) must give every answer again, asked by either number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import demo
from exchange.facts import (
    FactError,
    all_facts,
    dependents,
    evaluate,
    load_fact,
    load_fact_file,
    parameter_table,
    pin_publications,
    version_in_range,
)
from exchange.home import Home
from exchange.residentid import check_character, is_valid
from exchange.store import publication_table
from exchange.synth import DEFAULT_TODAY
from exchange.synth.city import generate_city
from exchange.synth.departments import CITY_CODE, OTHER_CITIES, SPECS, build_all
from exchange.synth.population import (
    ACTIVE,
    ALIVE,
    CHILD,
    EPOCH,
    Population,
    divisions,
    generate,
    to_days,
)

PERSONS = 5000
SEED = 7
TODAY = DEFAULT_TODAY
CONTRIBUTION_MONTHS = inspect.signature(generate_city).parameters["contribution_months"].default
LEVELS = ("associate", "bachelor", "master", "doctorate")

# Documented coverage of the departments' electronic records (see the facts' questions).
MARRIAGES_FROM = to_days(dt.date(1950, 5, 1))
BIRTH_CERTIFICATES_FROM = to_days(dt.date(1996, 1, 1))

ALL_FACTS = (
    "person.alive",
    "kinship.parent_of",
    "person.deceased_since",
    "person.marital_status",
    "person.no_criminal_record",
    "person.registered_in_district",
    "birth.registered",
    "property.none_in_city",
    "social_insurance.months_at_least",
    "education.degree_at_least",
    "kinship.only_child",
    "pension.none_elsewhere",
    "identity.same_person",
    "dibao.receives",
)


@dataclass
class City:
    con: duckdb.DuckDBPyConnection
    pop: Population
    records: dict[str, list[dict[str, Any]]]  # the generator's tables, IDs as person tags
    ids: list[str]  # current number per person
    old: dict[int, str]  # person -> number before the change

    @property
    def n(self) -> int:
        return self.pop.size

    def everyone(self) -> tuple[list[int], list[str]]:
        """Every person by the current number, then the changed ones by the old number."""
        people = list(range(self.n)) + sorted(self.old)
        numbers = self.ids + [self.old[p] for p in sorted(self.old)]
        return people, numbers

    def numbers(self, person: int) -> list[str]:
        """Every number a person is known by."""
        return [self.ids[person]] + ([self.old[person]] if person in self.old else [])

    def persons_in(self, dataset: str, field: str) -> list[int]:
        return [_person(row[field]) for row in self.records[dataset]]


def _person(tag: object) -> int:
    assert isinstance(tag, str) and tag.startswith("P"), tag
    return int(tag[1:])


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterable[City]:
    root = tmp_path_factory.mktemp("facts")
    demo.run(Home(root / "home"), root / "city", persons=PERSONS, seed=SEED, dirty_rate=0.0)
    # The same random stream as the city: first the population, then the departments.
    rng = np.random.default_rng(SEED)
    pop = generate(PERSONS, rng, TODAY)
    tagged = dataclasses.replace(
        pop,
        ids=pa.array([f"P{i}" for i in range(pop.size)]),
        old_ids=pa.array([f"P{i}" for i in pop.changed]),
    )
    tables = build_all(tagged, rng, CONTRIBUTION_MONTHS)
    con = duckdb.connect(str(root / "home" / "exchange.duckdb"), read_only=True)
    # A query that multiplies rows fails here instead of exhausting the machine.
    con.execute("SET memory_limit = '2GB'")
    con.execute("SET temp_directory = ''")
    city = City(
        con=con,
        pop=pop,
        records={name: table.to_pylist() for name, table in tables.items()},
        ids=pop.ids.to_pylist(),
        old=dict(zip(pop.changed.tolist(), pop.old_ids.to_pylist(), strict=True)),
    )
    _assert_rebuilt(city)
    yield city
    con.close()


def _assert_rebuilt(city: City) -> None:
    """The rebuilt records are the published ones, row for row, each naming its person."""
    person_of = {number: p for p, number in enumerate(city.ids)}
    person_of |= {number: p for p, number in city.old.items()}
    for spec in SPECS:
        published = _published(city.con, spec.name)
        rebuilt = city.records[spec.name]
        assert len(published) == len(rebuilt), spec.name
        for row, tagged in zip(published, rebuilt, strict=True):
            for field, value in tagged.items():
                if field in spec.id_fields:
                    want = None if value is None else _person(value)
                    assert person_of.get(row[field]) == want, (spec.name, field, row)
                else:
                    assert row[field] == value, (spec.name, field, row)


def _relation(con: duckdb.DuckDBPyConnection, dataset: str) -> str:
    (found,) = con.execute(
        "SELECT max(id) FROM publications WHERE dataset = ?", [dataset]
    ).fetchall()
    return publication_table(int(found[0]))


def _published(con: duckdb.DuckDBPyConnection, dataset: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        con.sql(f"SELECT * FROM {_relation(con, dataset)}").to_arrow_table().to_pylist()
    )
    return rows


Rewrite = Mapping[str, Callable[[str], str]]


def empty(relation: str) -> str:
    """A dataset read as if it held no record."""
    return f"(SELECT * FROM {relation} WHERE false)"


def ask(
    city: City,
    fact_id: str,
    rows: Sequence[Mapping[str, object]] | pa.Table,
    today: dt.date = TODAY,
    *,
    rewrite: Rewrite | None = None,
) -> list[Any]:
    """The fact's answers, one per row; ``rewrite`` replaces datasets by derived relations."""
    fact = load_fact(fact_id)
    table, ok = parameter_table(fact, rows, today=today)
    assert all(ok.to_pylist())
    sources = pin_publications(city.con, fact)
    rewrite = rewrite or {}
    sources = [
        dataclasses.replace(s, relation=rewrite[s.dataset](s.relation))
        if s.dataset in rewrite
        else s
        for s in sources
    ]
    answers = evaluate(city.con, fact, table, sources)
    assert answers.column("_n").to_pylist() == list(range(table.num_rows))
    return answers.column("answer").to_pylist()


def check(
    got: Sequence[Any],
    expected: Sequence[Any],
    rows: Sequence[Mapping[str, object]],
    *,
    both: bool = True,
) -> None:
    """No mismatch (shown with its question), and for booleans both answers occur."""
    assert len(got) == len(expected)
    wrong = [(r, g, e) for r, g, e in zip(rows, got, expected, strict=True) if g != e]
    assert not wrong, f"{len(wrong)} mismatches, e.g. {wrong[:5]}"
    if both:
        assert set(expected) >= {True, False}


def _month(day: int) -> str:
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()[:7]


def _date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


# --- the city has what the tests need ----------------------------------------------------


def test_the_city_holds_every_case_the_facts_distinguish(city: City) -> None:
    pop = city.pop
    assert len(city.old) >= 5  # changed numbers
    assert pop.dead.sum() > 100
    assert (pop.prior_partner >= 0).sum() > 10  # divorced at least once
    widowed = (pop.spouse >= 0) & pop.dead[np.maximum(pop.spouse, 0)] & ~pop.dead
    assert widowed.sum() > 10
    # Prior marriages always end before the current one begins (the marital-status truth
    # below relies on it: the current marriage, when there is one, is the latest).
    both = (pop.prior_partner >= 0) & (pop.spouse >= 0)
    assert (pop.prior_divorced[both] < pop.marriage_date[both]).all()
    # Some changed people have records made under their old number.
    old_numbers = set(city.old.values())
    assert any(row["mother_id"] in old_numbers for row in _published(city.con, "births"))


def test_every_fact_in_the_catalogue_is_declared_and_marks_its_subjects() -> None:
    declared = {fact.id for fact in all_facts()}
    assert declared == set(ALL_FACTS)
    for fact in all_facts():
        for parameter in fact.parameters:
            assert parameter.subject == (parameter.type == "resident_id"), (fact.id, parameter)


# --- one-person facts --------------------------------------------------------------------


def test_person_alive(city: City) -> None:
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    expected = [not city.pop.dead[p] for p in people]
    check(ask(city, "person.alive", rows), expected, rows)


def test_person_deceased_since(city: City) -> None:
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    death = city.pop.death
    expected = [None if death[p] == ALIVE else _date(death[p]) for p in people]
    check(ask(city, "person.deceased_since", rows), expected, rows, both=False)
    assert sum(e is not None for e in expected) > 100
    # Both sources count: people with only a hospital record and only a cremation record.
    hospital = set(city.persons_in("deaths", "person_id"))
    cremated = set(city.persons_in("cremations", "person_id"))
    assert hospital - cremated and cremated - hospital and hospital & cremated
    # When the two records disagree, the earlier date is the answer.
    later = {
        "cremations": lambda table: (
            "(SELECT * REPLACE (strftime(CAST(death_date AS DATE) + 1, '%Y-%m-%d') AS death_date)"
            f" FROM {table})"
        )
    }
    shifted = [
        e if e is None or p in hospital else e + dt.timedelta(days=1)
        for p, e in zip(people, expected, strict=True)
    ]
    check(ask(city, "person.deceased_since", rows, rewrite=later), shifted, rows, both=False)


def test_person_marital_status(city: City) -> None:
    pop = city.pop
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    spouse = np.maximum(pop.spouse, 0)
    # The current marriage is the latest one; a marriage before 1 May 1950 has no
    # registration, so those couples read "unmarried" (the fact's question says so).
    registered = (pop.spouse >= 0) & (pop.marriage_date >= MARRIAGES_FROM)
    divorced = (pop.prior_partner >= 0) & (pop.prior_married >= MARRIAGES_FROM)
    status = np.where(
        registered,
        np.where(pop.dead[spouse], "widowed", "married"),
        np.where(divorced, "divorced", "unmarried"),
    )
    expected = [str(status[p]) for p in people]
    got = ask(city, "person.marital_status", rows)
    check(got, expected, rows, both=False)
    assert set(expected) == {"unmarried", "married", "divorced", "widowed"}
    # Exercised: remarried after a divorce, married before records, deceased, changed IDs.
    remarried = (pop.prior_partner >= 0) & registered
    assert remarried.sum() > 0
    unrecorded = (pop.spouse >= 0) & ~registered
    assert unrecorded.sum() > 0
    assert {got[p] for p in np.flatnonzero(unrecorded)} == {"unmarried"}
    assert {got[p] for p in np.flatnonzero(pop.dead & registered)} >= {"married", "widowed"}
    changed = [i for i, p in enumerate(people) if p in city.old]
    assert {expected[i] for i in changed} & {"married", "divorced", "widowed"}


def test_person_no_criminal_record(city: City) -> None:
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    offenders = set(city.persons_in("criminal_records", "person_id"))
    expected = [p not in offenders for p in people]
    check(ask(city, "person.no_criminal_record", rows), expected, rows)


def test_person_registered_in_district(city: City) -> None:
    pop = city.pop
    codes = [d.code for d in divisions() if d.local]
    own = codes_of(pop)
    people, numbers = city.everyone()
    rows, expected = [], []
    for p, x in zip(people, numbers, strict=True):
        other = codes[(codes.index(own[p]) + 1) % len(codes)]
        for code in (own[p], other):
            rows.append({"person_id": x, "division_code": code})
            expected.append(code == own[p] and pop.status[p] == ACTIVE)
    check(ask(city, "person.registered_in_district", rows), expected, rows)
    assert (pop.status != ACTIVE).sum() > 50  # moved out and deceased are answered false


def codes_of(pop: Population) -> list[str]:
    """Each person's registered division code."""
    codes = np.array([d.code for d in divisions()])
    return [str(c) for c in codes[pop.hh_division[pop.household]]]


def test_property_none_in_city(city: City) -> None:
    owned = {(_person(r["owner_id"]), r["city_code"]) for r in city.records["property"]}
    people, numbers = city.everyone()
    rows, expected = [], []
    for p, x in zip(people, numbers, strict=True):
        for code in (CITY_CODE, "440300", "110100"):
            rows.append({"person_id": x, "city_code": code})
            expected.append((p, code) not in owned)
    check(ask(city, "property.none_in_city", rows), expected, rows)
    assert any(code == "440300" for _, code in owned)  # titles outside the city too
    assert any(p in city.old for p, _ in owned)


def test_social_insurance_months_at_least(city: City) -> None:
    months: dict[tuple[int, str], set[str]] = defaultdict(set)
    for r in city.records["contributions"]:
        months[_person(r["person_id"]), r["city_code"]].add(r["month"])
    elsewhere = {p: code for (p, code) in months if code != CITY_CODE}
    people, numbers = city.everyone()
    draw = np.random.default_rng(1)
    rows, expected = [], []
    for p, x in zip(people, numbers, strict=True):
        for code in (CITY_CODE, elsewhere.get(p, OTHER_CITIES[0])):
            have = len(months.get((p, code), ()))
            for least in {0, have, have + 1, int(draw.integers(0, 40))}:
                rows.append({"person_id": x, "city_code": code, "months": least})
                expected.append(have >= least)
    check(ask(city, "social_insurance.months_at_least", rows), expected, rows)
    # A number changed while contributing: months under both numbers add up.
    spans = [
        (min(months[p, CITY_CODE]), _month(city.pop.change_date[i]), max(months[p, CITY_CODE]))
        for i, p in enumerate(city.pop.changed)
        if months.get((p, CITY_CODE))
    ]
    assert any(first < changed <= last for first, changed, last in spans)


def test_education_degree_at_least(city: City) -> None:
    top = defaultdict(lambda: -1)
    for r in city.records["degrees"]:
        p = _person(r["holder_id"])
        top[p] = max(top[p], LEVELS.index(r["level"]))
    people, numbers = city.everyone()
    rows, expected = [], []
    for p, x in zip(people, numbers, strict=True):
        for rank, level in enumerate(LEVELS):
            rows.append({"person_id": x, "level": level})
            expected.append(top[p] >= rank)
    got = ask(city, "education.degree_at_least", rows)
    check(got, expected, rows)
    # Every level answers both ways (bachelor holders hold no associate record).
    for rank in range(4):
        assert {e for i, e in enumerate(expected) if i % 4 == rank} == {True, False}


def _no_father(relation: str) -> str:
    return f"(SELECT * REPLACE (CAST(NULL AS VARCHAR) AS father_id) FROM {relation})"


def _no_mother(relation: str) -> str:
    """Each certificate names its own child as mother: no one shares a mother."""
    return f"(SELECT * REPLACE (child_id AS mother_id) FROM {relation})"


ONLY_CHILD_SOURCES: dict[str, Rewrite] = {
    "every source": {},
    "births alone": {"household_register": empty},
    "mothers on births alone": {"household_register": empty, "births": _no_father},
    "fathers on births alone": {"household_register": empty, "births": _no_mother},
    "register alone": {"births": empty},
}


@pytest.mark.parametrize("sources", list(ONLY_CHILD_SOURCES))
def test_kinship_only_child(city: City, sources: str) -> None:
    """Each way of finding a sibling is checked alone too, the other sources read as empty."""
    pop = city.pop
    certified = (pop.mother >= 0) & (pop.birth >= BIRTH_CERTIFICATES_FROM)
    by_mother = np.bincount(pop.mother[certified], minlength=city.n)
    fathered = certified & (pop.father >= 0)
    by_father = np.bincount(pop.father[fathered], minlength=city.n)
    child = pop.relation == CHILD
    children_in = np.bincount(pop.household[child], minlength=pop.households)
    same_mother = certified & (by_mother[np.maximum(pop.mother, 0)] > 1)
    same_father = fathered & (by_father[np.maximum(pop.father, 0)] > 1)
    in_household = child & (children_in[pop.household] > 1)
    sibling = {
        "every source": same_mother | same_father | in_household,
        "births alone": same_mother | same_father,
        "mothers on births alone": same_mother,
        "fathers on births alone": same_father,
        "register alone": in_household,
    }[sources]
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    expected = [not sibling[p] for p in people]
    got = ask(city, "kinship.only_child", rows, rewrite=ONLY_CHILD_SOURCES[sources])
    check(got, expected, rows)
    assert (child & ~sibling).sum() > 10  # only children among the registered children
    # A mother's certificates under her old and her new number are one family.
    mothers = {r["mother_id"] for r in _published(city.con, "births")}
    renamed = [p for p in city.old if {city.ids[p], city.old[p]} <= mothers]
    assert renamed
    assert all(same_mother[np.isin(pop.mother, renamed) & certified])


# Payments are generated for the 12 months up to 2026-06: asks on other days see a window
# that holds all, part or none of them (the edges of the window are checked both ways).
@pytest.mark.parametrize(
    "today",
    [TODAY, dt.date(2025, 7, 15), dt.date(2026, 2, 28), dt.date(2027, 5, 31), dt.date(2027, 6, 1)],
)
def test_pension_none_elsewhere(city: City, today: dt.date) -> None:
    paid: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for r in city.records["pensions"]:
        paid[_person(r["person_id"])].add((r["city_code"], r["month"]))
    double = {p for p, got in paid.items() if len({c for c, _ in got}) > 1}
    assert double  # a few draw two pensions
    last = today.replace(day=1)
    first = dt.date(last.year - (last.month <= 11), (last.month - 12) % 12 + 1, 1)
    window = (first.isoformat()[:7], last.isoformat()[:7])
    people, numbers = city.everyone()
    rows, expected = [], []
    for p, x in zip(people, numbers, strict=True):
        for code in sorted({c for c, _ in paid.get(p, ())} | {CITY_CODE}):
            rows.append({"person_id": x, "city_code": code})
            expected.append(
                not any(c != code and window[0] <= m <= window[1] for c, m in paid.get(p, ()))
            )
    payments_seen = window[0] <= "2026-06" and window[1] >= "2025-07"
    check(
        ask(city, "pension.none_elsewhere", rows, today=today), expected, rows, both=payments_seen
    )
    assert payments_seen or all(expected)


def _month_day(month: str, shift: int = 0, *, last: bool = False) -> dt.date:
    """The first (or last) day of the month ``shift`` months after 'YYYY-MM'."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + shift + last
    first = dt.date(index // 12, index % 12 + 1, 1)
    return first - dt.timedelta(days=1) if last else first


DIBAO_SOURCES: dict[str, Rewrite] = {
    "every source": {},
    "holder alone": {"household_register": empty},
}


def test_dibao_receives(city: City) -> None:
    pop = city.pop
    households = {number: h for h, number in enumerate(pop.hh_number.to_pylist())}
    cases = [
        (_person(r["person_id"]), households[r["household_no"]], r["start_month"], r["end_month"])
        for r in city.records["dibao"]
    ]
    ended = [c for c in cases if c[3] is not None]
    assert ended and len(ended) < len(cases)  # ended cases and open ones
    # Typical days, and both sides of the first and last month of some cases.
    days = {TODAY: True, dt.date(2020, 3, 10): True, dt.date(2024, 1, 31): True}
    for _, _, start, _ in cases[:6]:
        days |= {_month_day(start): False, _month_day(start, -1, last=True): False}
    for _, _, _, end in ended[:6]:
        days |= {_month_day(end, last=True): False, _month_day(end, 1): False}
    people, numbers = city.everyone()
    rows = [{"person_id": x} for x in numbers]
    for today, both in sorted(days.items()):
        month = today.isoformat()[:7]
        active = [c for c in cases if c[2] <= month and (c[3] is None or month <= c[3])]
        holders = {c[0] for c in active}
        covered = {c[1] for c in active}
        expected = [
            p in holders or (pop.household[p] in covered and pop.status[p] == ACTIVE)
            for p in people
        ]
        check(ask(city, "dibao.receives", rows, today=today), expected, rows, both=both)
        # The case holder is found without the register too.
        alone = [p in holders for p in people]
        got = ask(city, "dibao.receives", rows, today=today, rewrite=DIBAO_SOURCES["holder alone"])
        check(got, alone, rows, both=both)
    # Members of a covered household who moved out or died are not covered; holders are.
    members = [p for p in range(city.n) if pop.household[p] in {c[1] for c in cases}]
    assert any(pop.status[p] != ACTIVE for p in members)


# --- facts about two people or two numbers -----------------------------------------------


def _pairs_by_number(
    city: City, pairs: Iterable[tuple[int, int]]
) -> list[tuple[int, int, str, str]]:
    """Each pair of persons asked by every combination of their numbers."""
    return [(a, b, x, y) for a, b in pairs for x in city.numbers(a) for y in city.numbers(b)]


def _unrelated(city: City, count: int, seed: int) -> list[tuple[int, int]]:
    draw = np.random.default_rng(seed)
    a = draw.integers(0, city.n, count)
    b = draw.integers(0, city.n, count)
    return [(int(x), int(y)) for x, y in zip(a, b, strict=True)]


def test_kinship_parent_of(city: City) -> None:
    pop = city.pop
    pairs: list[tuple[int, int]] = []
    for child in range(city.n):
        for parent in (pop.mother[child], pop.father[child]):
            if parent >= 0:
                pairs += [(int(parent), child), (child, int(parent))]  # and the reverse
        if pop.spouse[child] >= 0:
            pairs.append((int(pop.spouse[child]), child))
        grandmother = pop.mother[pop.mother[child]] if pop.mother[child] >= 0 else -1
        if grandmother >= 0:
            pairs.append((int(grandmother), child))
    pairs += _unrelated(city, 3000, 2)
    asked = _pairs_by_number(city, pairs)
    rows = [{"parent_id": x, "child_id": y} for _, _, x, y in asked]
    parent = [a in (pop.mother[b], pop.father[b]) for a, b, _, _ in asked]
    check(ask(city, "kinship.parent_of", rows), parent, rows)
    assert any(a in city.old and e for (a, _, _, _), e in zip(asked, parent, strict=True))
    # Each source alone: certificates (from 1996) name mother and father; the register
    # shows every parent, as head or spouse of a 子/女, or as 父亲/母亲 of the head.
    certified = (pop.mother >= 0) & (pop.birth >= BIRTH_CERTIFICATES_FROM)
    on_certificate = [
        e and bool(certified[b]) for (_, b, _, _), e in zip(asked, parent, strict=True)
    ]
    check(
        ask(city, "kinship.parent_of", rows, rewrite={"household_register": empty}),
        on_certificate,
        rows,
    )
    check(ask(city, "kinship.parent_of", rows, rewrite={"births": empty}), parent, rows)


def test_birth_registered(city: City) -> None:
    pop = city.pop
    women = np.flatnonzero(~pop.male)
    draw = np.random.default_rng(3)
    pairs: list[tuple[int, int]] = []
    for child in np.flatnonzero(pop.mother >= 0):
        mother, father = int(pop.mother[child]), int(pop.father[child])
        pairs += [(int(child), mother), (mother, int(child)), (int(child), int(draw.choice(women)))]
        if father >= 0:
            pairs.append((int(child), father))
    asked = _pairs_by_number(city, pairs)
    rows = [{"child_id": x, "mother_id": y} for _, _, x, y in asked]
    expected = [
        pop.mother[c] == m and pop.birth[c] >= BIRTH_CERTIFICATES_FROM for c, m, _, _ in asked
    ]
    check(ask(city, "birth.registered", rows), expected, rows)
    # Mothers of children born before 1996 are real mothers, yet no certificate exists.
    assert any(
        pop.mother[c] == m and not e for (c, m, _, _), e in zip(asked, expected, strict=True)
    )
    assert any(m in city.old and e for (_, m, _, _), e in zip(asked, expected, strict=True))


def test_identity_same_person(city: City) -> None:
    pairs = [(p, p) for p in range(city.n)] + _unrelated(city, 5000, 4)
    pairs += [(p, q) for p in city.old for q in city.old]
    asked = _pairs_by_number(city, pairs)
    rows = [{"id_a": x, "id_b": y} for _, _, x, y in asked]
    expected = [a == b for a, b, _, _ in asked]
    check(ask(city, "identity.same_person", rows), expected, rows)
    linked = {(x, y) for (_, _, x, y), e in zip(asked, expected, strict=True) if e and x != y}
    for p, old in city.old.items():
        assert {(old, city.ids[p]), (city.ids[p], old)} <= linked  # both directions


# --- records under either number -------------------------------------------------------


@dataclass(frozen=True)
class Of:
    """A parameter naming a person, by whichever number the test chooses."""

    person: int


@dataclass
class Renamed:
    """The city as if half its people had since changed number.

    Each chosen person gets a later number (a valid ID no one holds) through an extra
    id_changes row; the household register carries the later number, and every other
    record carries the earlier or the later number at random (record made before or after
    the change). The real changes of the city stay as they are.
    """

    new: dict[int, str]
    rewrite: dict[str, Callable[[str], str]]


@pytest.fixture(scope="module")
def renamed(city: City) -> Renamed:
    draw = np.random.default_rng(5)
    born: Counter[str] = Counter()
    new: dict[int, str] = {}
    for p in range(city.n):
        if p in city.old or draw.random() < 0.5:
            continue  # one change per person at most
        day = city.ids[p][6:14]
        born[day] += 1
        head = f"440199{day}{born[day]:03d}"  # a division no one in the city is born in
        new[p] = head + check_character(head)
    assert not set(new.values()) & (set(city.ids) | set(city.old.values()))
    changes = "_facts_test_renames"
    city.con.register(
        changes, pa.table({"old_id": [city.ids[p] for p in new], "new_id": list(new.values())})
    )

    def later(fields: Sequence[str], always: bool) -> Callable[[str], str]:
        def relation(table: str) -> str:
            when = "" if always else "t._row % 2 = 0 AND "
            swaps = ", ".join(
                f"CASE WHEN {when}r{i}.new_id IS NOT NULL THEN r{i}.new_id ELSE t.{f} END AS {f}"
                for i, f in enumerate(fields)
            )
            joins = " ".join(
                f"LEFT JOIN {changes} r{i} ON r{i}.old_id = t.{f}" for i, f in enumerate(fields)
            )
            return f"(SELECT t.* REPLACE ({swaps}) FROM {table} t {joins})"

        return relation

    rewrite: dict[str, Callable[[str], str]] = {
        spec.name: later(spec.id_fields, always=spec.name == "household_register")
        for spec in SPECS
        if spec.name != "id_changes"
    }
    rewrite["id_changes"] = lambda table: (
        f"(SELECT * FROM {table} UNION ALL BY NAME SELECT * FROM {changes})"
    )
    return Renamed(new, rewrite)


def _questions(city: City, fact_id: str) -> list[dict[str, object]]:
    """Questions about everyone (or every parent, every mother, random pairs)."""
    pop = city.pop
    everyone = range(city.n)
    draw = np.random.default_rng(6)
    if fact_id == "kinship.parent_of":
        return [
            {"parent_id": Of(int(parent[c])), "child_id": Of(c)}
            for parent in (pop.mother, pop.father)
            for c in everyone
            if parent[c] >= 0
        ] + [{"parent_id": Of(int(a)), "child_id": Of(int(b))} for a, b in _unrelated(city, 500, 7)]
    if fact_id == "birth.registered":
        return [
            {"child_id": Of(c), "mother_id": Of(int(pop.mother[c]))}
            for c in everyone
            if pop.mother[c] >= 0
        ]
    if fact_id == "identity.same_person":
        return [{"id_a": Of(p), "id_b": Of(p)} for p in everyone] + [
            {"id_a": Of(a), "id_b": Of(b)} for a, b in _unrelated(city, 2000, 8)
        ]
    extra: list[dict[str, object]] = [{}]
    if fact_id == "person.registered_in_district":
        own = codes_of(pop)
        return [{"person_id": Of(p), "division_code": own[p]} for p in everyone]
    if fact_id in ("property.none_in_city", "pension.none_elsewhere"):
        extra = [{"city_code": CITY_CODE}, {"city_code": "440300"}]
    if fact_id == "social_insurance.months_at_least":
        extra = [{"city_code": CITY_CODE, "months": int(m)} for m in draw.integers(1, 37, 3)]
    if fact_id == "education.degree_at_least":
        extra = [{"level": level} for level in LEVELS]
    return [{"person_id": Of(p), **more} for p in everyone for more in extra]


def _by(
    question: Mapping[str, object], choice: str, city: City, new: Mapping[int, str]
) -> dict[str, object]:
    row: dict[str, object] = {}
    for k, (name, value) in enumerate(question.items()):
        if isinstance(value, Of):
            later = choice == "later" or (choice == "mixed" and (value.person + k) % 2 == 0)
            value = (
                new.get(value.person, city.ids[value.person]) if later else city.ids[value.person]
            )
        row[name] = value
    return row


PARENT_OF_SOURCES: dict[str, Rewrite] = {
    "every source": {},
    "births alone": {"household_register": empty},
    "register alone": {"births": empty},
}
WAYS: dict[str, dict[str, Rewrite]] = {
    "kinship.only_child": ONLY_CHILD_SOURCES,
    "kinship.parent_of": PARENT_OF_SOURCES,
    "dibao.receives": DIBAO_SOURCES,
}
SOURCE_VARIANTS = [
    (fact_id, variant)
    for fact_id in ALL_FACTS
    for variant in WAYS.get(fact_id, {"every source": {}})
]


@pytest.mark.parametrize(("fact_id", "variant"), SOURCE_VARIANTS)
def test_answers_do_not_depend_on_the_number_a_record_carries(
    city: City, renamed: Renamed, fact_id: str, variant: str
) -> None:
    """In the renamed city every answer, asked by either number, is the one of the real city.

    The real city's answers are checked against the ground truth above; the renamed city
    has the same people and records, only some records carry a person's other number.
    Facts that find the same thing in several ways are checked one way at a time too.
    """
    only = WAYS.get(fact_id, {"every source": {}})[variant]

    def both(dataset: str) -> Callable[[str], str]:
        inner = renamed.rewrite[dataset]
        return (lambda table: only[dataset](inner(table))) if dataset in only else inner

    rewrite = {dataset: both(dataset) for dataset in renamed.rewrite}
    questions = _questions(city, fact_id)
    earlier = [_by(q, "earlier", city, renamed.new) for q in questions]
    truth = ask(city, fact_id, earlier, rewrite=only)
    for choice in ("earlier", "later", "mixed"):
        rows = [_by(q, choice, city, renamed.new) for q in questions]
        got = ask(city, fact_id, rows, rewrite=rewrite)
        wrong = [(r, g, t) for r, g, t in zip(rows, got, truth, strict=True) if g != t]
        assert not wrong, f"{choice}: {len(wrong)} mismatches, e.g. {wrong[:5]}"
    assert len(set(truth)) > 1


# --- scale and shape ---------------------------------------------------------------------


BATCH = 200_000


@pytest.mark.parametrize("fact_id", ALL_FACTS)
def test_a_large_batch_gets_the_answers_of_its_questions(city: City, fact_id: str) -> None:
    """A batch of 200,000 questions (the same ones many times over) is answered within the
    connection's memory limit with the answers the questions get alone: no query joins the
    batch to a dataset on anything but a person's number, so nothing multiplies."""
    rows = [_by(q, "earlier", city, {}) for q in _questions(city, fact_id)]
    alone = ask(city, fact_id, rows)
    times = -(-BATCH // len(rows))
    batch = pa.Table.from_pylist((rows * times)[:BATCH])
    assert ask(city, fact_id, batch) == (alone * times)[:BATCH]


# What each fact answers about a valid number no record holds (every resident_id
# parameter set to it): what the records show, which is not always "no".
NOBODY = {
    "person.alive": False,
    "kinship.parent_of": False,
    "person.deceased_since": None,
    "person.marital_status": "unmarried",
    "person.no_criminal_record": True,
    "person.registered_in_district": False,
    "birth.registered": False,
    "property.none_in_city": True,
    "social_insurance.months_at_least": False,
    "education.degree_at_least": False,
    "kinship.only_child": True,
    "pension.none_elsewhere": True,
    "identity.same_person": True,  # a number is the same as itself
    "dibao.receives": False,
}


@pytest.mark.parametrize("fact_id", ALL_FACTS)
def test_one_row_and_unknown_people_get_one_answer(city: City, fact_id: str) -> None:
    """A single ask, and an ask about a valid number nobody holds, answer exactly once."""
    fact = load_fact(fact_id)
    nobody = "11010519491231002X"
    assert nobody not in set(city.ids) | set(city.old.values())
    values: dict[str, object] = {"division_code": "440106", "city_code": CITY_CODE, "integer": 12}
    for person in (city.ids[0], nobody):
        row = {
            p.name: person
            if p.type == "resident_id"
            else (p.values[0] if p.type == "enum" else values[p.type])
            for p in fact.parameters
        }
        assert len(answer := ask(city, fact_id, [row])) == 1
    assert answer == [NOBODY[fact_id]]
    # An empty batch (typed columns: an empty list of dicts carries no column names).
    empty = pa.table({p.name: pa.array([], p.arrow_type) for p in fact.parameters})
    assert ask(city, fact_id, empty) == []


# --- contracts ---------------------------------------------------------------------------


GOOD: dict[str, Any] = {
    "id": "test.example",
    "version": "1.0.0",
    "title": "an example",
    "question": "Is the person dead?",
    "parameters": {"person_id": {"type": "resident_id", "subject": True}},
    "result": {"type": "boolean"},
    "reads": {"deaths": {"versions": ">=1.0.0,<2.0.0", "fields": ["person_id"]}},
    "query": "SELECT p._n, (d.person_id IS NOT NULL) AS answer FROM {params} p "
    "LEFT JOIN (SELECT DISTINCT person_id FROM {deaths}) d ON d.person_id = p.person_id",
}


def _contract(tmp_path: Path, **changes: Any) -> Path:
    document = {**GOOD, **changes}
    path = tmp_path / document["id"] / f"{document['version']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), "utf-8")
    return path


def test_a_well_formed_contract_loads(tmp_path: Path) -> None:
    fact = load_fact_file(_contract(tmp_path))
    assert fact.ref == "test.example@1.0.0"
    assert [p.name for p in fact.subjects] == ["person_id"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"query": GOOD["query"] + " JOIN {cremations} c ON c.person_id = p.person_id"},
            "reads undeclared ['cremations']",
        ),
        ({"result": {"type": "record"}}, "never a record"),
        ({"query": GOOD["query"] + "; DROP TABLE publications"}, "single statement"),
        (
            {
                "reads": {
                    **GOOD["reads"],
                    "births": {"versions": ">=1.0.0", "fields": ["child_id"]},
                }
            },
            "never reads: ['births']",
        ),
        ({"query": "SELECT 1 AS _n, true AS answer FROM {deaths}"}, "must read {params}"),
        (
            {"parameters": {"code": {"type": "city_code", "subject": True}}},
            "only a resident_id parameter can be a subject",
        ),
        ({"parameters": {"person_id": {"type": "blob"}}}, "needs a type"),
        ({"result": {"type": "enum"}}, "enum result needs its 'values'"),
        (
            {"reads": {"deaths": {"versions": ">=1.0.0", "fields": []}}},
            "must list the fields it reads",
        ),
        ({"reads": {"deaths": {"versions": "about 1", "fields": ["x"]}}}, "not a version range"),
    ],
)
def test_malformed_contracts_are_refused_with_a_clear_message(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(FactError) as refused:
        load_fact_file(_contract(tmp_path, **changes))
    assert message in str(refused.value)
    if "version" not in message:
        assert "test.example" in str(refused.value)  # names the file


def test_a_contract_must_live_under_its_id_and_version(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "1.0.0.json"
    path.parent.mkdir()
    path.write_text(json.dumps(GOOD), "utf-8")
    with pytest.raises(FactError, match=r"must live at schemas/facts/test\.example/1\.0\.0\.json"):
        load_fact_file(path)


@pytest.mark.parametrize(
    ("version", "spec", "inside"),
    [
        ("1.0.0", ">=1.0.0,<2.0.0", True),
        ("1.9.12", ">=1.0.0,<2.0.0", True),
        ("2.0.0", ">=1.0.0,<2.0.0", False),
        ("0.9.9", ">=1.0.0,<2.0.0", False),
        ("1.10.0", ">1.9.0", True),  # numeric, not lexical, precedence
        ("1.2.3", "1.2.3", True),
        ("1.2.4", "=1.2.3", False),
        ("1.2.3", "<=1.2.3", True),
        ("1.2.3", "< 1.2.3", False),
    ],
)
def test_version_in_range(version: str, spec: str, inside: bool) -> None:
    assert version_in_range(version, spec) is inside


@pytest.mark.parametrize(
    ("version", "spec"), [("1.0", ">=1.0.0"), ("1.0.0", ">=1.x"), ("1.0.0", "~1.0.0")]
)
def test_version_in_range_refuses_what_is_not_semver(version: str, spec: str) -> None:
    with pytest.raises(FactError, match="not a"):
        version_in_range(version, spec)


def test_dependents_name_the_facts_reading_a_field() -> None:
    readers = dependents("births", "mother_id")
    assert "kinship.parent_of@1.0.0" in readers
    assert {"birth.registered@1.0.0", "kinship.only_child@1.0.0"} <= set(readers)
    assert "person.alive@1.0.0" not in readers
    assert dependents("births", "hospital") == []
    assert set(dependents("id_changes", "old_id")) == {f"{f}@1.0.0" for f in ALL_FACTS}


@pytest.mark.parametrize("fact_id", ALL_FACTS)
def test_reads_lists_exactly_the_fields_the_query_touches(city: City, fact_id: str) -> None:
    """The query runs on the declared fields alone, and fails without any one of them."""
    fact = load_fact(fact_id)
    table, _ = parameter_table(fact, [{p.name: None for p in fact.parameters}], today=TODAY)
    sources = pin_publications(city.con, fact)

    def narrowed(dataset: str, fields: Sequence[str]) -> list[Any]:
        return [
            dataclasses.replace(s, relation=f"(SELECT {', '.join(fields)} FROM {s.relation})")
            if s.dataset == dataset
            else s
            for s in sources
        ]

    for reads in fact.reads:
        evaluate(city.con, fact, table, narrowed(reads.dataset, reads.fields))
        for field in reads.fields:
            rest = [f for f in reads.fields if f != field] or ["NULL AS _nothing"]
            with pytest.raises(duckdb.BinderException, match=field):
                evaluate(city.con, fact, table, narrowed(reads.dataset, rest))


# --- parameter checks ------------------------------------------------------------------


def _valid_ids() -> st.SearchStrategy[str]:
    def build(division: int, born: dt.date, sequence: int) -> str:
        head = f"{division}{born:%Y%m%d}{sequence:03d}"
        return head + check_character(head)

    return st.builds(
        build,
        st.integers(110000, 820000),
        st.dates(dt.date(1900, 1, 1), dt.date(2026, 12, 31)),
        st.integers(0, 999),
    )


def _near_misses(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(valid[:17] + ("X" if valid[17] != "X" else "0")),
        st.integers(0, 17).map(lambda i: valid[:i] + valid[i + 1 :]),
        st.integers(0, 17).map(lambda i: valid[:i] + "x" + valid[i + 1 :]),
        st.just(valid.lower()),
        st.just(" " + valid + "\t"),
        st.integers(0, 16).map(
            lambda i: valid[:i] + str((int(valid[i]) + 1) % 10) + valid[i + 1 :]
        ),
    )


ID_VALUES = st.one_of(
    _valid_ids(),
    _valid_ids().flatmap(_near_misses),
    st.text(alphabet="0123456789X", min_size=17, max_size=19),
    st.text(max_size=24),
)


@given(st.lists(ID_VALUES, min_size=1, max_size=30))
def test_resident_id_parameters_are_accepted_exactly_when_valid(values: list[str]) -> None:
    fact = load_fact("person.alive")
    table, ok = parameter_table(fact, [{"person_id": v} for v in values], today=TODAY)
    assert ok.to_pylist() == [is_valid(v.strip()) for v in values]
    # Accepted values reach the query trimmed; refused ones never reach it at all.
    assert table.column("person_id").to_pylist() == [
        v.strip() if is_valid(v.strip()) else None for v in values
    ]


@given(st.lists(st.integers(-(10**7), 10**7) | st.integers(-3, 10_003), min_size=1, max_size=30))
def test_integer_parameters_are_refused_outside_0_to_10000(values: list[int]) -> None:
    fact = load_fact("social_insurance.months_at_least")
    rows = [{"person_id": "11010519491231002X", "city_code": "440100", "months": v} for v in values]
    _, ok = parameter_table(fact, rows, today=TODAY)
    assert ok.to_pylist() == [0 <= v <= 10_000 for v in values]


@given(st.lists(st.sampled_from(LEVELS) | st.text(max_size=12), min_size=1, max_size=30))
def test_enum_parameters_are_refused_outside_their_values(values: list[str]) -> None:
    fact = load_fact("education.degree_at_least")
    rows = [{"person_id": "11010519491231002X", "level": v} for v in values]
    _, ok = parameter_table(fact, rows, today=TODAY)
    assert ok.to_pylist() == [v.strip() in LEVELS for v in values]
