"""Handing a signed package to a running exchange service instead of ingesting it here.

While `onceonly serve` runs it is the exchange's one writer (DESIGN.md): no other
process may open the database, so a scheduled publication (the Airflow DAG) goes through
the service's API, ``POST /v1/publications`` with the department's steward token. The
service verifies the package against the department's key and ingests it exactly as a
local ingest does — quality gate, ledger entry first, atomic — and a refusal is a ledger
entry there as it would be here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.errors import ExchangeError
from exchange.package import DATA, MANIFEST, QUARANTINE, SIGNATURE


class UploadRefused(ExchangeError):
    """The service refused the package (or could not be reached); nothing was published."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"the exchange service refused the package ({status} {code}): {message}")
        self.status, self.code, self.message = status, code, message


def upload_package(
    service_url: str, token: str, package: Path, *, timeout: float = 600.0
) -> dict[str, Any]:
    """Publish ``package`` through the service; return its publication (id, rows, …).

    The four files stream from disk (a package's data can be hundreds of megabytes).
    Raises `UploadRefused` with the service's stable error code and message.
    """
    import httpx

    names = (MANIFEST, SIGNATURE, DATA, QUARANTINE)
    field = {MANIFEST: "manifest", SIGNATURE: "signature", DATA: "data", QUARANTINE: "quarantine"}
    handles = [(package / name).open("rb") for name in names]
    try:
        files = {field[name]: (name, handle) for name, handle in zip(names, handles, strict=True)}
        try:
            response = httpx.post(
                service_url.rstrip("/") + "/v1/publications",
                headers={"Authorization": f"Bearer {token}"},
                files=files,
                timeout=timeout,
            )
        except httpx.HTTPError as problem:
            raise UploadRefused(0, "unreachable", f"{service_url}: {problem}") from problem
    finally:
        for handle in handles:
            handle.close()
    if response.status_code != 200:
        try:
            body = response.json()
            code, message = str(body["code"]), str(body["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise UploadRefused(response.status_code, code, message)
    published: dict[str, Any] = response.json()
    return published
