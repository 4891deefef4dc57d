"""The citizen's view: who asked the exchange about me, why, and what it spared me.

`citizen_report(home, resident_id)` finds every ledger entry about one person — asks
answered, refused or failed — by the person's subject tag (the ledger holds no resident
ID: the tag is computed here with the home's subject key, for the resident's current
number and every earlier or later one in the published ID changes). For each it gives
when (UTC and Beijing time), which department, under which service matter (the code and
its title on the department's power list), which fact, which certificate the answer
spared the citizen and whose office they no longer had to visit, and the outcome.

**Departments, not names.** The citizen sees the asking department and the principal's
role, not the caseworker's user name. The department is the accountable party: the
service matter on its power list is the legal ground of the ask, and the case reference
shown lets the citizen take it up with that department. Naming individual civil
servants adds nothing the citizen needs to exercise their rights and exposes staff to
pressure; accountability to the person is kept where it belongs — in the ledger, in
the auditor's view of this report (``auditor=True``) and in the e-supervision alerts.

**Embargoes.** An ask made under a covert-investigation grant may carry an embargo date;
the citizen's view leaves it out entirely until that date (local time) — no count, no
placeholder, since even a count would tip off the person investigated. The auditor's
view shows every entry, with its embargo. ``now`` (default: the clock) is when the
report is made: entries after it are not shown, and embargoes are judged at it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from exchange.errors import InvalidArgument
from exchange.home import Home

if TYPE_CHECKING:
    from exchange.store import ExchangeStore

__all__ = ["CitizenEntry", "CitizenReport", "citizen_report", "end_of_local_day", "find_entries"]

UTC_OFFSET: Final = dt.timedelta(hours=8)  # Beijing time, as the e-supervision config


@dataclass(frozen=True)
class CitizenEntry:
    """One ask about the citizen, as the report shows it."""

    index: int
    time: str  # UTC, as in the ledger
    local_time: str  # Beijing time, YYYY-MM-DD HH:MM
    department: str
    department_name: str
    role: str
    service_matter: str
    service_matter_title: str
    fact: str
    fact_title: str
    case_ref: str
    outcome: str  # answered / refused / error
    reason: str
    certificates: tuple[str, ...]  # the certificates the answer spared the citizen
    visits_spared: tuple[str, ...]  # the offices they no longer had to visit for them
    embargo_until: str  # the auditor's view only; "" in the citizen's
    principal: str  # the auditor's view only; "" in the citizen's

    def to_dict(self, *, auditor: bool) -> dict[str, Any]:
        found = asdict(self)
        if not auditor:
            del found["principal"], found["embargo_until"]
        found["certificates"] = list(self.certificates)
        found["visits_spared"] = list(self.visits_spared)
        return found


@dataclass(frozen=True)
class CitizenReport:
    """Every visible ask about one resident, oldest first."""

    as_of: str  # UTC time the report was made at
    auditor: bool
    entries: tuple[CitizenEntry, ...]
    embargoed: int  # entries under embargo at ``as_of`` (auditor's view; 0 in the citizen's)

    @property
    def trips_spared(self) -> int:
        return sum(len(e.visits_spared) for e in self.entries)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "as_of": self.as_of,
            "view": "auditor" if self.auditor else "citizen",
            "asks": [e.to_dict(auditor=self.auditor) for e in self.entries],
            "trips_spared": self.trips_spared,
        }
        if self.auditor:
            found["embargoed"] = self.embargoed
        return found


def end_of_local_day(day: dt.date) -> dt.datetime:
    """The last second of a local (Beijing) day, in UTC: a report "as of" that day."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC) - UTC_OFFSET


def _aliases(store: Any, resident_id: str) -> set[str]:
    """The resident's number and every number linked to it by published ID changes."""
    from exchange.store import dataset_view

    if store.one("SELECT 1 AS ok FROM publications WHERE dataset = 'id_changes' LIMIT 1") is None:
        return {resident_id}
    found, frontier = {resident_id}, [resident_id]
    while frontier:  # chains of changes: A -> B -> C
        person = frontier.pop()
        rows = store.con.execute(
            f"SELECT old_id, new_id FROM {dataset_view('id_changes')} "
            "WHERE old_id = ? OR new_id = ?",
            [person, person],
        ).fetchall()
        for number in {str(v) for row in rows for v in row} - found:
            found.add(number)
            frontier.append(number)
    return found


