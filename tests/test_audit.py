"""The auditor and citizen path (issue 6): e-supervision rules, audit verification,
the citizen report and the audit report.

One published city is shared by the module. On it, a clean month (March 2026) of
realistic asks — twelve caseworkers of four departments, each at their own desk of
service matters, three to six asks a working day in office hours, a pension office's
proof-of-life batch, an occasional refusal — must raise no alert at all. Then each
rule's case is planted in April and must raise exactly the alerts expected (rule, card,
ledger indexes). The verification tests tamper with a copy of nothing: they alter the
home in place and restore it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exchange import demo
from exchange.ask import AskRefused, Exchange, archive_path
from exchange.audit import case_key, read_home_ledger, read_ledger, tag_prefix, verify_home
from exchange.citizen import citizen_report
from exchange.cli import main
from exchange.home import Home
from exchange.report import build_report, home_report, report_data
from exchange.store import ExchangeStore
from exchange.supervision import (
    RULES,
    Alert,
    SupervisionError,
    add_staff,
    alerts,
    families,
    load_config,
    load_staff,
    parse_config,
    relatives,
    scan,
    staff_path,
)
from ledger.entries import EntryInvalid, decode
from ledger.store import read_entries

BEIJING = dt.timedelta(hours=8)
PREFIX = {
    "hrss": "RS",
    "housing": "ZJ",
    "education": "JY",
    "civil_affairs": "MZ",
    "health": "WJ",
    "public_security": "GA",
}
# Each caseworker's desk: the facts and service matters they ask under, every day.
DESKS = {
    "caseworker:hrss/zhang": [("person.alive", "RS-YL-01")],
    "caseworker:hrss/wang": [("person.alive", "RS-YL-01"), ("person.deceased_since", "RS-YL-02")],
    "caseworker:hrss/li": [("person.no_criminal_record", "RS-ZP-01"), ("person.alive", "RS-YL-01")],
    "caseworker:housing/zhao": [
        ("person.marital_status", "ZJ-GF-01"),
        ("property.none_in_city", "ZJ-BZ-01"),
    ],
    "caseworker:housing/qian": [("person.marital_status", "ZJ-GF-01")],
    "caseworker:housing/sun": [
        ("property.none_in_city", "ZJ-BZ-01"),
        ("property.none_in_city", "ZJ-GJ-01"),
    ],
    "caseworker:education/chen": [("person.no_criminal_record", "JY-ZP-01")],
    "caseworker:education/lin": [
        ("dibao.receives", "JY-JM-01"),
        ("person.no_criminal_record", "JY-ZP-01"),
    ],
    "caseworker:education/he": [("dibao.receives", "JY-JM-01")],
    "caseworker:civil_affairs/ma": [("person.marital_status", "MZ-HY-01")],
    "caseworker:civil_affairs/hu": [
        ("person.marital_status", "MZ-HY-01"),
        ("kinship.parent_of", "MZ-JC-01"),
    ],
    "caseworker:civil_affairs/guo": [("person.marital_status", "MZ-HY-01")],
}


def local(day: str, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """A Beijing local time as the UTC instant the exchange stamps."""
    moment = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute), dt.UTC)
    return moment - BEIJING + dt.timedelta(seconds=second)


class World:
    """The shared city, its clean month and the planted cases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = Home(root / "home")
        self.cases = 0
        self.expected: dict[str, list[tuple[str, set[int]]]] = {name: [] for name in RULES}
        self.asked: set[str] = set()  # every resident ID any ask named

    def case(self, department: str) -> str:
        self.cases += 1
        return f"{PREFIX[department]}-2026-{self.cases:05d}"

    def ask(
        self,
        exchange: Exchange,
        principal: str,
        fact: str,
        matter: str,
        people: list[str],
        when: dt.datetime,
        case: str | None = None,
    ) -> int:
        """One ask; its ledger index (answered or refused)."""
        department = principal.split(":")[1].split("/")[0]
        names = {"kinship.parent_of": ("parent_id", "child_id")}.get(fact, ("person_id",))
        params: dict[str, object] = dict(zip(names, people, strict=True))
        if fact == "property.none_in_city":
            params["city_code"] = "440100"
        self.asked.update(people)
        try:
            answer = exchange.ask(
                fact,
                params,
                principal=principal,
                service_matter=matter,
                case_ref=case or self.case(department),
                now=when,
            )
        except AskRefused as refused:
            return refused.index
        return answer.ledger_index


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("audit"))
    demo.run(w.home, w.root / "city", persons=2000, seed=5, dirty_rate=0.0)
    with ExchangeStore(w.home.exchange_db) as store:
        con = store.con
        alive = [
            r[0]
            for r in con.execute(
                "SELECT id_number FROM published.household_register WHERE status = '正常' "
                "AND id_number NOT IN (SELECT person_id FROM published.deaths) "
                "AND id_number NOT IN (SELECT person_id FROM published.cremations) "
                "ORDER BY id_number"
            ).fetchall()
        ]
        # Staff: an adult whose mother is registered; a grandchild living with a grandparent.
        w.ma_self, w.ma_mother = con.execute(
            "SELECT b.child_id, b.mother_id FROM published.births b "
            "JOIN published.household_register c ON c.id_number = b.child_id "
            "JOIN published.household_register m ON m.id_number = b.mother_id "
            "WHERE b.birth_date <= '2004-12-31' AND c.status = '正常' AND m.status = '正常' "
            "ORDER BY b.cert_no LIMIT 1"
        ).fetchone()
        w.sun_self, w.sun_grandparent = con.execute(
            "SELECT c.id_number, g.id_number FROM published.household_register c "
            "JOIN published.household_register g USING (household_no) "
            "WHERE c.relation IN ('子', '女') AND g.relation IN ('父亲', '母亲') "
            "AND c.status = '正常' AND g.status = '正常' ORDER BY c.id_number LIMIT 1"
        ).fetchone()
        kin = set(relatives(store, w.ma_self)) | set(relatives(store, w.sun_self))
        pairs = con.execute(
            "SELECT b.mother_id, b.child_id FROM published.births b "
            "JOIN published.household_register m ON m.id_number = b.mother_id "
            "JOIN published.household_register c ON c.id_number = b.child_id "
            "ORDER BY b.cert_no"
        ).fetchall()
        demo_people = {
            r[0]
            for r in con.execute(
                "SELECT id_number FROM published.household_register WHERE status = '正常' "
                "ORDER BY id_number DESC LIMIT 48"
            ).fetchall()
        }
        pensioners = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT person_id FROM published.pensions ORDER BY 1"
            ).fetchall()
        ]
    add_staff(w.home, "caseworker:civil_affairs/ma", w.ma_self)
    add_staff(w.home, "caseworker:housing/sun", w.sun_self)
    # The demo's own plants ask about the 48 highest IDs: keep them out of every pool.
    pool = [p for p in alive if p not in kin and p not in demo_people]
    random.Random(3).shuffle(pool)
    w.citizen = pool.pop()
    plants, clean = pool[:300], pool[300:]
    w.pairs = [p for p in pairs if not set(p) & (kin | {w.citizen} | set(plants))]
    rng = random.Random(11)
    with Exchange.open(w.home) as exchange:
        _clean_month(
            w,
            exchange,
            rng,
            clean,
            [p for p in pensioners if p not in kin | {w.citizen} | set(plants)][:150],
        )
    w.clean_frame = read_home_ledger(w.home)
    w.clean_alerts = alerts(w.home, frame=w.clean_frame)
    w.clean_size = w.clean_frame.size
    with Exchange.open(w.home) as exchange:
        _plant(w, exchange, plants)
        exchange.log.checkpoint()
    w.frame = read_home_ledger(w.home)
    w.alerts = alerts(w.home, frame=w.frame)
    return w


