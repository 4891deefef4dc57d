"""A clean synthetic city is internally consistent, checked on the files it writes.

One city is generated per module and every department's sources are read back from disk
with ordinary readers (csv, json, sqlite3, pyarrow.parquet); the tests never look at the
generator's arrays. IDs are resolved through the ID-change table before any join to the
household register, whose id_number column holds current numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exchange.residentid import birth_date, is_male, is_valid
from exchange.synth.city import generate_city

PERSONS = 4000
SEED = 20260630

Row = dict[str, object]


def _csv(path: Path, encoding: str) -> list[Row]:
    with path.open(encoding=encoding, newline="") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def _day(value: object) -> dt.date:
    return dt.date.fromisoformat(str(value))


def _age(born: dt.date, on: dt.date) -> int:
    """Age in full years (周岁) on a day."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@dataclass
class City:
    register: dict[str, Row]
    register_rows: list[Row]
    changes: list[Row]
    tables: dict[str, list[Row]]

    def __post_init__(self) -> None:
        self.renamed = {str(c["old_id"]): str(c["new_id"]) for c in self.changes}

    def current(self, id_number: object) -> str:
        """The current ID number for an ID a record carries."""
        return self.renamed.get(str(id_number), str(id_number))

    def person(self, id_number: object) -> Row | None:
        return self.register.get(self.current(id_number))

    def born(self, id_number: object) -> dt.date:
        return _day(self.register[self.current(id_number)]["birth_date"])

    def male(self, id_number: object) -> bool:
        return self.register[self.current(id_number)]["sex"] == "男"

    def death_dates(self) -> dict[str, dt.date]:
        """Current ID -> the earliest death date any health or cremation record gives."""
        dates: dict[str, dt.date] = {}
        for row in self.tables["deaths"] + self.tables["cremations"]:
            pid, day = self.current(row["person_id"]), _day(row["death_date"])
            dates[pid] = min(day, dates.get(pid, day))
        return dates


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    root = tmp_path_factory.mktemp("city")
    generate_city(root, persons=PERSONS, seed=SEED, dirty_rate=0.0)
    register = _csv(root / "public_security/household_register.csv", "gb18030")
    con = sqlite3.connect(root / "civil_affairs/civil_affairs.sqlite")
    con.row_factory = sqlite3.Row
    tables = {
        name: [dict(r) for r in con.execute(f'SELECT * FROM "{name}"')]
        for name in ("marriages", "divorces", "dibao", "cremations")
    }
    con.close()
    tables |= {
        "criminal_records": _csv(root / "public_security/criminal_records.csv", "gb18030"),
        "births": _jsonl(root / "health/births.jsonl"),
        "deaths": _jsonl(root / "health/deaths.jsonl"),
        "degrees": _jsonl(root / "education/degrees.jsonl"),
        "property": _csv(root / "housing/property.csv", "utf-8-sig"),
        "contributions": pq.read_table(root / "hrss/contributions.parquet").to_pylist(),
        "pensions": pq.read_table(root / "hrss/pensions.parquet").to_pylist(),
    }
    return City(
        register={str(r["id_number"]): r for r in register},
        register_rows=register,
        changes=_csv(root / "public_security/id_changes.csv", "gb18030"),
        tables=tables,
    )


def test_register_ids_are_valid_unique_and_agree_with_birth_date_and_sex(city: City) -> None:
    """Every register ID is valid GB 11643, unique, and encodes the row's birth date and sex."""
    ids = [str(r["id_number"]) for r in city.register_rows]
    assert len(ids) == PERSONS
    assert [i for i in ids if not is_valid(i)] == []
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    for row in city.register_rows:
        id_number = str(row["id_number"])
        assert birth_date(id_number) == _day(row["birth_date"]), row
        assert row["sex"] == ("男" if is_male(id_number) else "女"), row


def test_each_household_has_one_head_and_an_opposite_sex_spouse(city: City) -> None:
    """Each household_no has exactly one 户主, and any 配偶 is of the other sex."""
    members: dict[object, list[Row]] = defaultdict(list)
    for row in city.register_rows:
        members[row["household_no"]].append(row)
    for household, rows in members.items():
        heads = [r for r in rows if r["relation"] == "户主"]
        assert len(heads) == 1, (household, rows)
        for spouse in (r for r in rows if r["relation"] == "配偶"):
            assert spouse["sex"] != heads[0]["sex"], (household, rows)


