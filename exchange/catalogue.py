"""The certificate catalogue: which facts replace which paper certificate.

`schemas/certificates.json` lists, for each certificate a citizen used to fetch, the
facts that replace it, the issuing department whose visit it spares, and the service
matters (power-list items) allowed to ask it. The audit report counts trips saved from
it; the demo and the web console let a caseworker pick a certificate rather than a fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from exchange.errors import ExchangeError
from exchange.paths import schemas_dir


class CatalogueError(ExchangeError):
    """The certificate catalogue is malformed or names something that does not exist."""


@dataclass(frozen=True)
class Certificate:
    id: str
    name: str
    english: str
    facts: tuple[str, ...]
    issuer: str
    service_matters: tuple[str, ...]
    example: dict[str, Any]

    @property
    def title(self) -> str:
        return f"{self.name} {self.english}"


@cache
def _load(path: Path) -> tuple[Certificate, ...]:
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise CatalogueError(f"cannot read the certificate catalogue {path}: {problem}") from None
    certificates = []
    for n, raw in enumerate(document.get("certificates", [])):
        try:
            certificates.append(
                Certificate(
                    id=str(raw["id"]),
                    name=str(raw["name"]),
                    english=str(raw["english"]),
                    facts=tuple(str(f) for f in raw["facts"]),
                    issuer=str(raw["issuer"]),
                    service_matters=tuple(str(s) for s in raw["service_matters"]),
                    example=dict(raw.get("example", {})),
                )
            )
        except (KeyError, TypeError) as problem:
            raise CatalogueError(f"{path}: certificate {n} lacks {problem}") from None
    return tuple(certificates)


def load_catalogue(path: Path | None = None) -> tuple[Certificate, ...]:
    return _load(path or schemas_dir() / "certificates.json")


def certificate(certificate_id: str) -> Certificate:
    for found in load_catalogue():
        if found.id == certificate_id:
            return found
    raise CatalogueError(f"no certificate {certificate_id!r} in the catalogue")


def certificates_spared(fact_id: str) -> list[Certificate]:
    """The certificates an answer of ``fact_id`` replaces."""
    return [c for c in load_catalogue() if fact_id in c.facts]