def _clean_month(
    w: World, exchange: Exchange, rng: random.Random, pool: list[str], pensioners: list[str]
) -> None:
    """March 2026: every working day, each caseworker asks at their desk, in office hours."""
    subjects = iter(pool)
    day = dt.date(2026, 3, 2)
    while day <= dt.date(2026, 3, 31):
        if day.isoweekday() <= 5:
            for principal, desk in DESKS.items():
                starts = sorted(
                    rng.sample(range(9 * 3600, 17 * 3600 + 1800, 60), rng.randint(3, 6))
                )
                for second in starts:
                    when = local(day.isoformat(), 0, 0, second)
                    fact, matter = rng.choice(desk)
                    if rng.random() < 0.03:  # a slip: a fact this desk has no grant for
                        fact = "dibao.receives" if fact != "dibao.receives" else "person.alive"
                    if fact == "kinship.parent_of":
                        people = list(w.pairs.pop())
                    else:
                        people = [next(subjects)]
                    w.ask(exchange, principal, fact, matter, people, when)
            if day == dt.date(2026, 3, 16):  # the pension office's proof-of-life caseload
                w.asked.update(pensioners)
                exchange.ask_batch(
                    "person.alive",
                    pa.table({"person_id": pensioners}),
                    principal="caseworker:hrss/zhang",
                    service_matter="RS-YL-01",
                    case_ref="RS-2026-90001",
                    now=local("2026-03-16", 10, 15),
                )
        day += dt.timedelta(days=1)