def test_id_changes_map_old_numbers_to_registered_ones(city: City) -> None:
    """ID changes exist; each new ID is registered, no old ID is, and old differs from new."""
    assert city.changes
    for change in city.changes:
        assert is_valid(str(change["old_id"])), change
        assert change["old_id"] != change["new_id"], change
        assert change["new_id"] in city.register, change
        assert change["old_id"] not in city.register, change


def test_records_carry_the_id_valid_on_their_date(city: City) -> None:
    """A record dated before an ID change carries the old number, one dated after the new."""
    change_on = {str(c["old_id"]): _day(c["change_date"]) for c in city.changes}
    change_on |= {str(c["new_id"]): _day(c["change_date"]) for c in city.changes}
    old_ids = {str(c["old_id"]) for c in city.changes}
    dated = {  # dataset -> (ID fields, the field giving the record's date)
        "births": (("child_id", "mother_id", "father_id"), "birth_date"),
        "deaths": (("person_id",), "death_date"),
        "cremations": (("person_id",), "death_date"),
        "marriages": (("husband_id", "wife_id"), "registered_on"),
        "divorces": (("husband_id", "wife_id"), "divorced_on"),
        "criminal_records": (("person_id",), "judgment_date"),
        "property": (("owner_id",), "registered_on"),
        "contributions": (("person_id",), "month"),
        "pensions": (("person_id",), "month"),
        "dibao": (("person_id",), "start_month"),
    }
    for name, (fields, date_field) in dated.items():
        for row in city.tables[name]:
            day = _day(str(row[date_field]) + ("-01" if "month" in date_field else ""))
            for field in fields:
                id_number = row[field]
                if id_number in change_on:
                    assert (id_number in old_ids) == (day < change_on[id_number]), (name, row)


def test_births_link_registered_parents_of_the_right_sex_and_age(city: City) -> None:
    """Child, mother and father are registered; the mother is a woman of 15-50, the father a man,
    and the child's register birth date is the certificate's."""
    assert city.tables["births"]
    for birth in city.tables["births"]:
        day = _day(birth["birth_date"])
        child = city.person(birth["child_id"])
        assert child is not None, birth
        assert _day(child["birth_date"]) == day, (birth, child)
        assert (child["sex"] == "男") == (birth["child_sex"] == "M"), (birth, child)
        assert city.person(birth["mother_id"]) is not None, birth
        assert not city.male(birth["mother_id"]), birth
        assert 15 <= _age(city.born(birth["mother_id"]), day) <= 50, birth
        if birth["father_id"] is not None:
            assert city.person(birth["father_id"]) is not None, birth
            assert city.male(birth["father_id"]), birth


def test_no_parent_died_before_the_birth(city: City) -> None:
    """A mother is alive at the birth; a father died at most 300 days before it."""
    died = city.death_dates()
    for birth in city.tables["births"]:
        day = _day(birth["birth_date"])
        mother = died.get(city.current(birth["mother_id"]))
        assert mother is None or mother >= day, (birth, mother)
        if birth["father_id"] is not None:
            father = died.get(city.current(birth["father_id"]))
            assert father is None or father >= day - dt.timedelta(days=300), (birth, father)


def test_marriages_join_a_man_and_a_woman_of_legal_age(city: City) -> None:
    """Husbands are registered men of 22 or more, wives registered women of 20 or more."""
    assert city.tables["marriages"]
    for m in city.tables["marriages"]:
        day = _day(m["registered_on"])
        assert city.person(m["husband_id"]) is not None, m
        assert city.person(m["wife_id"]) is not None, m
        assert city.male(m["husband_id"]) and not city.male(m["wife_id"]), m
        assert _age(city.born(m["husband_id"]), day) >= 22, m
        assert _age(city.born(m["wife_id"]), day) >= 20, m


def test_divorces_follow_their_marriage(city: City) -> None:
    """Each divorce names a registered marriage of the same couple and comes after it."""
    assert city.tables["divorces"]
    marriages = {m["registration_no"]: m for m in city.tables["marriages"]}
    for d in city.tables["divorces"]:
        m = marriages.get(d["marriage_registration_no"])
        assert m is not None, d
        assert _day(d["divorced_on"]) > _day(m["registered_on"]), (d, m)
        assert city.current(d["husband_id"]) == city.current(m["husband_id"]), (d, m)
        assert city.current(d["wife_id"]) == city.current(m["wife_id"]), (d, m)


