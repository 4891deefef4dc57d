"""E-supervision (电子监察): rules over the ledger that raise yellow cards and red cards.

The reform texts ask for full-process tracking with early warning on five kinds of
anomaly — time, process, content, discretion and risk control — each raising a
yellow-card warning (someone should look) or a red-card alarm (someone must act).
Here every rule is one SQL statement over the ledger decoded into columns
(`exchange.audit.read_ledger`), run by DuckDB; thresholds live in
`schemas/supervision.json` (contracts are files). The rules:

====================  ===========  ===============================================
rule                  kind         fires on
====================  ===========  ===============================================
off_hours             time         asks outside office hours (Beijing time; weekdays,
                                   statutory holidays and make-up workdays from the
                                   config), per principal and local day; red at night
                                   or from ``red_min_acts`` acts in the day
burst                 time         more than ``yellow_over`` acts by one principal
                                   within ``window_seconds`` (red above ``red_over``)
case_ref_malformed    process      asks whose case reference was missing or malformed
                                   (the ledger records those as empty) or is dated in
                                   the future or more than ``max_age_years`` ago
case_ref_reused       process      one case reference used by different principals;
                                   red when they belong to different departments
case_ref_unrelated_   process      single asks under one case reference about people
subjects                           of more than ``max_families`` unrelated families
repeated_refusals     process      a principal refused ``yellow_min`` times in a day
subject_many_         content      one subject asked about by ``yellow_min``
departments                        departments within ``window_days``
volume_outlier        content      a principal's acts in a day above ``factor`` × the
                                   median of their department's principals that day
unusual_service_      discretion   a service-matter code the principal never used
matter                             before, or one rare for the department
self_or_relative      risk         a caseworker asking about themselves, a relative or
                                   a member of their household
====================  ===========  ===============================================

An *act* is one decision by one caseworker: a single ask, or a whole batch, whose
entries are appended in one transaction and so sit next to each other in the ledger,
sharing principal and time (the policy's rate limiter counts a batch as one ask too).
Time and volume rules count acts, so a pension office's annual proof-of-life batch is
one act, not a million.

**Speed.** The rules read integer codes, not text: the low-cardinality text columns are
dictionary-encoded with Arrow, case references are grouped by a 64-bit hash computed
while decoding (a candidate "reused" reference is confirmed on its text), acts are runs
found with numpy, and DuckDB groups, sorts and joins integers. The target is an alert
scan of 10^7 entries in a minute (`tests/bench/bench_audit.py`).

**Families.** "Unrelated subjects" needs to know who belongs together; the exchange
knows kinship. A family is a household of the published household register, joined
with the households of each person's registered parents (births), so an adult child
who moved out still belongs with the parents. Residents are matched to ledger subject
tags by computing the tags of every registered ID (and every earlier ID) with the
home's subject key, in memory.

**The staff register** maps principals to the resident IDs of the staff behind them,
so the risk rule can compare the subjects of an ask with the caseworker's own tags:
their own ID (and earlier IDs), their household, spouse or former spouse, parents,
children and siblings (births, marriages, the household register). Resident IDs are
personal data: the register lives in the home (``staff.json``, 0600), never in
`schemas/`, and never reaches an alert. Alerts carry the rule, kind, card, ledger
indexes, principals, departments and a message built from counts, dates, fixed words
and codes the ledger itself holds (service matters, case references, refusal reasons).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from exchange.audit import KINDS as KIND_CODES
from exchange.audit import OUTCOMES as OUTCOME_CODES
from exchange.audit import LedgerFrame, case_key, read_home_ledger, tag_prefix
from exchange.errors import ExchangeError, InvalidArgument
from exchange.home import Home
from exchange.paths import schemas_dir

if TYPE_CHECKING:
    from exchange.store import ExchangeStore

__all__ = [
    "CARDS",
    "KINDS",
    "RULES",
    "Alert",
    "SupervisionConfig",
    "SupervisionError",
    "add_staff",
    "alerts",
    "families",
    "load_config",
    "load_staff",
    "remove_staff",
    "scan",
    "staff_path",
    "staff_tags",
]

KINDS: Final = ("time", "process", "content", "discretion", "risk")
EMPTY_CASE: Final = case_key("")  # a missing or malformed case reference, as recorded
CARDS: Final = ("yellow", "red")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_RELATION_RANK: Final = {
    "self": 0,
    "spouse": 1,
    "parent": 1,
    "child": 1,
    "sibling": 2,
    "household": 3,
}
_RELATION_WORDS: Final = {
    "self": "themselves",
    "spouse": "their spouse or former spouse",
    "parent": "a parent",
    "child": "a child",
    "sibling": "a sibling",
    "household": "a member of their household",
}


class SupervisionError(ExchangeError):
    """The supervision config or the staff register is malformed."""


# --- alerts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One yellow card or red card. Carries no personal data: see the module docstring."""

    rule: str
    kind: str  # time / process / content / discretion / risk
    card: str  # yellow / red
    indexes: tuple[int, ...]  # the ledger entries involved, ascending
    principals: tuple[str, ...]
    departments: tuple[str, ...]
    first_time: str  # UTC, YYYY-MM-DDTHH:MM:SSZ
    last_time: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "card": self.card,
            "indexes": list(self.indexes),
            "principals": list(self.principals),
            "departments": list(self.departments),
            "first_time": self.first_time,
            "last_time": self.last_time,
            "message": self.message,
        }


