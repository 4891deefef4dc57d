"""The registry: departments and their keys, datasets, schema versions.

Registering a dataset's next schema version checks it against the earlier ones in the
dataset's compatibility mode (`exchange.compat`); an incompatible schema is refused with
every reason, field by field, and the facts it would break.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchange.contracts import Contract, contract_from_schema
from exchange.errors import ExchangeError
from exchange.keys import key_id
from exchange.store import ExchangeStore, db_time

_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class RegistryError(ExchangeError):
    """A registration that the registry refuses."""


class UnknownDepartment(RegistryError):
    """No department is registered under that code."""


class UnknownDataset(RegistryError):
    """No dataset is registered under that name."""


@dataclass(frozen=True)
class Registration:
    dataset: str
    version: str
    created_dataset: bool
    unchanged: bool  # the same schema was registered before: nothing to do


def add_department(
    store: ExchangeStore, code: str, name: str, public_key: bytes, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    if not _CODE.match(code):
        raise RegistryError(f"department code {code!r}: use 2-32 lower-case letters, digits, _")
    if len(public_key) != 32:
        raise RegistryError("a department key is a 32-byte Ed25519 public key")
    if store.one("SELECT code FROM departments WHERE code = ?", [code]):
        raise RegistryError(f"department {code} is already registered")
    kid = key_id(f"department:{code}", public_key)
    store.con.execute(
        "INSERT INTO departments VALUES (?, ?, ?, ?, ?)",
        [code, name, public_key, kid, db_time(now)],
    )
    return {"code": code, "name": name, "key_id": kid}


def departments(store: ExchangeStore) -> list[dict[str, Any]]:
    return store.rows("SELECT code, name, key_id, registered_at FROM departments ORDER BY code")


def department_key(store: ExchangeStore, code: str) -> bytes:
    found = store.one("SELECT public_key FROM departments WHERE code = ?", [code])
    if found is None:
        raise UnknownDepartment(f"no department {code!r} is registered (onceonly dept add)")
    return bytes(found["public_key"])


def schema_versions(store: ExchangeStore, dataset: str) -> list[Contract]:
    """The dataset's registered schema versions, oldest first."""
    rows = store.rows(
        "SELECT version, schema_json FROM schema_versions WHERE dataset = ? ORDER BY registered_at",
        [dataset],
    )
    return [
        contract_from_schema(json.loads(r["schema_json"]), source=f"{dataset} {r['version']}")
        for r in rows
    ]


def check_schema(
    store: ExchangeStore,
    contract: Contract,
    *,
    dependents: Callable[[str, str], list[str]] | None = None,
) -> Any:
    """The compatibility report of a new version against the registered ones.

    ``dependents`` says which facts read a field (default: the fact contracts in
    schemas/facts), so a breaking change names the facts it would break.
    """
    from exchange.compat import check

    dataset = store.one("SELECT * FROM datasets WHERE name = ?", [contract.dataset])
    if dataset is None:
        raise UnknownDataset(f"no dataset {contract.dataset!r} is registered")
    earlier = [c.schema for c in schema_versions(store, contract.dataset)]
    if dependents is None:
        from exchange.facts import dependents as fact_dependents  # the declared facts' fields

        dependents = fact_dependents
    return check(contract.schema, earlier, dataset["compatibility"], dependents=dependents)


def register_schema(
    store: ExchangeStore,
    contract: Contract,
    *,
    now: dt.datetime | None = None,
    dependents: Callable[[str, str], list[str]] | None = None,
) -> Registration:
    """Register a dataset, or its next schema version after a compatibility check."""
    from exchange.compat import IncompatibleSchema

    department_key(store, contract.department)  # the owner must be registered
    text = json.dumps(contract.schema, ensure_ascii=False, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    existing = store.one("SELECT * FROM datasets WHERE name = ?", [contract.dataset])
    if existing and existing["department"] != contract.department:
        raise RegistryError(
            f"{contract.dataset} belongs to {existing['department']}, not {contract.department}"
        )
    same = store.one(
        "SELECT sha256 FROM schema_versions WHERE dataset = ? AND version = ?",
        [contract.dataset, contract.version],
    )
    if same:
        if same["sha256"] == digest:
            return Registration(contract.dataset, contract.version, False, True)
        raise RegistryError(
            f"{contract.dataset} {contract.version} is registered with a different schema: "
            "publish a new version instead of changing one"
        )
    if existing:
        report = check_schema(store, contract, dependents=dependents)
        if not report.compatible:
            raise IncompatibleSchema(report)
    with store.transaction() as con:
        if not existing:
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?)",
                [contract.dataset, contract.department, contract.compatibility, db_time(now)],
            )
        con.execute(
            "INSERT INTO schema_versions VALUES (?, ?, ?, ?, ?)",
            [contract.dataset, contract.version, text, digest, db_time(now)],
        )
    return Registration(contract.dataset, contract.version, not existing, False)


def datasets(store: ExchangeStore) -> list[dict[str, Any]]:
    """Every dataset with its latest schema version and current publication."""
    return store.rows(
        """
        SELECT d.name AS dataset, d.department, d.compatibility,
               (SELECT version FROM schema_versions v WHERE v.dataset = d.name
                ORDER BY registered_at DESC LIMIT 1) AS latest_version,
               p.id AS publication, p.rows_accepted AS rows, p.rows_quarantined AS quarantined,
               p.published_at
        FROM datasets d LEFT JOIN current_publications p ON p.dataset = d.name
        ORDER BY d.department, d.name
        """
    )


def dataset_detail(store: ExchangeStore, name: str) -> dict[str, Any]:
    found = store.one("SELECT * FROM datasets WHERE name = ?", [name])
    if found is None:
        raise UnknownDataset(f"no dataset {name!r} is registered")
    found["versions"] = store.rows(
        "SELECT version, sha256, registered_at FROM schema_versions WHERE dataset = ? "
        "ORDER BY registered_at",
        [name],
    )
    found["publications"] = store.rows(
        "SELECT id, version, rows_read, rows_accepted, rows_quarantined, data_sha256, source, "
        "published_at FROM publications WHERE dataset = ? ORDER BY id",
        [name],
    )
    return found