def test_marriages_of_a_person_never_overlap(city: City) -> None:
    """Each marriage ended, before the person's next one, by a divorce or the spouse's death."""
    divorced = {
        d["marriage_registration_no"]: _day(d["divorced_on"]) for d in city.tables["divorces"]
    }
    died = city.death_dates()
    history: dict[str, list[tuple[dt.date, str, str]]] = defaultdict(list)
    for m in city.tables["marriages"]:
        husband, wife = city.current(m["husband_id"]), city.current(m["wife_id"])
        day, reg = _day(m["registered_on"]), str(m["registration_no"])
        history[husband].append((day, reg, wife))
        history[wife].append((day, reg, husband))
    for person, marriages in history.items():
        marriages.sort()
        for (_, reg, spouse), (next_day, _, _) in pairwise(marriages):
            ended = min(divorced.get(reg, dt.date.max), died.get(spouse, dt.date.max))
            assert ended < next_day, (person, marriages)


def test_every_deceased_resident_has_a_death_source(city: City) -> None:
    """Each register person with status 死亡 has a hospital death or a cremation record."""
    died = city.death_dates()
    deceased = [r for r in city.register_rows if r["status"] == "死亡"]
    assert deceased
    assert [r["id_number"] for r in deceased if r["id_number"] not in died] == []


def test_death_records_point_to_residents_and_agree(city: City) -> None:
    """Death and cremation records name register persons; a cremation follows the death and
    agrees with the hospital record on the death date."""
    hospital = {city.current(d["person_id"]): _day(d["death_date"]) for d in city.tables["deaths"]}
    assert hospital
    for d in city.tables["deaths"]:
        assert city.person(d["person_id"]) is not None, d
    for c in city.tables["cremations"]:
        pid = city.current(c["person_id"])
        assert pid in city.register, c
        assert _day(c["cremated_on"]) >= _day(c["death_date"]), c
        assert hospital.get(pid, _day(c["death_date"])) == _day(c["death_date"]), c


@pytest.mark.parametrize("dataset", ["contributions", "pensions"])
def test_nobody_is_paid_or_contributes_after_death(city: City, dataset: str) -> None:
    """No contribution or pension row falls in a month after the person's death month."""
    died = city.death_dates()
    for row in city.tables[dataset]:
        death = died.get(city.current(row["person_id"]))
        assert death is None or str(row["month"]) <= death.isoformat()[:7], (row, death)


def test_pensioners_are_of_retirement_age(city: City) -> None:
    """Pensions go to registered women of 55 and men of 60 (from their birthday month on),
    in positive amounts, once per person, city and month."""
    rows = city.tables["pensions"]
    assert rows
    keys = Counter((city.current(r["person_id"]), r["city_code"], r["month"]) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == []
    for row in rows:
        assert city.person(row["person_id"]) is not None, row
        born = city.born(row["person_id"])
        retire = f"{born.year + (60 if city.male(row['person_id']) else 55):04d}-{born.month:02d}"
        assert str(row["month"]) >= retire, (row, born)
        assert int(row["amount_yuan"]) > 0, row


@pytest.mark.parametrize(
    ("dataset", "field"),
    [
        ("criminal_records", "person_id"),
        ("property", "owner_id"),
        ("degrees", "holder_id"),
        ("dibao", "person_id"),
        ("contributions", "person_id"),
    ],
)
def test_person_ids_resolve_to_the_register(city: City, dataset: str, field: str) -> None:
    """Every person a department record names is a register person, once IDs are resolved."""
    rows = city.tables[dataset]
    assert rows
    assert [r[field] for r in rows if city.person(r[field]) is None] == []


def test_degree_holders_were_adults_at_graduation(city: City) -> None:
    """Degrees are conferred in July; the holder was at least 18 by then."""
    for degree in city.tables["degrees"]:
        conferred = dt.date(int(degree["graduation_year"]), 7, 1)
        assert _age(city.born(degree["holder_id"]), conferred) >= 18, degree


def test_the_city_is_alive(city: City) -> None:
    """The city has people dying, being born, marrying, divorcing, working and retiring."""
    statuses = Counter(r["status"] for r in city.register_rows)
    assert statuses["死亡"] > 0
    assert statuses["正常"] > statuses["死亡"]
    for name in ("births", "deaths", "cremations", "marriages", "divorces", "contributions"):
        assert city.tables[name], name
    cities = {r["city_code"] for r in city.tables["contributions"]}
    assert len(cities) > 1  # some contribute elsewhere: the social-insurance facts need it