def _utc(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the config ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupervisionConfig:
    """The rules' thresholds, from `schemas/supervision.json`."""

    utc_offset_hours: int
    rules: Mapping[str, Mapping[str, Any]]
    path: Path

    @property
    def offset(self) -> int:
        """The local time's offset from UTC, in seconds."""
        return self.utc_offset_hours * 3600

    def local_date(self, seconds: int) -> dt.date:
        return dt.datetime.fromtimestamp(int(seconds) + self.offset, dt.UTC).date()

    def local_time(self, seconds: int) -> str:
        return dt.datetime.fromtimestamp(int(seconds) + self.offset, dt.UTC).strftime("%H:%M")


# Each rule's parameters and their types; a config must give them all.
_PARAMETERS: Final[dict[str, dict[str, type | tuple[type, ...]]]] = {
    "off_hours": {
        "workdays": list,
        "start": str,
        "end": str,
        "holidays": list,
        "extra_workdays": list,
        "night_start": str,
        "night_end": str,
        "red_min_acts": int,
    },
    "burst": {"window_seconds": int, "yellow_over": int, "red_over": int},
    "case_ref_malformed": {"max_age_years": int, "red_min": int},
    "case_ref_reused": {"red_when_departments_differ": bool},
    "case_ref_unrelated_subjects": {"max_families": int, "red_families": int},
    "repeated_refusals": {"yellow_min": int, "red_min": int},
    "subject_many_departments": {"window_days": int, "yellow_min": int, "red_min": int},
    "volume_outlier": {
        "factor": (int, float),
        "red_factor": (int, float),
        "min_acts": int,
        "min_peers": int,
    },
    "unusual_service_matter": {
        "min_history": int,
        "rare_share": (int, float),
        "min_department_acts": int,
    },
    "self_or_relative": {"cards": dict},
}


def parse_config(document: object, path: Path) -> SupervisionConfig:
    """Check the supervision config's shape; `SupervisionError` naming the file and key."""
    if not isinstance(document, dict):
        raise SupervisionError(f"{path}: the supervision config is a JSON object")
    offset = document.get("utc_offset_hours")
    if type(offset) is not int or not -12 <= offset <= 14:
        raise SupervisionError(f"{path}: utc_offset_hours must be an integer hour offset")
    raw = document.get("rules")
    if not isinstance(raw, dict):
        raise SupervisionError(f"{path}: 'rules' must be an object of rule name -> settings")
    unknown = sorted(set(raw) - set(RULES))
    if unknown:
        raise SupervisionError(f"{path}: unknown rule(s) {', '.join(unknown)}")
    rules: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        where = f"{path}: rules.{name}"
        if not isinstance(settings, dict):
            raise SupervisionError(f"{where} must be an object")
        if settings.get("kind") != RULES[name].kind:
            raise SupervisionError(f"{where}.kind must be {RULES[name].kind!r}")
        if settings.get("enabled", True) is False:
            continue
        for key, kind in _PARAMETERS[name].items():
            value = settings.get(key)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise SupervisionError(f"{where}.{key} is missing or of the wrong type")
        rules[name] = dict(settings)
    if "off_hours" in rules:
        hours = rules["off_hours"]
        for key in ("start", "end", "night_start", "night_end"):
            if not _HHMM.fullmatch(hours[key]):
                raise SupervisionError(f"{path}: rules.off_hours.{key} must be HH:MM")
        for key in ("holidays", "extra_workdays"):
            for day in hours[key]:
                try:
                    dt.date.fromisoformat(day)
                except (TypeError, ValueError):
                    raise SupervisionError(
                        f"{path}: rules.off_hours.{key} holds {day!r}, not YYYY-MM-DD"
                    ) from None
        if not all(type(d) is int and 1 <= d <= 7 for d in hours["workdays"]):
            raise SupervisionError(f"{path}: rules.off_hours.workdays are ISO weekdays 1-7")
    if "self_or_relative" in rules:
        cards = rules["self_or_relative"]["cards"]
        if set(cards) != set(_RELATION_RANK) or not set(cards.values()) <= set(CARDS):
            raise SupervisionError(
                f"{path}: rules.self_or_relative.cards maps each of "
                f"{', '.join(_RELATION_RANK)} to yellow or red"
            )
    return SupervisionConfig(offset, rules, path)


@cache
def _load(path: Path) -> SupervisionConfig:
    try:
        document = json.loads(path.read_text("utf-8"))
    except OSError as problem:
        raise SupervisionError(f"cannot read {path}: {problem.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise SupervisionError(f"{path} is not UTF-8 JSON: {problem}") from None
    return parse_config(document, path)


def load_config(path: Path | None = None) -> SupervisionConfig:
    """The supervision config (default: `schemas/supervision.json`)."""
    return _load(Path(path) if path else schemas_dir() / "supervision.json")


# --- the rules ------------------------------------------------------------------------------
#
# The rules read integer codes, not text: `_prepare` dictionary-encodes the low-cardinality
# text columns (department, principal, service matter, reason) and the case reference
# with Arrow, so DuckDB groups, sorts and joins integers — several times faster than
# strings at 10^7 rows. Codes become text again only in the alerts (`_Names`).


@dataclass(frozen=True)
class _Rule:
    kind: str
    run: Callable[[Any, SupervisionConfig, Mapping[str, Any], _Names], list[Alert]]


RULES: dict[str, _Rule] = {}


def _rule(
    name: str, kind: str
) -> Callable[[Callable[..., list[Alert]]], Callable[..., list[Alert]]]:
    def register(function: Callable[..., list[Alert]]) -> Callable[..., list[Alert]]:
        RULES[name] = _Rule(kind, function)
        return function

    return register


@dataclass(frozen=True)
class _Names:
    """The dictionaries behind the codes (code -> text), and the case references by entry."""

    department: pa.Array
    principal: pa.Array
    service_matter: pa.Array
    reason: pa.Array
    cases: pa.ChunkedArray  # the frame's case_ref column
    first: int  # the frame's first ledger index

    def text(self, column: str, code: int) -> str:
        return str(getattr(self, column)[int(code)].as_py())

    def texts(self, column: str, codes: Iterable[int]) -> tuple[str, ...]:
        return tuple(sorted({self.text(column, c) for c in codes}))

    def case_refs(self, indexes: Iterable[int]) -> list[str]:
        """The case references of ledger entries ``indexes``, in that order."""
        return [str(self.cases[int(i) - self.first].as_py()) for i in indexes]


def _seconds(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 3600 + int(minutes) * 60


def _day_number(day: str) -> int:
    return (dt.date.fromisoformat(day) - dt.date(1970, 1, 1)).days


def _alert(name: str, card: str, row: Mapping[str, Any], message: str, names: _Names) -> Alert:
    return Alert(
        rule=name,
        kind=RULES[name].kind,
        card=card,
        indexes=tuple(sorted(int(i) for i in row["idxs"])),
        principals=names.texts("principal", row["pids"]),
        departments=names.texts("department", row["dids"]),
        first_time=_utc(row["t_first"]),
        last_time=_utc(row["t_last"]),
        message=message,
    )


def _rows(con: Any, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, dict(params or {}))
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Every alert row carries these: the entries, principals and departments, and its span.
_CARRY = (
    "list(DISTINCT {a}.idx) AS idxs, list(DISTINCT {a}.pid) AS pids, "
    "list(DISTINCT {a}.did) AS dids, min({a}.t) AS t_first, max({a}.t) AS t_last"
)


def _carry(alias: str = "a") -> str:
    return _CARRY.format(a=alias)


@_rule("off_hours", "time")
def _off_hours(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Time: asks outside office hours, one alert per principal and local day.

    Office hours are ``start``-``end`` local time on ISO ``workdays``, except
    ``holidays``, plus ``extra_workdays`` (weekends worked to make up for a bridged
    holiday). Red when any of the day's asks falls in the night (``night_start`` to
    ``night_end``) or the principal made ``red_min_acts`` acts outside hours that day.
    """
    for table in ("holidays", "extra_workdays"):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT unnest($d::INTEGER[]) AS day",
            {"d": [_day_number(d) for d in p[table]]},
        )
    rows = _rows(
        con,
        f"""
        WITH a AS (
            SELECT *, lt % 86400 AS sod, ((lday + 3) % 7) + 1 AS dow FROM asks
        ), off AS (
            SELECT * FROM a
            WHERE NOT (
                ((dow IN (SELECT unnest($workdays::INTEGER[]))
                  AND lday NOT IN (SELECT day FROM holidays))
                 OR lday IN (SELECT day FROM extra_workdays))
                AND sod >= $start AND sod < $end)
        )
        SELECT pid, lday, count(DISTINCT t) AS acts,
               bool_or(CASE WHEN $ns > $ne THEN sod >= $ns OR sod < $ne
                            ELSE sod >= $ns AND sod < $ne END) AS night, {_carry()}
        FROM off a GROUP BY pid, lday ORDER BY min(idx)
        """,
        {
            "workdays": p["workdays"],
            "start": _seconds(p["start"]),
            "end": _seconds(p["end"]),
            "ns": _seconds(p["night_start"]),
            "ne": _seconds(p["night_end"]),
        },
    )
    alerts = []
    for row in rows:
        red = row["night"] or row["acts"] >= p["red_min_acts"]
        day = config.local_date(row["t_first"])
        span = f"{config.local_time(row['t_first'])}-{config.local_time(row['t_last'])}"
        night = ", at night" if row["night"] else ""
        alerts.append(
            _alert(
                "off_hours",
                "red" if red else "yellow",
                row,
                f"{len(row['idxs'])} ask(s) outside office hours on {day} "
                f"({span} local time{night})",
                names,
            )
        )
    return alerts


@_rule("burst", "time")
def _burst(con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names) -> list[Alert]:
    """Time: more than ``yellow_over`` acts by one principal within ``window_seconds``.

    Windows end at each act; overlapping hot windows of one principal form one alert,
    which lists every entry from the first hot window's start to the last one's end.
    Red when a window holds more than ``red_over`` acts.

    Only buckets that can hold a burst are windowed: a window of ``window_seconds``
    spans at most two buckets of that width, so one of them holds more than half the
    threshold; the acts of such buckets and their neighbours give every hot window's
    exact count.
    """
    rows = _rows(
        con,
        f"""
        WITH buckets AS (
            SELECT pid, t // $window AS bucket FROM acts GROUP BY pid, bucket
            HAVING count(*) * 2 > $over
        ), near AS (
            SELECT DISTINCT pid, bucket + k AS bucket
            FROM buckets, (VALUES (-1), (0), (1)) AS shift(k)
        ), w AS (
            SELECT c.pid, c.t, count(*) OVER (
                PARTITION BY c.pid ORDER BY c.t
                RANGE BETWEEN $window PRECEDING AND CURRENT ROW) AS c
            FROM acts c JOIN near n ON n.pid = c.pid AND n.bucket = c.t // $window
        ), hot AS (
            SELECT pid, t, c, lag(t) OVER (PARTITION BY pid ORDER BY t) AS prev
            FROM w WHERE c > $over
        ), runs AS (
            SELECT *, sum(CASE WHEN prev IS NULL OR t - prev > $window THEN 1 ELSE 0 END)
                      OVER (PARTITION BY pid ORDER BY t) AS run
            FROM hot
        ), spans AS (
            SELECT pid, run, min(t) - $window AS t0, max(t) AS t1, max(c) AS peak
            FROM runs GROUP BY pid, run
        )
        SELECT s.pid, s.run, any_value(s.peak) AS peak, count(DISTINCT a.t) AS acts, {_carry()}
        FROM spans s JOIN asks a ON a.pid = s.pid AND a.t BETWEEN s.t0 AND s.t1
        GROUP BY s.pid, s.run ORDER BY min(a.idx)
        """,
        {"window": p["window_seconds"], "over": p["yellow_over"]},
    )
    return [
        _alert(
            "burst",
            "red" if row["peak"] > p["red_over"] else "yellow",
            row,
            f"up to {row['peak']} acts within {p['window_seconds']} s "
            f"({row['acts']} acts in the burst, {len(row['idxs'])} entries)",
            names,
        )
        for row in rows
    ]


@_rule("case_ref_malformed", "process")
def _case_ref_malformed(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Process: asks whose case reference was missing or malformed, or implausibly dated.

    The exchange records a case reference only when it matches the policy's format, so
    an ask that came with none or a malformed one is in the ledger with an empty one.
    A reference of the policy's ``AA-YYYY-NNNN`` form whose year is after the ask's
    local year, or more than ``max_age_years`` before it, is flagged too. One alert per
    principal and local day; red from ``red_min`` such acts.
    """
    rows = _rows(
        con,
        f"""
        WITH bad AS (
            SELECT *, cid = $empty AS missing FROM asks
            WHERE cid = $empty OR case_year > ask_year OR case_year < ask_year - $age
        )
        SELECT pid, lday, count(DISTINCT t) AS acts,
               count(DISTINCT t) FILTER (WHERE missing) AS absent, {_carry()}
        FROM bad a GROUP BY pid, lday ORDER BY min(idx)
        """,
        {"age": p["max_age_years"], "empty": EMPTY_CASE},
    )
    alerts = []
    for row in rows:
        dated = row["acts"] - row["absent"]
        parts = []
        if row["absent"]:
            parts.append(f"{row['absent']} without a well-formed case reference")
        if dated > 0:
            parts.append(f"{dated} with a case reference dated in the future or too long ago")
        alerts.append(
            _alert(
                "case_ref_malformed",
                "red" if row["acts"] >= p["red_min"] else "yellow",
                row,
                f"on {config.local_date(row['t_first'])}: {'; '.join(parts)}",
                names,
            )
        )
    return alerts


@_rule("case_ref_reused", "process")
def _case_ref_reused(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Process: one case reference used by more than one principal.

    A case belongs to one department's caseworker; a colleague may take it over (a
    yellow card, to review), but a reference shared across departments is red when
    ``red_when_departments_differ``.
    """
    rows = _rows(
        con,
        """
        WITH shared AS (
            SELECT cid FROM asks WHERE cid <> $empty GROUP BY cid HAVING min(pid) <> max(pid)
        )
        SELECT a.cid, list(a.idx ORDER BY a.idx) AS each_idx,
               list(a.pid ORDER BY a.idx) AS each_pid,
               list(a.did ORDER BY a.idx) AS each_did, list(a.t ORDER BY a.idx) AS each_t
        FROM asks a JOIN shared USING (cid) GROUP BY a.cid ORDER BY min(a.idx)
        """,
        {"empty": EMPTY_CASE},
    )
    alerts = []
    for row in rows:
        # The hash found the candidates; the text decides (two references could share one).
        groups: dict[str, list[int]] = {}
        for n, case in enumerate(names.case_refs(row["each_idx"])):
            groups.setdefault(case, []).append(n)
        for case, members in groups.items():
            exact = {
                "idxs": [row["each_idx"][n] for n in members],
                "pids": {row["each_pid"][n] for n in members},
                "dids": {row["each_did"][n] for n in members},
                "t_first": min(row["each_t"][n] for n in members),
                "t_last": max(row["each_t"][n] for n in members),
            }
            if len(exact["pids"]) < 2:
                continue
            across = len(exact["dids"]) > 1
            alerts.append(
                _alert(
                    "case_ref_reused",
                    "red" if across and p["red_when_departments_differ"] else "yellow",
                    exact,
                    f"case reference {case} used by {len(exact['pids'])} principals"
                    + (f" in {len(exact['dids'])} departments" if across else ""),
                    names,
                )
            )
    return alerts


@_rule("case_ref_unrelated_subjects", "process")
def _case_ref_unrelated(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Process: single asks under one case reference about too many unrelated families.

    A case concerns a person and, at most, their family (a kinship check, an
    inheritance). Batches are left out: a caseload is many people by design. Subjects
    the register does not know count as a family each. Red from ``red_families``.
    """
    rows = _rows(
        con,
        f"""
        WITH single AS (
            SELECT first_idx AS idx, cid, subjects FROM acts WHERE n = 1 AND cid <> $empty
        ), busy AS (
            SELECT cid FROM single GROUP BY cid HAVING sum(subjects) > $max
        ), s AS (
            SELECT g.idx, g.cid, coalesce(f.family, -1 - sub.tag) AS family
            FROM single g JOIN busy USING (cid) JOIN subjects sub USING (idx)
            LEFT JOIN families f ON f.tag = sub.tag
        ), many AS (
            SELECT cid, count(DISTINCT family) AS families FROM s
            GROUP BY cid HAVING count(DISTINCT family) > $max
        )
        SELECT m.cid, any_value(m.families) AS families, {_carry()}
        FROM many m JOIN s USING (cid) JOIN asks a ON a.idx = s.idx
        GROUP BY m.cid ORDER BY min(a.idx)
        """,
        {"max": p["max_families"], "empty": EMPTY_CASE},
    )
    return [
        _alert(
            "case_ref_unrelated_subjects",
            "red" if row["families"] >= p["red_families"] else "yellow",
            row,
            f"case reference {names.case_refs(row['idxs'][:1])[0]}: single asks about people "
            f"of {row['families']} unrelated families",
            names,
        )
        for row in rows
    ]


@_rule("repeated_refusals", "process")
def _repeated_refusals(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Process: a principal refused ``yellow_min`` times (acts) in one local day.

    Refusals are policy's "no" — no grant, a service matter off the power list, no
    case, the rate limit. Many in a day is someone probing for what they may see.
    The message names the most frequent reason (fixed texts, safe to show).
    """
    rows = _rows(
        con,
        f"""
        SELECT pid, lday, count(DISTINCT t) AS acts, mode(rid) AS rid, {_carry()}
        FROM asks a WHERE outcome = 2 GROUP BY pid, lday
        HAVING count(DISTINCT t) >= $min ORDER BY min(idx)
        """,
        {"min": p["yellow_min"]},
    )
    return [
        _alert(
            "repeated_refusals",
            "red" if row["acts"] >= p["red_min"] else "yellow",
            row,
            f"{row['acts']} refused asks on {config.local_date(row['t_first'])} "
            f"(most often: {names.text('reason', row['rid'])})",
            names,
        )
        for row in rows
    ]


@_rule("subject_many_departments", "content")
def _subject_many_departments(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Content: one subject asked about by ``yellow_min`` departments within ``window_days``.

    A death rightly reaches three or four departments in a week (pension, housing,
    registration); more, faster, is a person being looked into from every side. The
    alert lists the entries about that subject in the hot span; it never shows the tag.
    Only (subject, window-wide bucket) pairs that can hold such a span are windowed, as
    in `burst`: a span covers at most two buckets, one of them with half the departments
    (the cheap test: half the asks, and two departments or more).
    """
    rows = _rows(
        con,
        f"""
        WITH buckets AS (
            SELECT tag, t // $window AS bucket FROM subjects GROUP BY tag, bucket
            HAVING count(*) * 2 >= $min AND ($min <= 2 OR min(did) <> max(did))
        ), near AS (
            SELECT DISTINCT tag, bucket + k AS bucket
            FROM buckets, (VALUES (-1), (0), (1)) AS shift(k)
        ), w AS (
            SELECT s.*, count(DISTINCT s.did) OVER (
                PARTITION BY s.tag ORDER BY s.t
                RANGE BETWEEN $window PRECEDING AND CURRENT ROW) AS d
            FROM subjects s JOIN near n ON n.tag = s.tag AND n.bucket = s.t // $window
        ), hot AS (
            SELECT tag, t, d, lag(t) OVER (PARTITION BY tag ORDER BY t) AS prev
            FROM w WHERE d >= $min
        ), runs AS (
            SELECT *, sum(CASE WHEN prev IS NULL OR t - prev > $window THEN 1 ELSE 0 END)
                      OVER (PARTITION BY tag ORDER BY t) AS run
            FROM hot
        ), spans AS (
            SELECT tag, run, min(t) - $window AS t0, max(t) AS t1, max(d) AS peak
            FROM runs GROUP BY tag, run
        )
        SELECT any_value(s.peak) AS peak, {_carry("w")}
        FROM spans s JOIN w ON w.tag = s.tag AND w.t BETWEEN s.t0 AND s.t1
        GROUP BY s.tag, s.run ORDER BY min(w.idx)
        """,
        {"min": p["yellow_min"], "window": p["window_days"] * 86400},
    )
    return [
        _alert(
            "subject_many_departments",
            "red" if row["peak"] >= p["red_min"] else "yellow",
            row,
            f"one subject asked about by {row['peak']} departments within "
            f"{p['window_days']} days ({len(row['idxs'])} asks)",
            names,
        )
        for row in rows
    ]


@_rule("volume_outlier", "content")
def _volume_outlier(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Content: a caseworker far above their peers' volume on one local day.

    Acts per principal and day are compared with the median of the department's
    principals who asked that day; the rule needs ``min_peers`` of them and at least
    ``min_acts`` acts, and fires above ``factor`` × the median (red above
    ``red_factor`` ×).
    """
    rows = _rows(
        con,
        f"""
        WITH v AS (
            SELECT did, pid, lday, count(*) AS acts FROM acts GROUP BY did, pid, lday
        ), m AS (
            SELECT did, lday, median(acts) AS med, count(*) AS peers FROM v GROUP BY did, lday
        ), out AS (
            SELECT v.*, m.med FROM v JOIN m USING (did, lday)
            WHERE m.peers >= $peers AND v.acts >= $min_acts AND v.acts > $factor * m.med
        )
        SELECT o.pid, o.lday, any_value(o.acts) AS acts, any_value(o.med) AS med, {_carry()}
        FROM out o JOIN asks a ON a.pid = o.pid AND a.lday = o.lday
        GROUP BY o.pid, o.lday ORDER BY min(a.idx)
        """,
        {"peers": p["min_peers"], "min_acts": p["min_acts"], "factor": float(p["factor"])},
    )
    return [
        _alert(
            "volume_outlier",
            "red" if row["acts"] > float(p["red_factor"]) * float(row["med"]) else "yellow",
            row,
            f"{row['acts']} acts on {config.local_date(row['t_first'])}, "
            f"{row['acts'] / float(row['med']):.1f} x the department's median of {row['med']:g}",
            names,
        )
        for row in rows
    ]


@_rule("unusual_service_matter", "discretion")
def _unusual_service_matter(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Discretion: a service-matter code unusual for the principal or the department.

    The service matter is the caseworker's stated legal ground (power list). Two signs
    of stretching it: a code the principal never used before, once they have
    ``min_history`` acts behind them (a new caseworker's first weeks are all "new");
    and a code rare for the department — below ``rare_share`` of its acts, once it has
    ``min_department_acts``. Only answered asks count (a refusal is the process rules'
    business). One alert per principal and code, listing its first use when new and
    every use when rare; red when both signs hold.
    """
    rows = _rows(
        con,
        f"""
        WITH a AS (
            SELECT *, row_number() OVER (PARTITION BY pid ORDER BY t, first_idx) - 1 AS history
            FROM acts WHERE answered > 0 AND sid <> $empty
        ), first AS (
            SELECT pid, sid, any_value(did) AS did, min(history) AS history, min(t) AS t_new
            FROM a GROUP BY pid, sid
        ), share AS (
            SELECT did, sid, count(*) AS n, sum(count(*)) OVER (PARTITION BY did) AS total
            FROM a GROUP BY did, sid
        ), flag AS (
            SELECT f.pid, f.sid, f.t_new, f.history >= $history AS new_code,
                   s.total >= $dept_min AND s.n < $share * s.total AS rare,
                   s.n AS code_acts, s.total AS dept_acts
            FROM first f JOIN share s USING (did, sid)
        )
        SELECT f.pid, f.sid, any_value(f.new_code) AS new_code, any_value(f.rare) AS rare,
               any_value(f.code_acts) AS code_acts, any_value(f.dept_acts) AS dept_acts, {_carry()}
        FROM flag f JOIN asks a ON a.pid = f.pid AND a.sid = f.sid AND a.outcome = 1
         AND (f.rare OR a.t = f.t_new)
        WHERE f.new_code OR f.rare
        GROUP BY f.pid, f.sid ORDER BY min(a.idx)
        """,
        {
            "history": p["min_history"],
            "dept_min": p["min_department_acts"],
            "share": float(p["rare_share"]),
            "empty": _code(names.service_matter, ""),
        },
    )
    alerts = []
    for row in rows:
        signs = []
        if row["new_code"]:
            signs.append("a code the principal had never used")
        if row["rare"]:
            signs.append(f"rare for the department ({row['code_acts']} of {row['dept_acts']} acts)")
        matter = names.text("service_matter", row["sid"])
        alerts.append(
            _alert(
                "unusual_service_matter",
                "red" if row["new_code"] and row["rare"] else "yellow",
                row,
                f"service matter {matter}: {' and '.join(signs)}",
                names,
            )
        )
    return alerts


@_rule("self_or_relative", "risk")
def _self_or_relative(
    con: Any, config: SupervisionConfig, p: Mapping[str, Any], names: _Names
) -> list[Alert]:
    """Risk control: a caseworker asking about themselves, a relative or their household.

    The staff register maps a principal to the resident ID of the person behind it;
    `staff_tags` turns that person, their household and relatives into subject tags.
    One alert per principal; its card is the strongest of the relations involved
    (``cards``: self, spouse, parent, child and sibling red, other household members
    yellow, by default).
    """
    rows = _rows(
        con,
        f"""
        WITH hit AS (
            SELECT s.idx, s.pid, s.did, s.t, st.relation
            FROM subjects s JOIN staff st ON st.tag = s.tag AND st.pid = s.pid
        )
        SELECT pid, list(DISTINCT relation) AS relations, {_carry("hit")}
        FROM hit GROUP BY pid ORDER BY min(idx)
        """,
    )
    alerts = []
    for row in rows:
        relations = sorted(set(row["relations"]), key=lambda r: (_RELATION_RANK[r], r))
        red = any(p["cards"][r] == "red" for r in relations)
        words = " and ".join(_RELATION_WORDS[r] for r in relations)
        alerts.append(
            _alert(
                "self_or_relative",
                "red" if red else "yellow",
                row,
                f"a caseworker asked about {words} ({len(row['idxs'])} asks)",
                names,
            )
        )
    return alerts


# --- the scan -------------------------------------------------------------------------------

_STAFF_SCHEMA: Final = pa.schema(
    [("principal", pa.string()), ("tag", pa.int64()), ("relation", pa.string())]
)
_FAMILY_SCHEMA: Final = pa.schema([("tag", pa.int64()), ("family", pa.int64())])


def scan(
    frame: LedgerFrame,
    config: SupervisionConfig | None = None,
    *,
    staff: pa.Table | None = None,
    families: pa.Table | None = None,
    rules: Iterable[str] | None = None,
) -> list[Alert]:
    """Run the rules over a decoded ledger; the alerts, in ledger order.

    ``staff`` (`staff_tags`: principal, tag, relation) feeds the risk rule and
    ``families`` (`families`: tag, family) the unrelated-subjects rule; without them
    those rules find nothing and every subject is its own family. ``rules`` limits the
    run to some rules (default: every rule the config enables).
    """
    import duckdb

    config = config or load_config()
    chosen = [r for r in (rules or RULES) if r in config.rules]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # stdout may be JSON
    try:
        names = _prepare(con, frame, config, staff, families)
        found: list[Alert] = []
        for name in chosen:
            found += RULES[name].run(con, config, config.rules[name], names)
    finally:
        con.close()
    return sorted(found, key=lambda a: (a.indexes[:1], a.rule))


def _code(dictionary: pa.Array, text: str) -> int:
    """The code of ``text`` in a dictionary; -1 (matching nothing) when absent."""
    import pyarrow.compute as pc

    found = pc.index(dictionary, text).as_py()
    return -1 if found is None else int(found)


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A text column's codes (int32, every entry) and its one dictionary."""
    import pyarrow.compute as pc

    if column.nbytes >= 2**31 - 1:
        column = column.cast(pa.large_string())
    whole = column.combine_chunks() if column.num_chunks else pa.array([], pa.string())
    encoded = pc.dictionary_encode(whole)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32), encoded.dictionary


def _category(column: pa.ChunkedArray, values: tuple[str, ...]) -> np.ndarray:
    """A text (or dictionary) column as the positions of its values in ``values``."""
    import pyarrow.compute as pc

    value_set = pa.array(values)
    parts = []
    for chunk in column.chunks:
        if isinstance(chunk, pa.DictionaryArray):  # map the small dictionary, then index
            lookup = pc.fill_null(pc.index_in(chunk.dictionary, value_set=value_set), -1)
            codes = chunk.indices.to_numpy(zero_copy_only=False)
            parts.append(lookup.to_numpy(zero_copy_only=False).astype(np.int8)[codes])
        else:
            found = pc.fill_null(pc.index_in(chunk, value_set=value_set), -1)
            parts.append(found.to_numpy(zero_copy_only=False).astype(np.int8))
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def _numpy(column: pa.ChunkedArray, dtype: Any) -> np.ndarray:
    """A column (or a dictionary column's codes) as one numpy array."""
    parts = [
        (c.indices if isinstance(c, pa.DictionaryArray) else c).to_numpy(zero_copy_only=False)
        for c in column.chunks
    ]
    if not parts:
        return np.zeros(0, dtype)
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(dtype, copy=False)


def _prepare(
    con: Any,
    frame: LedgerFrame,
    config: SupervisionConfig,
    staff: pa.Table | None,
    families: pa.Table | None,
) -> _Names:
    """Register the asks (as integer codes), the acts they make up, subjects, staff, families.

    ``asks``: idx, t, lt (local seconds), lday (local day number), did, pid, sid, rid
    (codes of department, principal, service matter, reason), cid (the case
    reference's 64-bit hash), outcome (1 answered, 2 refused, 3 error), ask_year and
    case_year (the year in an ``AA-YYYY-NNNN`` case reference, null for another shape).
    ``acts``: one row per act (`_acts`).
    """
    entries = frame.entries
    mask = _category(entries.column("kind"), KIND_CODES) == 1  # asks
    every: dict[str, np.ndarray] = {}  # codes of every entry, asks or not
    dictionaries: dict[str, pa.Array] = {}
    for column, short in (("department", "did"), ("principal", "pid"),
                          ("service_matter", "sid"), ("reason", "rid")):  # fmt: skip
        every[short], dictionaries[column] = _encode(entries.column(column))
    codes = {short: values[mask] for short, values in every.items()}
    t = _numpy(entries.column("t"), np.int64)[mask]
    lt = t + config.offset
    columns: dict[str, np.ndarray] = {
        "idx": _numpy(entries.column("idx"), np.int64)[mask],
        "t": t,
        "lt": lt,
        "lday": lt // 86400,
        **codes,
        "cid": _numpy(entries.column("case_key"), np.int64)[mask],
        "outcome": _category(entries.column("outcome"), OUTCOME_CODES)[mask],
        "subjects": _numpy(entries.column("n_subjects"), np.int32)[mask],
        "ask_year": _years(lt // 86400),
    }
    case_year = entries.column("case_year").combine_chunks().filter(pa.array(mask))
    asks = pa.table({name: pa.array(values) for name, values in columns.items()})
    con.register("asks", asks.append_column("case_year", case_year))
    con.register("acts", _acts(columns))
    # The subjects with their entry's department and principal (entries are gap-free
    # from the frame's first index, so an index is a position).
    first = int(entries.column("idx")[0].as_py()) if entries.num_rows else 0
    at = frame.subjects.column("idx").to_numpy() - first
    con.register(
        "subjects",
        frame.subjects.append_column("did", pa.array(every["did"][at])).append_column(
            "pid", pa.array(every["pid"][at])
        ),
    )
    principal_code = {text: code for code, text in enumerate(dictionaries["principal"].to_pylist())}
    staff = staff if staff is not None else _STAFF_SCHEMA.empty_table()
    known = [principal_code.get(p, -1) for p in staff.column("principal").to_pylist()]
    con.register(
        "staff",
        pa.table(
            {
                "pid": pa.array(known, pa.int32()),
                "tag": staff.column("tag"),
                "relation": staff.column("relation"),
            }
        ),
    )
    con.register("families", families if families is not None else _FAMILY_SCHEMA.empty_table())
    return _Names(
        department=dictionaries["department"],
        principal=dictionaries["principal"],
        service_matter=dictionaries["service_matter"],
        reason=dictionaries["reason"],
        cases=entries.column("case_ref"),
        first=first,
    )


def _years(days: np.ndarray) -> np.ndarray:
    """The calendar year of each day number (days since 1970-01-01), by a small table."""
    if not len(days):
        return np.zeros(0, np.int32)
    low, high = int(days.min()), int(days.max())
    if high - low > 100_000:  # centuries apart: let numpy's calendar do it
        years: np.ndarray = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int32)
        return years + 1970
    epoch = dt.date(1970, 1, 1)
    table = np.array([(epoch + dt.timedelta(days=d)).year for d in range(low, high + 1)], np.int32)
    result: np.ndarray = table[days - low]
    return result


def _acts(asks: Mapping[str, np.ndarray]) -> pa.Table:
    """The acts: runs of consecutive asks (in ledger order) by one principal at one second.

    A batch is appended in one transaction, so its entries are consecutive; a single ask
    is a run of one. Computed with numpy over the runs, not by grouping.
    """
    n = len(asks["idx"])
    if n:
        change = (np.diff(asks["pid"]) != 0) | (np.diff(asks["t"]) != 0)
        starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    else:
        starts = np.zeros(0, np.int64)

    def runs(values: np.ndarray) -> pa.Array:
        return pa.array(np.add.reduceat(values, starts) if n else values[:0].astype(np.int64))

    first = {name: pa.array(asks[name][starts])
             for name in ("pid", "t", "did", "sid", "cid", "lt", "lday")}  # fmt: skip
    return pa.table(
        {
            **first,
            "first_idx": pa.array(asks["idx"][starts]),
            "n": pa.array(np.diff(np.append(starts, n)).astype(np.int64)),
            "answered": runs((asks["outcome"] == 1).astype(np.int64)),
            "subjects": runs(asks["subjects"].astype(np.int64)),
        }
    )


def alerts(
    home: Home,
    *,
    since: dt.date | None = None,
    config: SupervisionConfig | None = None,
    frame: LedgerFrame | None = None,
    store: ExchangeStore | None = None,
) -> list[Alert]:
    """Scan the home's whole ledger; the alerts whose last entry is on or after ``since``.

    The whole ledger is scanned whatever ``since`` is: baselines (peers' volume, a
    principal's usual service matters, earlier uses of a case reference) need history.
    ``since`` is a local (Beijing) date. ``store``: an open exchange store to read the
    published data from (the serving process's; default: the home's, opened read-only).
    """
    config = config or load_config()
    frame = frame if frame is not None else read_home_ledger(home)
    staff, family = _home_tables(home, store)
    found = scan(frame, config, staff=staff, families=family)
    if since is None:
        return found
    try:
        cutoff = dt.datetime.combine(since, dt.time(), dt.UTC) - dt.timedelta(seconds=config.offset)
    except OverflowError:  # local midnight of a date at the calendar's very edge
        return found if since <= dt.date(1, 1, 2) else []
    stamp = cutoff.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"  # 4-digit year
    return [a for a in found if a.last_time >= stamp]


def _home_tables(
    home: Home, store: ExchangeStore | None = None
) -> tuple[pa.Table | None, pa.Table | None]:
    """The staff and family tables from the home's published data (None before any)."""
    from exchange.store import ExchangeStore

    home.require()
    if store is None:
        with ExchangeStore(home.exchange_db, read_only=True) as own:
            return _home_tables(home, own)
    if not _has(store, "household_register"):
        return None, None
    return staff_tags(home, store), families(home, store)


def _has(store: Any, dataset: str) -> bool:
    return (
        store.one("SELECT 1 AS ok FROM publications WHERE dataset = ? LIMIT 1", [dataset])
        is not None
    )


# --- kinship: families and relatives ---------------------------------------------------------


def _tagger(home: Home) -> Callable[[str], int]:
    from exchange.ledgerlink import subject_key
    from ledger.entries import SubjectTagger

    tag = SubjectTagger(subject_key(home))

    def prefix(resident_id: str) -> int:
        return tag_prefix(tag(resident_id))

    return prefix


def _view(store: Any, dataset: str) -> str | None:
    from exchange.store import dataset_view

    return dataset_view(dataset) if _has(store, dataset) else None


def families(home: Home, store: Any) -> pa.Table:
    """Each registered resident's tag (current and earlier IDs) and their family number.

    A family is a household joined with the households of the person's registered
    parents (births), found as connected components (union-find over households).
    """
    register, births, changes = (
        _view(store, "household_register"),
        _view(store, "births"),
        _view(store, "id_changes"),
    )
    if register is None:
        return _FAMILY_SCHEMA.empty_table()
    people = store.con.execute(f"SELECT id_number, household_no FROM {register}").fetchall()
    household_of = {str(pid): str(house) for pid, house in people}
    if changes is not None:
        for old, new in store.con.execute(f"SELECT old_id, new_id FROM {changes}").fetchall():
            if str(new) in household_of and str(old) not in household_of:
                household_of[str(old)] = household_of[str(new)]
    parent: dict[str, str] = {}

    def root(house: str) -> str:
        while parent.get(house, house) != house:
            parent[house] = parent.get(parent[house], parent[house])
            house = parent[house]
        return house

    if births is not None:
        for child, mother, father in store.con.execute(
            f"SELECT child_id, mother_id, father_id FROM {births}"
        ).fetchall():
            child_house = household_of.get(str(child))
            for guardian in (mother, father):
                other = household_of.get(str(guardian)) if guardian else None
                if child_house and other:
                    a, b = root(child_house), root(other)
                    if a != b:
                        parent[a] = b
    numbers: dict[str, int] = {}
    tag = _tagger(home)
    tags, family = [], []
    for pid, house in household_of.items():
        tags.append(tag(pid))
        family.append(numbers.setdefault(root(house), len(numbers)))
    return pa.table({"tag": pa.array(tags, pa.int64()), "family": pa.array(family, pa.int64())})


def relatives(store: Any, resident_id: str) -> dict[str, str]:
    """The resident's own IDs and their relatives' IDs, each with the closest relation.

    From the published household register (household members; head, spouse, parents
    and children by the relation to the head), births (parents, children, siblings),
    marriages (spouses, former ones too) and ID changes (every earlier or later number
    of anyone found).
    """
    found: dict[str, str] = {}

    def add(person: object, relation: str) -> None:
        if not isinstance(person, str) or not person:
            return
        known = found.get(person)
        if known is None or _RELATION_RANK[relation] < _RELATION_RANK[known]:
            found[person] = relation

    con = store.con
    changes = _view(store, "id_changes")

    def aliases(person: str) -> set[str]:
        if changes is None:
            return {person}
        rows = con.execute(
            f"SELECT old_id, new_id FROM {changes} WHERE old_id = ? OR new_id = ?", [person, person]
        ).fetchall()
        return {person} | {str(v) for row in rows for v in row}

    selves = aliases(resident_id)
    for me in selves:
        add(me, "self")
    register, births, marriages = (
        _view(store, "household_register"),
        _view(store, "births"),
        _view(store, "marriages"),
    )
    if register is not None:
        mine = con.execute(
            f"SELECT household_no, relation FROM {register} WHERE id_number IN "
            f"(SELECT unnest(?::VARCHAR[]))",
            [sorted(selves)],
        ).fetchall()
        for house, my_relation in mine:
            members = con.execute(
                f"SELECT id_number, relation FROM {register} WHERE household_no = ?", [house]
            ).fetchall()
            for person, relation in members:
                add(str(person), _household_relation(str(my_relation), str(relation)))
    if births is not None:
        for me in selves:
            for child, mother, father in con.execute(
                f"SELECT child_id, mother_id, father_id FROM {births} "
                "WHERE child_id = ? OR mother_id = ? OR father_id = ?",
                [me, me, me],
            ).fetchall():
                if child == me:
                    add(mother, "parent")
                    add(father, "parent")
                    for (sibling,) in con.execute(
                        f"SELECT child_id FROM {births} WHERE child_id <> ? AND "
                        "(mother_id = ? OR father_id = ?)",
                        [me, mother or "", father or ""],
                    ).fetchall():
                        add(str(sibling), "sibling")
                else:
                    add(child, "child")
    if marriages is not None:
        for me in selves:
            for husband, wife in con.execute(
                f"SELECT husband_id, wife_id FROM {marriages} WHERE husband_id = ? OR wife_id = ?",
                [me, me],
            ).fetchall():
                add(wife if husband == me else husband, "spouse")
    for person, relation in list(found.items()):
        for alias in aliases(person):
            add(alias, relation)
    for me in selves:
        found[me] = "self"
    return found


def _household_relation(mine: str, theirs: str) -> str:
    """What a household member is to me, from both relations to the head of household."""
    if mine == "户主":
        return {
            "配偶": "spouse",
            "子": "child",
            "女": "child",
            "父亲": "parent",
            "母亲": "parent",
        }.get(theirs, "household")
    if mine == "配偶":
        return {"户主": "spouse", "子": "child", "女": "child"}.get(theirs, "household")
    if mine in ("子", "女"):
        return {
            "户主": "parent",
            "配偶": "parent",
            "子": "sibling",
            "女": "sibling",
        }.get(theirs, "household")
    if mine in ("父亲", "母亲"):
        return {"户主": "child", "父亲": "spouse", "母亲": "spouse"}.get(theirs, "household")
    return "household"


def staff_tags(home: Home, store: Any, staff: Mapping[str, str] | None = None) -> pa.Table:
    """For each registered staff principal: the tags of their own IDs and their relatives'."""
    register = load_staff(home) if staff is None else staff
    tag = _tagger(home)
    principals, tags, relations = [], [], []
    for principal, resident_id in sorted(register.items()):
        for person, relation in sorted(relatives(store, resident_id).items()):
            principals.append(principal)
            tags.append(tag(person))
            relations.append(relation)
    return pa.table(
        {"principal": principals, "tag": pa.array(tags, pa.int64()), "relation": relations},
        schema=_STAFF_SCHEMA,
    )


# --- the staff register ---------------------------------------------------------------------


def staff_path(home: Home) -> Path:
    """The staff register: principal -> resident ID (personal data: in the home, 0600)."""
    return home.root / "staff.json"


def load_staff(home: Home) -> dict[str, str]:
    """The staff register (empty when none was written)."""
    path = staff_path(home)
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise SupervisionError(f"cannot read the staff register {path}: {problem}") from None
    staff = document.get("staff") if isinstance(document, dict) else None
    if not isinstance(staff, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in staff.items()
    ):
        raise SupervisionError(f"{path}: expected {{'staff': {{principal: resident ID}}}}")
    return dict(staff)


def add_staff(home: Home, principal: str, resident_id: str) -> None:
    """Register (or replace) the resident ID of the person behind ``principal``."""
    from exchange.policy import parse_principal
    from exchange.residentid import problem

    home.require()
    if parse_principal(principal) is None:
        raise InvalidArgument(
            f"not a principal: {principal!r} (expected caseworker:<department>/<user>)"
        )
    # The ID is not echoed in the error: it is personal data.
    wrong = problem(resident_id)
    if wrong is not None:
        raise InvalidArgument(f"the resident ID is not valid: {wrong}")
    staff = load_staff(home)
    staff[principal] = resident_id
    _write_staff(home, staff)


def remove_staff(home: Home, principal: str) -> bool:
    """Remove ``principal`` from the staff register; whether it was there."""
    home.require()
    staff = load_staff(home)
    if principal not in staff:
        return False
    del staff[principal]
    _write_staff(home, staff)
    return True


def _write_staff(home: Home, staff: Mapping[str, str]) -> None:
    path = staff_path(home)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(
            fd,
            (
                json.dumps({"format": 1, "staff": dict(sorted(staff.items()))}, indent=2) + "\n"
            ).encode(),
        )
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass
class AlertSummary:
    """Alert counts by kind and card, for the demo and the report."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, found: Iterable[Alert]) -> AlertSummary:
        counts: dict[tuple[str, str], int] = {(k, c): 0 for k in KINDS for c in CARDS}
        for alert in found:
            counts[(alert.kind, alert.card)] += 1
        return cls(counts)

    def total(self, card: str | None = None) -> int:
        return sum(n for (_, c), n in self.counts.items() if card is None or c == card)