def _plant(w: World, exchange: Exchange, pool: list[str]) -> None:
    """April 2026: one case per rule, each with the alerts it must raise."""
    people = iter(pool)
    expect = w.expected

    def ask(
        principal: str,
        fact: str,
        matter: str,
        when: dt.datetime,
        case: str | None = None,
        person: str | None = None,
    ) -> int:
        return w.ask(exchange, principal, fact, matter, [person or next(people)], when, case)

    zhang, wang, li = "caseworker:hrss/zhang", "caseworker:hrss/wang", "caseworker:hrss/li"
    # time: an evening ask (yellow) and a night ask (red).
    expect["off_hours"].append(
        ("yellow", {ask(zhang, "person.alive", "RS-YL-01", local("2026-04-08", 21, 30))})
    )
    expect["off_hours"].append(
        ("red", {ask(wang, "person.alive", "RS-YL-01", local("2026-04-09", 3, 10))})
    )
    # time: 35 asks in under four minutes (yellow: more than 30 in 300 s, not 100).
    burst = {
        ask(
            "caseworker:housing/zhao",
            "property.none_in_city",
            "ZJ-BZ-01",
            local("2026-04-08", 10, 0, 6 * n),
        )
        for n in range(35)
    }
    expect["burst"].append(("yellow", burst))
    # process: no case reference, and one dated five years ahead, on one day.
    chen = "caseworker:education/chen"
    bad = {
        ask(chen, "person.no_criminal_record", "JY-ZP-01", local("2026-04-09", 10), "oops"),
        ask(
            chen, "person.no_criminal_record", "JY-ZP-01", local("2026-04-09", 11), "JY-2031-00001"
        ),
    }
    expect["case_ref_malformed"].append(("yellow", bad))
    # process: one case reference across departments (red), and within one (yellow).
    expect["case_ref_reused"].append(
        (
            "red",
            {
                ask(
                    "caseworker:civil_affairs/ma",
                    "person.marital_status",
                    "MZ-HY-01",
                    local("2026-04-10", 10),
                    "MZ-2026-09999",
                ),
                ask(
                    "caseworker:housing/qian",
                    "person.marital_status",
                    "ZJ-GF-01",
                    local("2026-04-10", 11),
                    "MZ-2026-09999",
                ),
            },
        )
    )
    expect["case_ref_reused"].append(
        (
            "yellow",
            {
                ask(zhang, "person.alive", "RS-YL-01", local("2026-04-10", 10), "RS-2026-09998"),
                ask(wang, "person.alive", "RS-YL-01", local("2026-04-10", 14), "RS-2026-09998"),
            },
        )
    )
    # process: one case, single asks about people of five unrelated families.
    family_of = dict(zip(*families(w.home, exchange.store).to_pydict().values(), strict=True))
    chosen: dict[int, str] = {}
    for person in people:
        chosen.setdefault(family_of[tag_prefix(exchange.subject_tag(person))], person)
        if len(chosen) == 5:
            break
    expect["case_ref_unrelated_subjects"].append(
        (
            "yellow",
            {
                ask(
                    "caseworker:education/lin",
                    "person.no_criminal_record",
                    "JY-ZP-01",
                    local("2026-04-13", 9 + n),
                    "JY-2026-09997",
                    person,
                )
                for n, person in enumerate(chosen.values())
            },
        )
    )
    # process: six refusals in one afternoon (no grant for this fact).
    expect["repeated_refusals"].append(
        (
            "yellow",
            {
                ask(
                    "caseworker:health/xu",
                    "person.alive",
                    "WJ-JZ-01",
                    local("2026-04-13", 14, 5 * n),
                )
                for n in range(6)
            },
        )
    )
    # content: one person asked about by four departments in two days.
    target = next(people)
    expect["subject_many_departments"].append(
        (
            "yellow",
            {
                ask(zhang, "person.alive", "RS-YL-01", local("2026-04-15", 9), person=target),
                ask(
                    "caseworker:housing/qian",
                    "person.marital_status",
                    "ZJ-GF-01",
                    local("2026-04-15", 15),
                    person=target,
                ),
                ask(
                    chen,
                    "person.no_criminal_record",
                    "JY-ZP-01",
                    local("2026-04-16", 10),
                    person=target,
                ),
                ask(
                    "caseworker:civil_affairs/guo",
                    "person.marital_status",
                    "MZ-HY-01",
                    local("2026-04-16", 16),
                    person=target,
                ),
            },
        )
    )
    # content: one caseworker with 45 asks in a day, peers with 5 (yellow: > 5x, not > 10x).
    for n in range(5):
        ask(chen, "person.no_criminal_record", "JY-ZP-01", local("2026-04-14", 9 + n))
        ask("caseworker:education/lin", "dibao.receives", "JY-JM-01", local("2026-04-14", 9 + n))
    expect["volume_outlier"].append(
        (
            "yellow",
            {
                ask(
                    "caseworker:education/he",
                    "dibao.receives",
                    "JY-JM-01",
                    local("2026-04-14", 9, 0, 600 * n),
                )
                for n in range(45)
            },
        )
    )
    # discretion: a code this caseworker never used, rare for the department (red).
    expect["unusual_service_matter"].append(("red", {_degree(w, exchange, li, next(people))}))
    # risk: a caseworker about their own mother (red); another about a grandparent in
    # their household (yellow).
    expect["self_or_relative"].append(
        (
            "red",
            {
                ask(
                    "caseworker:civil_affairs/ma",
                    "person.marital_status",
                    "MZ-HY-01",
                    local("2026-04-17", 10),
                    person=w.ma_mother,
                )
            },
        )
    )
    expect["self_or_relative"].append(
        (
            "yellow",
            {
                ask(
                    "caseworker:housing/sun",
                    "property.none_in_city",
                    "ZJ-BZ-01",
                    local("2026-04-17", 11),
                    person=w.sun_grandparent,
                )
            },
        )
    )
    # The citizen's own asks: two answered, one refused, one covert under embargo.
    c = w.citizen
    w.citizen_asks = [
        ask(zhang, "person.alive", "RS-YL-01", local("2026-04-20", 10), person=c),
        ask(
            "caseworker:housing/zhao",
            "person.marital_status",
            "ZJ-GF-01",
            local("2026-04-20", 11),
            person=c,
        ),
        ask(
            "caseworker:housing/zhao", "person.alive", "ZJ-GF-01", local("2026-04-21", 10), person=c
        ),
    ]
    w.asked.add(c)
    w.covert = exchange.ask(
        "person.alive",
        {"person_id": c},
        principal="caseworker:public_security/chen",
        service_matter="GA-XZ-01",
        case_ref="GA-2026-00077",
        embargo_until=dt.date(2026, 12, 31),
        now=local("2026-04-22", 10),
    ).ledger_index


