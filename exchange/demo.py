"""The main job on embedded defaults: a synthetic city published into a local exchange.

Every step is idempotent, so `make demo` can run again on the same home: departments and
schema versions already registered are left as they are, and data identical to a
current publication is not published twice.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors import load_source, source_files
from exchange import registry
from exchange.contracts import contract_files, load_contract_file
from exchange.home import Home, init_home
from exchange.keys import generate_key, load_private_key, raw_public
from exchange.package import Package
from exchange.paths import schemas_dir
from exchange.publish import Publication, publish
from exchange.store import ExchangeStore
from exchange.synth.city import CitySummary, generate_city

SOURCES = Path(__file__).resolve().parent.parent / "connectors" / "sources"
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class DemoRun:
    city: CitySummary
    publications: list[tuple[Package, Publication]]


def department_names() -> dict[str, str]:
    data = json.loads((schemas_dir() / "reference" / "departments.json").read_text("utf-8"))
    return {d["code"]: d["name"] for d in data["departments"]}


def prepare(home: Home) -> Home:
    """A home with every department (keys made here) and every contract registered."""
    if not home.exists():
        init_home(home)
    with ExchangeStore(home.exchange_db) as store:
        known = {d["code"] for d in registry.departments(store)}
        for code, name in department_names().items():
            if code not in known:
                key_file = home.department_keys / f"{code}.pem"
                key = load_private_key(key_file) if key_file.exists() else generate_key(key_file)
                registry.add_department(store, code, name, raw_public(key))
        for path in contract_files():
            registry.register_schema(store, load_contract_file(path))
    return home


def run(
    home: Home,
    city: Path,
    *,
    persons: int,
    seed: int,
    dirty_rate: float,
    on_publication: Callable[[str], Callable[[int], None] | None] | None = None,
) -> DemoRun:
    """Prepare the home, generate the city, publish every department source."""
    prepare(home)
    summary = generate_city(city, persons=persons, seed=seed, dirty_rate=dirty_rate)
    published = []
    with ExchangeStore(home.exchange_db) as store:
        for path in source_files(SOURCES):
            source = load_source(path)
            progress = on_publication(source.dataset) if on_publication else None
            published.append(publish(store, home, source, city=city, progress=progress))
    return DemoRun(summary, published)


@dataclass(frozen=True)
class DemoAsk:
    certificate: str
    fact: str
    asked_by: str
    service_matter: str
    outcome: str  # answered / refused
    answer: object
    ledger_index: int


@dataclass(frozen=True)
class DemoAsks:
    asks: list[DemoAsk]
    checkpoint: str
    ledger_size: int
    verified: bool
    problems: list[str]


def ask_catalogue(home: Home, *, now: dt.datetime | None = None) -> DemoAsks:
    """As caseworkers, ask one fact per certificate in the catalogue, plus one refused ask.

    Each certificate's example case is picked from the published data by the catalogue's
    `example.sql` (the demo operator's choice, not a caseworker's); then the department
    that needs the certificate asks the fact, under its service matter, for a case.
    Ends with a signed, witnessed checkpoint and a full verification of the ledger.
    """
    from exchange.ask import AskRefused, Exchange
    from exchange.catalogue import load_catalogue
    from exchange.facts import load_fact
    from exchange.store import dataset_view

    asks: list[DemoAsk] = []
    with Exchange.open(home) as exchange:
        cursor = exchange.store.con.cursor()
        for n, certificate in enumerate(load_catalogue(), 1):
            example = certificate.example
            fact = load_fact(certificate.facts[0])
            # The operator's example query reads the current publications' views.
            sql = _PLACEHOLDER.sub(lambda m: dataset_view(m.group(1)), example["sql"])
            found = cursor.execute(sql).fetchall()
            names = [d[0] for d in cursor.description or []]
            params = (
                {k: (str(v) if v is not None else "") for k, v in zip(names, found[0], strict=True)}
                if found
                else {}
            )
            department = example["department"]
            answer = exchange.ask(
                fact.id,
                params,
                principal=f"caseworker:{department}/demo",
                service_matter=example["service_matter"],
                case_ref=f"DEMO-2026-{n:04d}",
                now=now,
            )
            asks.append(
                DemoAsk(
                    certificate.title,
                    fact.ref,
                    department,
                    example["service_matter"],
                    "answered",
                    answer.result,
                    answer.ledger_index,
                )
            )
        # A department without a grant for the fact: refused, and on the record.
        try:
            exchange.ask(
                "person.no_criminal_record",
                params_of_first_resident(cursor),
                principal="caseworker:housing/demo",
                service_matter="ZJ-GF-01",
                case_ref="DEMO-2026-9999",
                now=now,
            )
            raise AssertionError("the policy let an ungranted ask through")  # pragma: no cover
        except AskRefused as refused:
            asks.append(
                DemoAsk(
                    "(no certificate: housing has no grant)",
                    "person.no_criminal_record@1.0.0",
                    "housing",
                    "ZJ-GF-01",
                    "refused",
                    refused.reason,
                    refused.index,
                )
            )
        checkpoint = exchange.log.checkpoint(now=now)
        from exchange.ledgerlink import log_verifier, witness_verifier

        report = exchange.log.verify(verifiers=[log_verifier(home), witness_verifier(home)])
        return DemoAsks(
            asks, checkpoint, exchange.log.size, report.ok, report.lines() if not report.ok else []
        )


def params_of_first_resident(cursor: Any) -> dict[str, str]:
    found = cursor.execute(
        'SELECT id_number FROM published."household_register" ORDER BY id_number LIMIT 1'
    ).fetchall()
    return {"person_id": str(found[0][0])}


@dataclass(frozen=True)
class AuditSummary:
    """What `audit_summary` planted and found: alert counts by (kind, card), the report."""

    planted: list[str]
    alerts: list[Any]  # exchange.supervision.Alert
    counts: dict[tuple[str, str], int]
    report: Path
    certificates_replaced: int
    trips_saved: int


def audit_summary(home: Home, out: Path, *, now: dt.datetime | None = None) -> AuditSummary:
    """Plant a few anomalous asks, raise the e-supervision alerts, write the audit report.

    The plants, so the alert summary is not empty (each is a real, ledgered ask):
    a caseworker of civil affairs, registered in the staff register as a resident of the
    city, asks about their own mother (risk, red); a pension caseworker asks at 02:13
    Beijing time (time, red); a housing caseworker makes 40 asks in two minutes (time);
    an education caseworker is refused six times probing a fact it has no grant for
    (process); two departments use one case reference (process, red). Then a cosigned
    checkpoint covers them, and the report is written to ``out``.
    """
    import contextlib

    from exchange.ask import AskRefused, Exchange
    from exchange.report import home_report
    from exchange.store import dataset_view
    from exchange.supervision import AlertSummary, add_staff

    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    beijing = dt.timedelta(hours=8)
    # Yesterday, local time: the plants are in the past whenever the demo runs.
    yesterday = (moment + beijing).date() - dt.timedelta(days=1)

    def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
        local = dt.datetime.combine(yesterday, dt.time(hour, minute), dt.UTC)
        return local - beijing + dt.timedelta(seconds=second)

    planted: list[str] = []
    with Exchange.open(home) as exchange:
        cursor = exchange.store.con.cursor()
        register, births = dataset_view("household_register"), dataset_view("births")
        staff = cursor.execute(
            f"SELECT b.child_id, b.mother_id FROM {births} b "
            f"JOIN {register} c ON c.id_number = b.child_id AND c.status = '正常' "
            f"JOIN {register} m ON m.id_number = b.mother_id AND m.status = '正常' "
            "WHERE b.birth_date <= '2004-12-31' ORDER BY b.cert_no LIMIT 1"
        ).fetchone()
        people = [
            str(r[0])
            for r in cursor.execute(
                f"SELECT id_number FROM {register} WHERE status = '正常' "
                "ORDER BY id_number DESC LIMIT 48"
            ).fetchall()
        ]

        def ask(fact: str, person: str, principal: str, matter: str, case: str,
                when: dt.datetime) -> None:  # fmt: skip
            params = {"person_id": person}
            if fact == "property.none_in_city":
                params["city_code"] = "440100"
            # A refusal is on the record too: for supervision, that is the point.
            with contextlib.suppress(AskRefused):
                exchange.ask(fact, params, principal=principal, service_matter=matter,
                             case_ref=case, now=when)  # fmt: skip

        if staff is not None:
            clerk = "caseworker:civil_affairs/liu"
            add_staff(home, clerk, str(staff[0]))
            ask("person.marital_status", str(staff[1]), clerk, "MZ-HY-01", "MZ-2026-0400",
                at(10, 5))  # fmt: skip
            planted.append("a civil-affairs caseworker asks about their own mother")
        ask("person.alive", people[0], "caseworker:hrss/night", "RS-YL-01", "RS-2026-0401",
            at(2, 13))  # fmt: skip
        planted.append("a pension caseworker asks at 02:13 Beijing time")
        for n, person in enumerate(people[1:41]):
            ask("property.none_in_city", person, "caseworker:housing/zhao", "ZJ-BZ-01",
                f"ZJ-2026-{500 + n:04d}", at(10, 0, 3 * n))  # fmt: skip
        planted.append("a housing caseworker makes 40 asks in two minutes")
        for n, person in enumerate(people[41:47]):
            ask("person.no_criminal_record", person, "caseworker:education/qian", "JY-RX-01",
                f"JY-2026-{600 + n:04d}", at(15, 10 * n))  # fmt: skip
        planted.append("an education caseworker is refused six times in an afternoon")
        ask("person.alive", people[47], "caseworker:hrss/sun", "RS-YL-01", "RS-2026-0700",
            at(11, 30))  # fmt: skip
        ask("property.none_in_city", people[47], "caseworker:housing/zhou", "ZJ-BZ-01",
            "RS-2026-0700", at(11, 31))  # fmt: skip
        planted.append("two departments use one case reference")
        exchange.log.checkpoint(now=now)
    path, data = home_report(home, out, now=now)
    return AuditSummary(
        planted=planted,
        alerts=list(data.alerts),
        counts=AlertSummary.of(data.alerts).counts,
        report=path,
        certificates_replaced=data.certificates_replaced,
        trips_saved=data.trips_saved,
    )
