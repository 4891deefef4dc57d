"""Dataset contracts: JSON Schema 2020-12 files in `schemas/datasets/<dataset>/<version>.json`.

Each contract carries an `x-onceonly` annotation naming its dataset, version, owning
department, key fields, personal-data fields and compatibility mode. Contracts are files,
reviewed like code; nothing here hard-codes a dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

from exchange import residentid
from exchange.errors import ExchangeError
from exchange.paths import schemas_dir

# The per-field keywords dataset contracts use: the validator compiles them, the
# compatibility check compares them; anything else falls back or counts as undecidable.
FIELD_KEYWORDS = frozenset(
    {"type", "enum", "const", "pattern", "format", "minLength", "maxLength",
     "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
)  # fmt: skip


class ContractError(ExchangeError):
    """A contract file is missing, malformed, or not a valid JSON Schema."""


@dataclass(frozen=True)
class Contract:
    """One version of a dataset's contract."""

    dataset: str
    version: str
    department: str
    key: tuple[str, ...]
    personal: tuple[str, ...]
    compatibility: str
    schema: dict[str, Any]

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        return dict(self.schema.get("properties", {}))

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.schema.get("required", ()))

    def validator(self) -> Draft202012Validator:
        """The reference validator: jsonschema with onceonly's formats."""
        return Draft202012Validator(self.schema, format_checker=format_checker())


def _is_resident_id(instance: object) -> bool:
    return not isinstance(instance, str) or residentid.is_valid(instance)


def format_checker() -> FormatChecker:
    """jsonschema's formats plus `gb11643`, the resident ID number."""
    checker = FormatChecker()
    checker.checks("gb11643")(_is_resident_id)
    return checker


def contract_from_schema(schema: dict[str, Any], *, source: str = "schema") -> Contract:
    """Check a schema and read its onceonly annotation."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as problem:
        raise ContractError(
            f"{source} is not a valid JSON Schema 2020-12: {problem.message}"
        ) from None
    meta = schema.get("x-onceonly")
    if not isinstance(meta, dict):
        raise ContractError(
            f"{source} has no x-onceonly annotation (dataset, version, department, key)"
        )
    missing = [k for k in ("dataset", "version", "department", "key") if k not in meta]
    if missing:
        raise ContractError(f"{source}: x-onceonly lacks {', '.join(missing)}")
    unknown = [k for k in meta["key"] if k not in schema.get("properties", {})]
    if unknown:
        raise ContractError(f"{source}: key field(s) {', '.join(unknown)} are not properties")
    return Contract(
        dataset=str(meta["dataset"]),
        version=str(meta["version"]),
        department=str(meta["department"]),
        key=tuple(meta["key"]),
        personal=tuple(meta.get("personal", ())),
        compatibility=str(meta.get("compatibility", "BACKWARD")),
        schema=schema,
    )


def load_contract_file(path: Path) -> Contract:
    try:
        schema = json.loads(Path(path).read_text("utf-8"))
    except OSError as problem:
        raise ContractError(f"cannot read contract {path}: {problem.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise ContractError(f"contract {path} is not valid JSON: {problem}") from None
    if not isinstance(schema, dict):
        raise ContractError(f"contract {path} is not a JSON object")
    return contract_from_schema(schema, source=str(path))


@cache
def load_contract(dataset: str, version: str) -> Contract:
    """The contract file for a dataset version under `schemas/datasets/`."""
    path = schemas_dir() / "datasets" / dataset / f"{version}.json"
    if not path.is_file():
        raise ContractError(f"no contract for {dataset} {version} (looked for {path})")
    contract = load_contract_file(path)
    if (contract.dataset, contract.version) != (dataset, version):
        raise ContractError(f"{path} declares {contract.dataset} {contract.version}")
    return contract


def contract_files() -> list[Path]:
    """Every contract file, in dataset and version order."""
    return sorted((schemas_dir() / "datasets").glob("*/*.json"))