def _degree(w: World, exchange: Exchange, principal: str, person: str) -> int:
    w.asked.add(person)
    return exchange.ask(
        "education.degree_at_least",
        {"person_id": person, "level": "bachelor"},
        principal=principal,
        service_matter="RS-RC-01",
        case_ref="RS-2026-09996",
        now=local("2026-04-16", 10),
    ).ledger_index


# --- e-supervision ---------------------------------------------------------------------------


def test_the_clean_month_raises_no_alert(world: World) -> None:
    assert world.clean_size > 1000  # a real month was asked: twelve desks, 22 working days
    assert world.clean_alerts == [], "\n".join(str(a) for a in world.clean_alerts)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_fires_on_its_planted_case(world: World, rule: str) -> None:
    found = sorted(
        ((a.card, set(a.indexes)) for a in world.alerts if a.rule == rule),
        key=lambda x: min(x[1]),
    )
    expected = sorted(world.expected[rule], key=lambda x: min(x[1]))
    assert expected, f"no case planted for {rule}"
    assert found == expected
    kinds = {a.kind for a in world.alerts if a.rule == rule}
    assert kinds == {RULES[rule].kind}


def test_every_kind_and_card_is_covered(world: World) -> None:
    assert {a.kind for a in world.alerts} == {"time", "process", "content", "discretion", "risk"}
    assert {a.card for a in world.alerts} == {"yellow", "red"}