def find_entries(home: Home, tags: list[bytes]) -> list[tuple[int, bytes]]:
    """Indexes and bytes of the entries holding any of ``tags`` as a subject tag.

    The store finds the entries whose bytes hold a tag (`ledger.store.entries_containing`;
    a match elsewhere in an entry would need a SHA-256 collision); every candidate is
    then decoded and kept only if the tag is one of its subject tags, and checked
    against its leaf hash.
    """
    from exchange.audit import LedgerUnreadable
    from ledger.entries import decode
    from ledger.merkle import leaf_hash
    from ledger.store import LedgerTampered, entries_containing

    if not tags:
        return []
    con = sqlite3.connect(f"file:{home.ledger_store.absolute()}?mode=ro", uri=True)
    try:
        rows = entries_containing(con, tags)
    except LedgerTampered as problem:
        raise LedgerUnreadable(str(problem)) from None
    finally:
        con.close()
    wanted = set(tags)
    found = []
    for index, data, leaf in rows:
        if leaf_hash(bytes(data)) != bytes(leaf):
            raise LedgerUnreadable(f"entry {index} does not match its leaf hash")
        if wanted & set(decode(bytes(data)).subject_tags):
            found.append((int(index), bytes(data)))
    return found


def citizen_report(
    home: Home,
    resident_id: str,
    *,
    now: dt.datetime | None = None,
    auditor: bool = False,
    store: ExchangeStore | None = None,
) -> CitizenReport:
    """Every ask about ``resident_id`` visible at ``now`` (see the module docstring).

    ``store``: an open exchange store to read ID changes and department names from (the
    serving process's); default: the home's, opened read-only.
    """
    from exchange.catalogue import load_catalogue
    from exchange.facts import FactError, load_fact
    from exchange.ledgerlink import subject_key
    from exchange.policy import load_policy, parse_principal
    from exchange.residentid import problem
    from exchange.store import ExchangeStore, utc
    from ledger.entries import decode, subject_tag, utc_time

    home.require()
    resident_id = resident_id.strip()
    wrong = problem(resident_id)
    if wrong is not None:
        raise InvalidArgument(f"the resident ID is not valid: {wrong}")
    moment = utc(now)
    stamp = utc_time(moment)
    local_today = (moment + UTC_OFFSET).date().isoformat()
    with contextlib.ExitStack() as owned:
        if store is None:
            store = owned.enter_context(ExchangeStore(home.exchange_db, read_only=True))
        numbers = _aliases(store, resident_id)
        names = {r["code"]: r["name"] for r in store.rows("SELECT code, name FROM departments")}
    key = subject_key(home)
    matches = find_entries(home, [subject_tag(key, number) for number in sorted(numbers)])
    policy = load_policy()
    catalogue = load_catalogue()
    shown: list[CitizenEntry] = []
    embargoed = 0
    for index, data in matches:
        entry = decode(data)
        if entry.kind != "ask" or entry.time > stamp:
            continue
        hidden = bool(entry.embargo_until) and local_today < entry.embargo_until
        if hidden:
            embargoed += 1
            if not auditor:
                continue
        try:
            fact_title = load_fact(entry.fact_id, entry.fact_version).title
        except FactError:
            fact_title = "(not a declared fact)"
        spared = (
            [
                c
                for c in catalogue
                if entry.fact_id in c.facts and entry.service_matter in c.service_matters
            ]
            if entry.outcome == "answered"
            else []
        )
        who = parse_principal(entry.principal)
        when = dt.datetime.strptime(entry.time, "%Y-%m-%dT%H:%M:%SZ") + UTC_OFFSET
        shown.append(
            CitizenEntry(
                index=index,
                time=entry.time,
                local_time=when.strftime("%Y-%m-%d %H:%M"),
                department=entry.department,
                department_name=names.get(entry.department, entry.department),
                role=who.role if who else "unknown",
                service_matter=entry.service_matter,
                service_matter_title=policy.power_lists.get(entry.department, {}).get(
                    entry.service_matter, ""
                ),
                fact=f"{entry.fact_id}@{entry.fact_version}",
                fact_title=fact_title,
                case_ref=entry.case_ref,
                outcome=entry.outcome,
                reason=entry.reason,
                certificates=tuple(c.title for c in spared),
                visits_spared=tuple(names.get(c.issuer, c.issuer) for c in spared),
                embargo_until=entry.embargo_until if auditor else "",
                principal=entry.principal if auditor else "",
            )
        )
    shown.sort(key=lambda e: (e.time, e.index))  # oldest first (asks can be back-dated)
    return CitizenReport(stamp, auditor, tuple(shown), embargoed if auditor else 0)
