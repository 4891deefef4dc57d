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