def test_alerts_carry_no_personal_data(world: World) -> None:
    text = json.dumps([a.to_dict() for a in world.alerts], ensure_ascii=False)
    assert world.asked and not any(person in text for person in world.asked)
    assert not re.search(r"[0-9]{15}", text)
    assert not re.search(r"[\u4e00-\u9fff]", text)  # no names (the city's are in Han script)


def test_alerts_since_a_date(world: World) -> None:
    late = alerts(world.home, since=dt.date(2026, 4, 14), frame=world.frame)
    assert late and set(late) < set(world.alerts)
    assert all(a.last_time >= "2026-04-13T16:00:00Z" for a in late)
    assert {a.rule for a in late} >= {"volume_outlier", "self_or_relative"}
    assert "burst" not in {a.rule for a in late}


def test_staff_register_stays_in_the_home(world: World) -> None:
    path = staff_path(world.home)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_staff(world.home)["caseworker:civil_affairs/ma"] == world.ma_self
    schemas = Path(__file__).resolve().parent.parent / "schemas"
    assert not any(world.ma_self in p.read_text("utf-8") for p in schemas.rglob("*.json"))


def test_without_the_staff_register_the_risk_rule_is_blind(world: World) -> None:
    found = scan(world.frame, load_config())
    assert "self_or_relative" not in {a.rule for a in found}
    assert {a.rule for a in found} >= {"off_hours", "burst", "volume_outlier"}


def test_the_config_is_a_checked_contract(tmp_path: Path) -> None:
    document = json.loads(
        (Path(__file__).parent.parent / "schemas" / "supervision.json").read_text()
    )
    assert set(document["rules"]) == set(RULES)
    parse_config(document, tmp_path / "ok.json")
    broken = json.loads(json.dumps(document))
    del broken["rules"]["burst"]["yellow_over"]
    with pytest.raises(SupervisionError, match=r"burst\.yellow_over"):
        parse_config(broken, tmp_path / "s.json")
    broken = json.loads(json.dumps(document))
    broken["rules"]["off_hours"]["kind"] = "risk"
    with pytest.raises(SupervisionError, match=r"off_hours\.kind"):
        parse_config(broken, tmp_path / "s.json")
    broken = json.loads(json.dumps(document))
    broken["rules"]["tea_breaks"] = {"kind": "time"}
    with pytest.raises(SupervisionError, match="tea_breaks"):
        parse_config(broken, tmp_path / "s.json")
    # A threshold changed in the file changes what fires: thresholds are not in the code.
    loose = json.loads(json.dumps(document))
    loose["rules"]["burst"]["yellow_over"] = 3
    config = parse_config(loose, tmp_path / "loose.json")
    assert len(scan(_frame(), config, rules=["burst"])) == 1


def _frame() -> Any:
    """A tiny ledger frame by hand: four asks by one principal in one minute."""
    from exchange.audit import LedgerFrame

    n = 4
    t = int(local("2026-03-03", 10).timestamp())
    entries = pa.table(
        {
            "idx": pa.array(range(n), pa.int64()),
            "t": pa.array([t + i for i in range(n)], pa.int64()),
            "kind": ["ask"] * n,
            "department": ["hrss"] * n,
            "principal": ["caseworker:hrss/x"] * n,
            "fact_id": ["person.alive"] * n,
            "fact_version": ["1.0.0"] * n,
            "publication_id": pa.nulls(n, pa.int64()),
            "dataset": [""] * n,
            "service_matter": ["RS-YL-01"] * n,
            "case_ref": [f"RS-2026-{i:04d}" for i in range(n)],
            "case_key": [case_key(f"RS-2026-{i:04d}") for i in range(n)],
            "case_year": pa.array([2026] * n, pa.int32()),
            "outcome": ["answered"] * n,
            "reason": [""] * n,
            "n_subjects": pa.array([1] * n, pa.int32()),
            "embargo_until": [""] * n,
        }
    )
    subjects = pa.table(
        {
            "idx": pa.array(range(n), pa.int64()),
            "t": entries.column("t"),
            "tag": pa.array(range(n), pa.int64()),
        }
    )
    return LedgerFrame(entries, subjects)


# --- the bulk decoder --------------------------------------------------------------------------


