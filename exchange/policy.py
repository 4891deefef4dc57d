"""Access policy: deny by default, grants bound to a department's power list.

The policy is a file, `schemas/policy.json` (DESIGN.md: contracts are files)::

    {
      "power_lists": {"hrss": {"RS-PEN-01": "养老金领取资格认证 pension eligibility check"}},
      "grants": [{"department": "hrss", "fact": "person.alive", "service_matter": "RS-PEN-01"}],
      "rate_limits": {"per_minute": 120, "per_day": 5000},
      "case_ref": "^[A-Z]{2,6}-[0-9]{4}-[0-9]{4,8}$"
    }

An ask is allowed only if (1) its principal is a caseworker of a registered department,
(2) its service-matter code is on that department's power list (权力清单: no power
without a legal grant), (3) a grant names exactly (department, fact, service matter),
(4) it carries a well-formed case reference, and (5) the principal is within its rate
limits. A grant may be ``"covert": true``: only such asks may carry an embargo (hidden
from the citizen until a release date, never from auditors).

Refusal reasons are fixed messages chosen here, never text built from a request, so
they are safe to put in the ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from exchange.errors import ExchangeError
from exchange.paths import schemas_dir

PRINCIPAL = re.compile(
    r"(steward|caseworker|auditor):([a-z][a-z0-9_]{1,31})/([A-Za-z0-9._-]{1,64})"
)


class PolicyError(ExchangeError):
    """The policy file is malformed."""


@dataclass(frozen=True)
class Principal:
    role: str
    department: str
    user: str

    @property
    def text(self) -> str:
        return f"{self.role}:{self.department}/{self.user}"


def parse_principal(text: str) -> Principal | None:
    """`caseworker:<dept>/<user>` and friends; None when the text is not one."""
    match = PRINCIPAL.fullmatch(text or "")
    return Principal(*match.groups()) if match else None


@dataclass(frozen=True)
class Grant:
    department: str
    fact: str
    service_matter: str
    covert: bool = False


@dataclass(frozen=True)
class Policy:
    power_lists: dict[str, dict[str, str]]
    grants: tuple[Grant, ...]
    per_minute: int
    per_day: int
    case_ref: re.Pattern[str]
    path: Path

    def grant(self, department: str, fact: str, service_matter: str) -> Grant | None:
        for grant in self.grants:
            if (grant.department, grant.fact, grant.service_matter) == (
                department,
                fact,
                service_matter,
            ):
                return grant
        return None

    def service_matters(self, department: str, fact: str) -> list[str]:
        """The service matters under which ``department`` may ask ``fact``."""
        return [
            g.service_matter for g in self.grants if (g.department, g.fact) == (department, fact)
        ]

    def check(
        self,
        principal: Principal | None,
        fact: str,
        service_matter: str,
        case_ref: str,
        *,
        embargo: bool = False,
    ) -> str | None:
        """Why the ask is refused, or None when policy allows it (rate limits aside)."""
        if principal is None:
            return "malformed principal: expected caseworker:<department>/<user>"
        if principal.role != "caseworker":
            return f"role {principal.role} may not ask facts"
        powers = self.power_lists.get(principal.department)
        if powers is None:
            return "department has no power list"
        if service_matter not in powers:
            return "service matter is not on the department's power list"
        grant = self.grant(principal.department, fact, service_matter)
        if grant is None:
            return "no grant for this fact and service matter"
        if not case_ref:
            return "no case reference"
        if not self.case_ref.fullmatch(case_ref):
            return "malformed case reference"
        if embargo and not grant.covert:
            return "embargo is allowed only under a covert-investigation grant"
        return None


def _policy_path() -> Path:
    return schemas_dir() / "policy.json"


@cache
def _load(path: Path) -> Policy:
    try:
        document = json.loads(path.read_text("utf-8"))
    except OSError as problem:
        raise PolicyError(f"cannot read {path}: {problem.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise PolicyError(f"{path} is not UTF-8 JSON: {problem}") from None
    return parse_policy(document, path)


def load_policy(path: Path | None = None) -> Policy:
    return _load(path or _policy_path())


def parse_policy(document: Any, path: Path) -> Policy:
    if not isinstance(document, dict):
        raise PolicyError(f"{path}: the policy is a JSON object")
    powers = document.get("power_lists")
    if not isinstance(powers, dict) or not all(
        isinstance(items, dict) and all(isinstance(v, str) for v in items.values())
        for items in powers.values()
    ):
        raise PolicyError(f"{path}: power_lists maps department -> {{code: title}}")
    grants = []
    for n, raw in enumerate(document.get("grants", [])):
        if not isinstance(raw, dict) or not all(
            isinstance(raw.get(k), str) for k in ("department", "fact", "service_matter")
        ):
            raise PolicyError(f"{path}: grant {n} needs department, fact and service_matter")
        grant = Grant(
            raw["department"], raw["fact"], raw["service_matter"], bool(raw.get("covert"))
        )
        if grant.service_matter not in powers.get(grant.department, {}):
            raise PolicyError(
                f"{path}: grant {n} names {grant.service_matter}, "
                f"which is not on {grant.department}'s power list"
            )
        grants.append(grant)
    limits = document.get("rate_limits", {})
    try:
        case_ref = re.compile(str(document.get("case_ref", r"[A-Za-z0-9][A-Za-z0-9/_.-]{2,63}")))
    except re.error as problem:
        raise PolicyError(f"{path}: case_ref is not a regular expression: {problem}") from None
    return Policy(
        power_lists={d: dict(items) for d, items in powers.items()},
        grants=tuple(grants),
        per_minute=int(limits.get("per_minute", 120)),
        per_day=int(limits.get("per_day", 5000)),
        case_ref=case_ref,
        path=path,
    )


class RateLimiter:
    """Per-principal sliding windows (a minute and a day), in the exchange's one process.

    The exchange is one long-lived process (DESIGN.md, one writer), so its memory is
    where the windows live; time comes from the ask (`now`), so tests and replays are
    deterministic. A batch counts as one ask: it is one decision by one caseworker.
    """

    def __init__(self, per_minute: int, per_day: int) -> None:
        self.per_minute, self.per_day = per_minute, per_day
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, principal: str, now: dt.datetime) -> bool:
        """Count one ask by ``principal`` at ``now`` if it is within both limits."""
        t = now.timestamp()
        with self._lock:
            seen = self._seen[principal]
            while seen and seen[0] <= t - 86_400:
                seen.popleft()
            if len(seen) >= self.per_day:
                return False
            recent = (
                sum(1 for s in reversed(seen) if s > t - 60) if len(seen) >= self.per_minute else 0
            )
            if recent >= self.per_minute:
                return False
            seen.append(t)
            return True
