"""The main job on embedded defaults: a synthetic city published into a local exchange.

Every step is idempotent, so `make demo` can run again on the same home: departments and
schema versions already registered are left as they are, and data identical to a
current publication is not published twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