def test_bulk_decoding_equals_the_reference_decoder(world: World) -> None:
    frame = world.frame
    rows = frame.entries.to_pylist()
    tags = frame.subjects.to_pylist()
    con = sqlite3.connect(world.home.ledger_store)
    stored = [(index, data) for index, data, _ in read_entries(con)]
    (segments,) = con.execute("SELECT count(*) FROM segments").fetchone()
    con.close()
    assert segments > 0  # the world's caseload is stored as segments, its asks as rows
    assert [r["idx"] for r in rows] == [i for i, _ in stored]
    by_entry: dict[int, list[int]] = {}
    for row in tags:
        by_entry.setdefault(row["idx"], []).append(row["tag"])
    for (index, data), row in zip(stored, rows, strict=True):
        entry = decode(data)
        when = dt.datetime.fromtimestamp(row["t"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert when == entry.time
        for name in (
            "kind",
            "department",
            "principal",
            "fact_id",
            "fact_version",
            "dataset",
            "service_matter",
            "case_ref",
            "outcome",
            "reason",
            "embargo_until",
            "publication_id",
        ):
            assert row[name] == getattr(entry, name), (index, name)
        assert sorted(by_entry.get(index, [])) == sorted(tag_prefix(t) for t in entry.subject_tags)
        assert row["case_key"] == case_key(entry.case_ref)
        year = re.match(r"[^-]{0,6}-([0-9]{4})-", entry.case_ref)
        assert row["case_year"] == (int(year.group(1)) if year else None), entry.case_ref


def test_bulk_decoding_in_worker_processes_gives_the_same_columns(world: World) -> None:
    single = read_ledger(world.home.ledger_store, stop=world.clean_size)
    split = read_ledger(world.home.ledger_store, stop=world.clean_size, workers=2, chunk=100)
    assert split.size == single.size == world.clean_size
    assert split.entries.equals(single.entries) and split.subjects.equals(single.subjects)


def test_bulk_decoding_refuses_a_damaged_entry(world: World, tmp_path: Path) -> None:
    copy = tmp_path / "ledger.sqlite"
    source = sqlite3.connect(world.home.ledger_store)
    source.backup(target := sqlite3.connect(copy))
    source.close()
    index, data = target.execute("SELECT idx, data FROM entries WHERE idx = 20").fetchone()
    target.execute("UPDATE entries SET data = ? WHERE idx = ?", [data + b"\x00", index])
    target.commit()
    target.close()
    with pytest.raises(EntryInvalid, match="after the last field"):
        read_ledger(copy)
    assert read_ledger(copy, stop=20).size == 20


# --- the citizen ------------------------------------------------------------------------------


def test_the_citizen_report_finds_exactly_the_planted_asks(world: World) -> None:
    before = citizen_report(world.home, world.citizen, now=local("2026-06-01", 12))
    assert [e.index for e in before.entries] == world.citizen_asks  # the covert one is hidden
    assert before.embargoed == 0  # not even a count tells the citizen an embargo exists
    alive, marital, refused = before.entries
    assert (alive.department, alive.role, alive.outcome) == ("hrss", "caseworker", "answered")
    assert alive.service_matter == "RS-YL-01" and "pension" in alive.service_matter_title
    assert alive.certificates and "proof of being alive" in alive.certificates[0]
    assert "public security" in alive.visits_spared[0]
    assert marital.department == "housing" and "marital status" in marital.certificates[0]
    assert refused.outcome == "refused" and refused.reason and refused.certificates == ()
    assert alive.principal == "" and alive.local_time == "2026-04-20 10:00"
    assert before.trips_spared == 2
    # After the embargo date the covert ask appears; the auditor sees it all along.
    after = citizen_report(world.home, world.citizen, now=local("2026-12-31", 0, 1))
    assert [e.index for e in after.entries] == [*world.citizen_asks, world.covert]
    audited = citizen_report(world.home, world.citizen, now=local("2026-06-01", 12), auditor=True)
    assert [e.index for e in audited.entries] == [*world.citizen_asks, world.covert]
    assert audited.embargoed == 1 and audited.entries[-1].embargo_until == "2026-12-31"
    assert audited.entries[0].principal == "caseworker:hrss/zhang"
    # As of a date: only what had happened by then.
    early = citizen_report(world.home, world.citizen, now=local("2026-04-20", 10, 30))
    assert [e.index for e in early.entries] == world.citizen_asks[:1]


def test_the_citizen_report_from_the_command_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--home",
            str(world.home.root),
            "citizen-report",
            world.citizen,
            "--as-of",
            "2026-06-01",
            "--json",
        ]
    )
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["view"] == "citizen"
    assert [a["index"] for a in shown["asks"]] == world.citizen_asks
    assert all("principal" not in a and "embargo_until" not in a for a in shown["asks"])
    wrong = world.citizen[:17] + ("0" if world.citizen[17] != "0" else "1")
    code = main(["--home", str(world.home.root), "citizen-report", wrong, "--json"])
    captured = capsys.readouterr()
    assert code == 1 and len(captured.err.strip().splitlines()) == 1
    assert world.citizen[:17] not in captured.err  # a wrong ID is not echoed back


# --- verification -----------------------------------------------------------------------------


def test_verify_a_sound_home(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_home(world.home, sample=None)
    assert report.ok, "\n".join(report.lines())
    assert report.rederived == report.answered_asks > 1000
    assert report.publications == 13 and report.checkpoints >= 1
    sampled = verify_home(world.home, sample=25, seed=7)
    assert sampled.ok and len(sampled.sample) == 25
    assert verify_home(world.home, sample=25, seed=7).sample == sampled.sample  # repeatable
    code = main(["--home", str(world.home.root), "audit", "verify", "--sample", "10", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["ok"] is True


def _publication(home: Home, dataset: str) -> dict[str, Any]:
    with ExchangeStore(home.exchange_db, read_only=True) as store:
        found = store.one(
            "SELECT id, package_dir FROM publications WHERE dataset = ? ORDER BY id DESC LIMIT 1",
            [dataset],
        )
    assert found is not None
    return found


def test_verify_catches_a_tampered_package(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = _publication(world.home, "degrees")
    data = Path(pub["package_dir"]) / "data.parquet"
    original = data.read_bytes()
    table = pq.read_table(data)
    changed = table.set_column(
        table.column_names.index("level"),
        "level",
        pa.array(["doctorate"] * table.num_rows, table.schema.field("level").type),
    )
    try:
        pq.write_table(changed, data)
        report = verify_home(world.home, sample=0)
        code = main(["--home", str(world.home.root), "audit", "verify", "--sample", "0"])
    finally:
        data.write_bytes(original)
    named = [f for f in report.findings if f.publication == pub["id"]]
    assert named and named[0].check == "publication" and "altered" in named[0].what
    captured = capsys.readouterr()
    assert code == 1 and f"publication {pub['id']}" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert verify_home(world.home, sample=0).ok  # restored


@contextmanager
def _archived_row(home: Home, index: int) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(archive_path(home))
    saved = con.execute(
        "SELECT params, result FROM asks WHERE ledger_index = ?", [index]
    ).fetchone()
    assert saved is not None
    try:
        yield con
    finally:
        con.execute(
            "UPDATE asks SET params = ?, result = ? WHERE ledger_index = ?", [*saved, index]
        )
        con.commit()
        con.close()


def test_verify_catches_an_altered_archive(world: World) -> None:
    index = world.citizen_asks[0]  # person.alive, answered
    other = world.citizen_asks[1]
    with _archived_row(world.home, index) as con:
        con.execute("UPDATE asks SET result = 'false' WHERE ledger_index = ?", [index])
        con.commit()
        report = verify_home(world.home, sample=None)
    found = [f for f in report.findings if f.index == index]
    assert [(f.check, f.expected, f.found) for f in found] == [("rederivation", "true", "false")]
    with _archived_row(world.home, other) as con:
        params = json.dumps({"person_id": world.ma_mother})  # someone else than was asked
        con.execute("UPDATE asks SET params = ? WHERE ledger_index = ?", [params, other])
        con.commit()
        report = verify_home(world.home, sample=None)
    assert [f.index for f in report.findings] == [other]
    assert verify_home(world.home, sample=None).ok


def test_verify_catches_an_altered_publication_row(world: World) -> None:
    pub = _publication(world.home, "household_register")
    index = world.citizen_asks[0]  # person.alive of the citizen: true when asked
    table = f"pub.p{pub['id']:06d}"
    with ExchangeStore(world.home.exchange_db) as store:
        con = store.con
        kind, view_sql = con.execute(
            "SELECT t.table_type, v.sql FROM information_schema.tables t "
            "LEFT JOIN duckdb_views() v "
            "ON v.schema_name = t.table_schema AND v.view_name = t.table_name "
            "WHERE t.table_schema = 'pub' AND t.table_name = ?",
            [table[4:]],
        ).fetchone()
        if kind == "VIEW":  # publications read their package in place: swap in a copy
            con.execute(f"DROP VIEW {table}")
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?)",
                [str(Path(pub["package_dir"]) / "data.parquet")],
            )
        con.execute(f"UPDATE {table} SET status = '死亡' WHERE id_number = ?", [world.citizen])
    try:
        report = verify_home(world.home, sample=None)
    finally:
        with ExchangeStore(world.home.exchange_db) as store:
            if kind == "VIEW":
                store.con.execute(f"DROP TABLE {table}")
                store.con.execute(view_sql)
            else:
                store.con.execute(
                    f"UPDATE {table} SET status = '正常' WHERE id_number = ?", [world.citizen]
                )
    rederived = [f for f in report.findings if f.check == "rederivation"]
    found = [(f.index, f.publication, f.expected, f.found) for f in rederived]
    assert (index, pub["id"], "true", "false") in found
    assert (world.covert, pub["id"], "true", "false") in found  # the covert ask, same person
    assert {f.index for f in rederived} <= {*world.citizen_asks, world.covert}
    assert {f.publication for f in rederived} == {pub["id"]}
    compared = [f for f in report.findings if f.check == "publication"]
    assert [f.publication for f in compared] == [pub["id"]]
    assert "1 row(s) only in the table, 1 only in the package" in compared[0].found
    assert verify_home(world.home, sample=0).ok


# --- the report -------------------------------------------------------------------------------


def test_the_report_is_one_self_contained_file(world: World, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    path, data = home_report(world.home, out, now=local("2026-05-01", 9))
    page = path.read_text("utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 5
    assert not re.search(r"(src|href)\s*=", page)  # no external asset of any kind
    assert "<script" not in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert not any(person in page for person in world.asked)
    assert data.asks == sum(sum(d.values()) for d in data.asks_by_day.values())
    assert data.trips_saved == data.certificates_replaced > 1000
    assert len(data.alerts) == len(world.alerts)
    assert "2026-03-16" in data.days and "2026-04-14" in data.days


def test_the_report_escapes_what_it_shows(world: World) -> None:
    data = report_data(
        world.clean_frame, [], load_config(), department_names={"hrss": "<script>alert(1)</script>"}
    )
    evil = Alert(
        "burst",
        "time",
        "red",
        (1,),
        ('caseworker:x/"><img onerror=1>',),
        ("x",),
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:01Z",
        "<b>&</b>",
    )
    page = build_report(dataclass_replace(data, alerts=[evil]))
    assert "<script>" not in page and "<img" not in page and "<b>&</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;&amp;&lt;/b&gt;" in page


def dataclass_replace(data: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(data, **changes)


def test_audit_commands(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(world.home.root)]
    assert main([*home, "audit", "alerts", "--since", "2026-04-17", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [a["rule"] for a in shown] == ["self_or_relative"] * 2  # ma's and sun's
    assert all(a["last_time"] >= "2026-04-16T16:00:00Z" for a in shown)
    out = tmp_path / "r.html"
    assert main([*home, "audit", "report", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == str(out) and out.is_file()
    assert main([*home, "staff", "add", "caseworker:hrss/x", "--resident-id", "123"]) == 1
    err = capsys.readouterr().err
    assert "resident ID is not valid" in err and "123" not in err
    assert main([*home, "staff", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "caseworker:civil_affairs/ma" in listed and world.ma_self not in json.dumps(listed)


def test_the_demo_ends_with_alerts_and_a_report(world: World, tmp_path: Path) -> None:
    # Last: it plants more asks (in June) on the shared home.
    summary = demo.audit_summary(world.home, tmp_path / "demo.html", now=local("2026-06-10", 9))
    counts = summary.counts
    assert counts[("risk", "red")] >= 1 and counts[("time", "red")] >= 1
    assert counts[("time", "yellow")] >= 1 and counts[("process", "red")] >= 1
    assert summary.report.is_file() and len(summary.planted) == 5
    june = [a for a in summary.alerts if a.first_time.startswith("2026-06-0")]
    assert {a.rule for a in june} == {
        "self_or_relative",
        "off_hours",
        "burst",
        "repeated_refusals",
        "case_ref_reused",
    }
