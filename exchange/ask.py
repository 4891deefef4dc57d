"""Asking: policy, then the fact's query, then the ledger, and only then the answer.

`Exchange.ask` answers one declared question for a caseworker::

    with Exchange.open(home) as exchange:
        answer = exchange.ask("person.alive", {"person_id": "…"},
                              principal="caseworker:hrss/zhang",
                              service_matter="RS-YL-01", case_ref="RS-2026-000123")

The steps, in this order (DESIGN.md invariants 1, 4, 5, 6):

1. **Policy** (deny by default): principal, power list, grant, case reference, rate
   limit, embargo rights. A refusal is a ledger entry with a fixed reason, then
   `AskRefused` (carrying the entry's index).
2. **Parameters** are checked against the fact contract; a bad value is a refusal too.
3. **Query**: the publications each dataset is read from are pinned (current, or
   ``as_of`` a past publication), and the fact's query runs over a parameter table.
   A failure is an ``error`` entry, then `AskFailed`.
4. **Ledger**: the entry (who, fact, service matter, case, outcome, the answer's digest,
   the publications relied on, subjects as keyed tags and salted commitments) is
   appended and durable before anything else happens. If the append fails, the caller
   gets the ledger's error and no answer: fail closed.
5. **Archive**: the question and answer are kept in the home's ask archive (outside the
   ledger, which holds no personal data), so an auditor can re-derive the answer later.
6. **Answer**: the result, with the ledger index and a receipt note signed by the
   exchange's log key over the answer digest. Once a checkpoint covers the entry,
   `Exchange.proof(index)` gives the offline-verifiable c2sp.org/tlog-proof.

The answer digest is ``SHA-256("onceonly-answer-v1" 0x00 || nonce || canonical JSON)``
of the fact, parameters, result, publications relied on and time; the 16-byte random
nonce travels with the answer (and the archive) and keeps the digest from being
brute-forced back to a resident ID, which has too few possible values to hide alone.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from exchange.answers import PrecomputedAnswers, precomputable
from exchange.errors import ExchangeError
from exchange.facts import (
    Fact,
    FactError,
    InvalidParameters,
    Source,
    all_facts,
    check_one,
    evaluate,
    evaluate_one,
    load_fact,
    param_schema,
    parameter_table,
    pin_publications,
    published,
    result_column,
    result_value,
)
from exchange.home import Home
from exchange.ledgerlink import log_signer, open_log, subject_key
from exchange.policy import Policy, Principal, RateLimiter, load_policy, parse_principal
from exchange.store import ExchangeStore, publication_table, utc
from ledger.entries import (
    Entry,
    SubjectTagger,
    subject_commitment,
    subject_commitments,
    subject_tag,
    utc_time,
)
from ledger.log import Log
from ledger.note import sign_note

ANSWER_DOMAIN = b"onceonly-answer-v1\x00"
UNFIT_PARAMETERS = "parameters do not fit the fact contract"
_NOT_TABULATED = object()
RECEIPT_HEADER = "onceonly answer receipt v1"
ARCHIVE_ROWS = 256  # per statement: 8 parameters a row, far below SQLite's 32,766
_LONG_DIGITS = re.compile(r"[0-9]{15}")
_IDENTIFIER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-"
)


class AskRefused(ExchangeError):
    """Policy (or the parameters) refused the ask; the refusal is ledger entry ``index``."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(f"refused: {reason} (ledger entry {index})")
        self.reason, self.index = reason, index


class AskFailed(ExchangeError):
    """The fact could not be answered; the failure is ledger entry ``index``."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(f"failed: {reason} (ledger entry {index})")
        self.reason, self.index = reason, index


@dataclass(frozen=True)
class Answer:
    fact: str
    version: str
    result: object
    relied_on: tuple[int, ...]
    ledger_index: int
    time: str
    params: dict[str, object] = field(repr=False)
    nonce: str = field(repr=False)  # hex; with the answer, anyone can recompute the digest
    digest: str  # hex, as in the ledger entry
    receipt: str  # signed note over the digest

    def to_dict(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict, which deep-copies: this is on
        # every HTTP ask's path.
        return {
            "fact": self.fact,
            "version": self.version,
            "result": self.result,
            "relied_on": list(self.relied_on),
            "ledger_index": self.ledger_index,
            "time": self.time,
            "params": dict(self.params),
            "nonce": self.nonce,
            "digest": self.digest,
            "receipt": self.receipt,
        }


def canonical_answer(
    fact_ref: str,
    params: Mapping[str, object],
    result: object,
    relied_on: tuple[int, ...],
    time: str,
) -> bytes:
    document = {
        "fact": fact_ref,
        "params": dict(params),
        "result": result,
        "relied_on": sorted(relied_on),
        "time": time,
    }
    return _CANONICAL_JSON(document).encode()


# `json.dumps` with these arguments builds an encoder per call; one of each, made once,
# writes the same text (an encoder keeps no state between calls).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_ARCHIVE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def answer_digest(canonical: bytes, nonce: bytes) -> bytes:
    return hashlib.sha256(ANSWER_DOMAIN + nonce + canonical).digest()


def _principal(text: str) -> Principal | None:
    """`parse_principal`, remembered: a caseworker asks again and again (it is immutable)."""
    return _parsed_principal(text) if type(text) is str else parse_principal(text)


@functools.lru_cache(maxsize=4096)
def _parsed_principal(text: str) -> Principal | None:
    return parse_principal(text)


def _identifier(text: object) -> str:
    """A caller-supplied name as a ledger identifier, or "unknown" (never free text)."""
    if type(text) is not str or not 0 < len(text) <= 128:
        return "unknown"
    return _checked_identifier(text)


@functools.lru_cache(maxsize=4096)
def _checked_identifier(text: str) -> str:
    if _LONG_DIGITS.search(text):
        return "unknown"  # a long digit run could be a resident ID: never into the ledger
    return text if set(text) <= _IDENTIFIER_CHARS and text[0].isalnum() else "unknown"


class AskArchive:
    """The exchange's record of each answered question: parameters, result, nonce.

    Kept in the home (0600), outside the ledger: it holds the resident IDs the ledger
    must not. Auditors re-derive answers from it; it is keyed by ledger index.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = not path.exists()
        self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            path.chmod(0o600)
        self._con.execute("PRAGMA journal_mode = WAL")
        self._con.execute("PRAGMA synchronous = NORMAL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS asks (ledger_index INTEGER PRIMARY KEY, fact TEXT NOT NULL,"
            " params TEXT NOT NULL, result TEXT NOT NULL, relied_on TEXT NOT NULL,"
            " time TEXT NOT NULL, nonce TEXT NOT NULL, digest TEXT NOT NULL)"
        )
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS batches (first_index INTEGER PRIMARY KEY,"
            " last_index INTEGER NOT NULL, file TEXT NOT NULL)"
        )
        self._batches = path.parent / "batches"
        self._batches.mkdir(mode=0o700, exist_ok=True)
        for stray in self._batches.glob("*.tmp"):  # staged by a process that then died
            stray.unlink()
        self._lock = threading.Lock()

    def record_rows(self, rows: Sequence[tuple[int, str, str, str, str, str, str, str]]) -> None:
        """Answered asks: one statement, its own (WAL, unsynced) transaction, per
        `ARCHIVE_ROWS` rows. SQLite steps a statement once, so concurrent asks recorded
        together (`AnswerRecorder`) let go of the interpreter lock once, not once each."""
        with self._lock:
            for lo in range(0, len(rows), ARCHIVE_ROWS):
                part = rows[lo : lo + ARCHIVE_ROWS]
                self._con.execute(_insert_rows(len(part)), [v for row in part for v in row])

    def stage_batch(self, first: int, rows: pa.Table) -> Path:
        """Write a caseload's questions, numbered from ledger index ``first``, to a file.

        The file is not part of the archive until `keep_batch` (once the caseload's
        ledger entries are durable; it is written while they become so), and
        `drop_batch` removes it if they never do.
        """
        import pyarrow.parquet as pq

        numbered = pa.array(np.arange(first, first + rows.num_rows, dtype=np.int64))
        staged = self._batches / f"{first:012d}.tmp"
        try:
            pq.write_table(rows.add_column(0, "ledger_index", numbered), staged)
            os.chmod(staged, 0o600)
        except BaseException:
            staged.unlink(missing_ok=True)  # a half-written file is nobody's
            raise
        return staged

    def keep_batch(self, staged: Path, first: int, count: int) -> None:
        """Make a staged caseload part of the archive: entries ``first`` .. +count-1."""
        path = staged.with_suffix(".parquet")
        staged.replace(path)
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?)",
                [first, first + count - 1, path.name],
            )

    @staticmethod
    def drop_batch(staged: Path) -> None:
        staged.unlink(missing_ok=True)

    def get(self, index: int) -> dict[str, Any] | None:
        found = self._get_single(index)
        return found if found is not None else self._get_batched(index)

    def _get_batched(self, index: int) -> dict[str, Any] | None:
        import pyarrow.parquet as pq

        with self._lock:
            row = self._con.execute(
                "SELECT file FROM batches WHERE ? BETWEEN first_index AND last_index", [index]
            ).fetchone()
        if row is None:
            return None
        table = pq.read_table(self._batches / row[0], filters=[("ledger_index", "=", index)])
        if table.num_rows == 0:
            return None
        found: dict[str, Any] = table.to_pylist()[0]
        return found | {
            "params": json.loads(found["params"]),
            "result": json.loads(found["result"]),
            "relied_on": json.loads(found["relied_on"]),
        }

    def _get_single(self, index: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._con.execute(
                "SELECT fact, params, result, relied_on, time, nonce, digest FROM asks"
                " WHERE ledger_index = ?",
                [index],
            ).fetchone()
        if row is None:
            return None
        fact, params, result, relied_on, time, nonce, digest = row
        return {
            "ledger_index": index,
            "fact": fact,
            "params": json.loads(params),
            "result": json.loads(result),
            "relied_on": json.loads(relied_on),
            "time": time,
            "nonce": nonce,
            "digest": digest,
        }

    def close(self) -> None:
        with self._lock:
            self._con.close()


@functools.lru_cache(maxsize=ARCHIVE_ROWS)
def _insert_rows(count: int) -> str:
    return "INSERT OR REPLACE INTO asks VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count)


def archive_path(home: Home) -> Path:
    return home.root / "asks" / "archive.sqlite"


_ArchiveTail = tuple[str, str, str, str, str, str, str]  # an archive row less its index


class _Recording:
    """Answered asks recorded together: their entries, archive rows, and the outcome."""

    __slots__ = ("done", "entries", "error", "indexes", "tails")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.tails: list[_ArchiveTail] = []
        self.indexes: list[int] = []
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released once recorded (or failed)


class AnswerRecorder:
    """Ledger entry, then archive row, of each answered single ask; concurrent asks share both.

    An answered ask is durable in the ledger and kept in the archive before its answer
    leaves (fail closed). Asks arriving while a recording is under way gather; the
    first of them, once the previous recording is done, appends every gathered entry
    in one ledger transaction (`Log.append_many`: consecutive indexes, one commit) and
    writes their archive rows in one statement, then wakes the others one by one. Alone,
    an ask records at once. A failure reaches every ask of its recording.
    """

    MAX_ASKS = ARCHIVE_ROWS

    def __init__(self, log: Log, archive: AskArchive) -> None:
        self._log, self._archive = log, archive
        self._gather = threading.Lock()  # which recording an ask joins
        self._writing = threading.Lock()  # one recording at a time, in order
        self._open = _Recording()

    def record(self, entry: Entry, tail: _ArchiveTail) -> int:
        """Record one answered ask; return its ledger index once durable and archived."""
        with self._gather:
            group = self._open
            if len(group.entries) >= self.MAX_ASKS:
                group = self._open = _Recording()
            position = len(group.entries)
            group.entries.append(entry)
            group.tails.append(tail)
        if position == 0:
            with self._writing:
                with self._gather:  # closed: later asks gather for the next recording
                    if self._open is group:
                        self._open = _Recording()
                try:
                    group.indexes = self._log.append_many(group.entries)
                    self._archive.record_rows(
                        [(i, *t) for i, t in zip(group.indexes, group.tails, strict=True)]
                    )
                except BaseException as problem:
                    group.error = problem
                finally:
                    group.done.release()
        else:
            group.done.acquire()  # then the next waiter: a chain, not a stampede
            group.done.release()
        if group.error is not None:
            raise group.error
        return group.indexes[position]


class _Pending:
    __slots__ = ("done", "error", "result", "row")

    def __init__(self, row: dict[str, object]) -> None:
        self.row = row
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


class QueryBatcher:
    """Concurrent single asks of one fact share one query, as appends share one commit.

    A fact's query answers a parameter table of any length for about the cost of one
    row, so when caseworkers ask at the same moment, the first to arrive runs the query
    for everyone waiting on the same fact and publications, then the next waiting one
    for those who arrived meanwhile. Alone, an ask runs at once: nothing waits for a
    batch to fill.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queues: dict[tuple[str, tuple[int, ...]], list[_Pending]] = {}
        self._running: set[tuple[str, tuple[int, ...]]] = set()

    def answer(self, cursor: Any, fact: Fact, row: dict[str, object], sources: list[Any]) -> object:
        key = (fact.ref, tuple(s.publication_id for s in sources))
        mine = _Pending(row)
        with self._lock:
            self._queues.setdefault(key, []).append(mine)
            while not mine.done and key in self._running:
                self._lock.wait()
            if mine.done:
                if mine.error is not None:
                    raise mine.error
                return mine.result
            batch = self._queues.pop(key)
            self._running.add(key)
        try:
            if len(batch) == 1:
                results: list[object] = [evaluate_one(cursor, fact, row, sources)]
            else:
                rows = [p.row | {"_n": n} for n, p in enumerate(batch)]
                table = pa.Table.from_pylist(rows, schema=param_schema(fact))
                results = evaluate(cursor, fact, table, sources).column("answer").to_pylist()
            error: BaseException | None = None
        except BaseException as problem:  # every waiter hears of it, not just the leader
            results, error = [None] * len(batch), problem
        with self._lock:
            for pending, result in zip(batch, results, strict=True):
                pending.result, pending.error, pending.done = result, error, True
            self._running.discard(key)
            self._lock.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result


class Exchange:
    """The exchange as a caseworker meets it: ask, ask a batch, fetch a proof."""

    def __init__(
        self,
        home: Home,
        store: ExchangeStore,
        log: Log,
        *,
        policy: Policy | None = None,
        archive: AskArchive | None = None,
        precompute: bool = False,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.home, self.store, self.log = home, store, log
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))  # injectable time
        self.policy = policy or load_policy()
        self.limits = RateLimiter(self.policy.per_minute, self.policy.per_day)
        self.archive = archive or AskArchive(archive_path(home))
        self._recorder = AnswerRecorder(log, self.archive)
        self._subject_key = subject_key(home)
        self._tagger = SubjectTagger(self._subject_key)  # the keyed state, computed once
        self._signer = log_signer(home)
        self._local = threading.local()
        self._batcher = QueryBatcher()
        self._facts: dict[str, Fact] = {}
        # Single asks of one-resident facts answered from tables of the same query
        # (exchange.answers); off for one-shot callers, who would use a table once.
        self.answers = (
            PrecomputedAnswers(self._cursor, perf_counter, self._population) if precompute else None
        )
        self.refresh()

    def refresh(self) -> None:
        """Re-read which publications exist (after an ingest by this process)."""
        self._published = published(self._cursor())
        self._current: dict[str, list[Source]] = {}  # fact ref -> its pinned sources
        if self.answers is not None:
            self.precompute(utc(self._clock()).date())

    def _population(self) -> str | None:
        """The current household register's relation: every resident (exchange.answers)."""
        current = self._published.get("household_register")
        return publication_table(current[0][0]) if current else None

    def precompute(self, today: dt.date, *, wait: bool = False) -> None:
        """Have the answer tables of every one-resident fact built for ``today``.

        In the background (asks take the query path meanwhile), or, with ``wait``,
        before returning. A fact whose datasets are not all published is skipped.
        """
        if self.answers is None:
            raise ValueError("this exchange was opened without precompute")
        for fact_id in sorted({f.id for f in all_facts()}):
            fact = self._fact(fact_id)
            if not precomputable(fact):
                continue
            try:
                sources = self._pinned(self._cursor(), fact, None)
            except FactError:
                continue
            self.answers.request(fact, sources, today)
        if wait:
            self.answers.wait()

    @classmethod
    @contextmanager
    def open(
        cls,
        home: Home,
        *,
        policy: Policy | None = None,
        precompute: bool = False,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> Iterator[Exchange]:
        """The home's exchange: its database (the one writer), ledger and ask archive.

        ``precompute`` answers single asks of one-resident facts from precomputed
        tables of the same query (`exchange.answers`): for a long-running service.
        ``clock`` (default: the system's) stamps asks given no ``now`` and dates the
        tables built on a refresh.
        """
        home.require()
        store = ExchangeStore(home.exchange_db)
        try:
            with open_log(home) as log:
                exchange = cls(home, store, log, policy=policy, precompute=precompute, clock=clock)
                try:
                    yield exchange
                finally:
                    if exchange.answers is not None:
                        exchange.answers.close()
                    exchange.archive.close()
        finally:
            store.close()

    def _case_ref(self, text: str) -> str:
        """The case reference as the ledger records it: only a well-formed one, else ""."""
        return text if isinstance(text, str) and self.policy.case_ref.fullmatch(text) else ""

    def _cursor(self) -> Any:
        """A DuckDB cursor for this thread (DuckDB: one cursor per thread)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.store.con.cursor()
        return cursor

    # --- one ask ----------------------------------------------------------------------

    def ask(
        self,
        fact_id: str,
        params: Mapping[str, object],
        *,
        principal: str,
        service_matter: str,
        case_ref: str,
        as_of: int | None = None,
        embargo_until: dt.date | None = None,
        now: dt.datetime | None = None,
    ) -> Answer:
        """Answer one fact for one case, ledgered first (see the module docstring)."""
        now = utc(now if now is not None else self._clock())
        time = utc_time(now)
        who = _principal(principal)
        department = who.department if who else "unknown"
        embargo = embargo_until.isoformat() if embargo_until else ""

        def entry(outcome: str, **extra: Any) -> Entry:
            return Entry(
                kind="ask",
                time=time,
                department=department,
                principal=_identifier(principal),
                outcome=outcome,  # type: ignore[arg-type]
                fact_id=_identifier(fact.id if fact else fact_id),
                fact_version=fact.version if fact else "unknown",
                service_matter=_identifier(service_matter) if service_matter else "",
                case_ref=self._case_ref(case_ref),
                embargo_until=embargo,
                **extra,
            )

        def refuse(reason: str, subjects: tuple[bytes, ...] = (), salt: bytes = b"") -> AskRefused:
            tags, commitments = self._subjects(subjects, salt)
            index = self.log.append(
                entry("refused", reason=reason, subject_tags=tags, subject_commitments=commitments)
            )
            return AskRefused(reason, index)

        fact: Fact | None = None
        try:
            fact = self._fact(fact_id)
        except FactError:
            raise refuse("unknown fact") from None
        reason = self.policy.check(who, fact.id, service_matter, case_ref, embargo=bool(embargo))
        if reason is None and not self.limits.allow(principal, now):
            reason = "rate limit exceeded"
        salt = secrets.token_bytes(16)
        if reason:
            raise refuse(reason, self._valid_subjects(fact, params), salt)
        try:
            row = check_one(fact, params, today=now.date())
        except InvalidParameters:
            row = None
        if row is None:
            raise refuse(UNFIT_PARAMETERS, self._valid_subjects(fact, params), salt)
        # The checked row holds each subject's ID in its canonical form.
        subject_ids = tuple(dict.fromkeys(str(row[p.name]).encode() for p in fact.subjects))
        try:
            cursor = self._cursor()
            sources = self._pinned(cursor, fact, as_of)
            result = self._precomputed(fact, sources, row, as_of, now.date())
            if result is _NOT_TABULATED:
                result = result_value(fact, self._batcher.answer(cursor, fact, row, sources))
        except (FactError, ExchangeError, duckdb.Error) as problem:
            index = self.log.append(entry("error", reason=_reason(problem)))
            raise AskFailed(str(problem), index) from problem
        relied_on = tuple(sorted(s.publication_id for s in sources))
        clean = {p.name: _jsonable(row[p.name]) for p in fact.parameters}
        canonical = canonical_answer(fact.ref, clean, result, relied_on, time)
        digest = answer_digest(canonical, salt)
        tags, commitments = self._subjects(subject_ids, salt)
        nonce, digest_hex = salt.hex(), digest.hex()
        # Fail closed: nothing below runs unless the entry is durable (and archived).
        index = self._recorder.record(
            entry(
                "answered",
                answer_digest=digest,
                relied_on=relied_on,
                subject_tags=tags,
                subject_commitments=commitments,
            ),
            (
                fact.ref,
                _ARCHIVE_JSON(clean),
                _json_scalar(result),
                _json_ids(relied_on),
                time,
                nonce,
                digest_hex,
            ),
        )
        return Answer(
            fact=fact.id,
            version=fact.version,
            result=result,
            relied_on=relied_on,
            ledger_index=index,
            time=time,
            params=clean,
            nonce=nonce,
            digest=digest_hex,
            receipt=self._receipt(index, fact.ref, digest, time),
        )

    def _fact(self, fact_id: str) -> Fact:
        """The fact's current contract, read once per exchange (contracts are files)."""
        found = self._facts.get(fact_id) if isinstance(fact_id, str) else None
        if found is None:
            found = load_fact(fact_id)
            if len(self._facts) < 1024:
                self._facts[fact_id] = found
        return found

    def _pinned(self, cursor: Any, fact: Fact, as_of: int | None) -> list[Source]:
        """The fact's publications: current ones cached until the next `refresh`."""
        if as_of is not None:
            return pin_publications(cursor, fact, as_of=as_of, snapshot=self._published)
        found = self._current.get(fact.ref)
        if found is None:
            found = pin_publications(cursor, fact, snapshot=self._published)
            self._current[fact.ref] = found
        return found

    def _precomputed(
        self,
        fact: Fact,
        sources: list[Any],
        row: Mapping[str, object],
        as_of: int | None,
        today: dt.date,
    ) -> object:
        """The answer from a precomputed table, or `_NOT_TABULATED` (then run the query)."""
        if self.answers is None or as_of is not None or not precomputable(fact):
            return _NOT_TABULATED
        (parameter,) = fact.parameters
        found, result = self.answers.lookup(fact, sources, today, str(row[parameter.name]))
        return result if found else _NOT_TABULATED

    def _valid_subjects(self, fact: Fact, params: Mapping[str, object]) -> tuple[bytes, ...]:
        """The subjects' resident IDs that can be tagged (well-formed ones only)."""
        from exchange.residentid import problem

        found = []
        for parameter in fact.subjects:
            value = params.get(parameter.name)
            if isinstance(value, bool) or not isinstance(value, str | int):
                continue
            text = str(value).strip()  # as `check_one` reads it
            if problem(text) is None:
                found.append(text.encode())
        return tuple(dict.fromkeys(found))

    def _subjects(
        self, resident_ids: tuple[bytes, ...], salt: bytes
    ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        if not resident_ids:
            return (), ()
        tags = tuple(self._tagger(rid.decode()) for rid in resident_ids)
        commitments = tuple(subject_commitment(rid.decode(), salt) for rid in resident_ids)
        return tags, commitments

    def _receipt(self, index: int, fact_ref: str, digest: bytes, time: str) -> str:
        body = (
            f"{RECEIPT_HEADER}\n{self.log.origin}\nindex {index}\nfact {fact_ref}\n"
            f"time {time}\ndigest {base64.b64encode(digest).decode()}\n"
        )
        return sign_note(body, [self._signer])

    def subject_tag(self, resident_id: str) -> bytes:
        """The ledger tag of a resident (for the citizen report and auditors)."""
        return subject_tag(self._subject_key, resident_id)

    # --- a batch ----------------------------------------------------------------------

    def ask_batch(
        self,
        fact_id: str,
        rows: pa.Table,
        *,
        principal: str,
        service_matter: str,
        case_ref: str,
        as_of: int | None = None,
        now: dt.datetime | None = None,
    ) -> pa.Table:
        """Answer a whole caseload in one query: one ledger entry per subject, one commit.

        Returns the rows with ``answer``, ``outcome`` (answered / refused),
        ``ledger_index`` and ``reason``. A row whose values do not fit the contract is
        refused alone; a policy refusal refuses the batch (one entry) and raises.
        """
        now = utc(now if now is not None else self._clock())
        time = utc_time(now)
        who = _principal(principal)
        try:
            fact: Fact | None = self._fact(fact_id)
        except FactError:
            fact = None
        reason = (
            "unknown fact"
            if fact is None
            else self.policy.check(who, fact.id, service_matter, case_ref)
        )
        if reason is None and not self.limits.allow(principal, now):
            reason = "rate limit exceeded"
        if reason is not None or fact is None:
            index = self.log.append(
                Entry(
                    kind="ask",
                    time=time,
                    department=who.department if who else "unknown",
                    principal=_identifier(principal),
                    outcome="refused",
                    fact_id=_identifier(fact.id if fact else fact_id),
                    fact_version=fact.version if fact else "unknown",
                    service_matter=_identifier(service_matter) if service_matter else "",
                    case_ref=self._case_ref(case_ref),
                    reason=reason or "unknown fact",
                )
            )
            raise AskRefused(reason or "unknown fact", index)
        assert who is not None
        table, ok = parameter_table(fact, rows, today=now.date())
        good = pc.filter(table, ok)
        # One nonce per answer, from one call to the OS. The subjects' tags and salted
        # commitments need only these and the checked IDs: they are hashed in a thread
        # while DuckDB answers (its query leaves the interpreter lock free).
        nonces = os.urandom(16 * good.num_rows)
        with ThreadPoolExecutor(1, thread_name_prefix="onceonly-subjects") as pool:
            subjects = pool.submit(self._subject_columns, fact, good, nonces)
            try:
                cursor = self._cursor()
                sources = pin_publications(cursor, fact, as_of=as_of, snapshot=self._published)
                numbered = pa.array(np.arange(good.num_rows, dtype=np.int64))
                answered = evaluate(cursor, fact, good.set_column(0, "_n", numbered), sources)
                results = result_column(fact, answered.column("answer"))
            except (FactError, ExchangeError, duckdb.Error) as problem:
                index = self.log.append(
                    Entry.ask(
                        department=who.department,
                        principal=principal,
                        fact_id=fact.id,
                        fact_version=fact.version,
                        service_matter=service_matter,
                        case_ref=case_ref,
                        outcome="error",
                        reason=_reason(problem),
                        now=now,
                    )
                )
                raise AskFailed(str(problem), index) from problem
            tags, commitments = subjects.result()
        relied_on = tuple(sorted(s.publication_id for s in sources))
        return self._ledger_batch(
            rows,
            fact,
            who.department,
            principal,
            service_matter,
            case_ref,
            time,
            table,
            ok,
            good,
            results,
            relied_on,
            nonces,
            tags,
            commitments,
        )

    def _subject_columns(
        self, fact: Fact, good: pa.Table, nonces: bytes
    ) -> tuple[list[list[bytes]], list[list[bytes]]]:
        """Per subject parameter, each row's tag and salted commitment (its nonce as salt).

        The IDs are checked ones (`parameter_table`), in their canonical form.
        """
        salts = [nonces[i : i + 16] for i in range(0, len(nonces), 16)]
        ids = [good.column(p.name).cast(pa.binary()).to_pylist() for p in fact.subjects]
        tags = [self._tagger.many(column) for column in ids]
        return tags, [subject_commitments(column, salts) for column in ids]

    def _ledger_batch(
        self,
        given: pa.Table,
        fact: Fact,
        department: str,
        principal: str,
        service_matter: str,
        case_ref: str,
        time: str,
        table: pa.Table,
        ok: pa.Array,
        good: pa.Table,
        results: pa.Array,
        relied_on: tuple[int, ...],
        pool: bytes,
        tags: list[list[bytes]],
        commitments: list[list[bytes]],
    ) -> pa.Table:
        """One entry per subject, all in one durable commit; then the archive; then answers.

        The entries share everything but the digest and the subjects, so they are
        spliced from one validated template (`ledger.entries.encode_answers`) rather
        than built one object at a time: this is what keeps a million-subject caseload
        in seconds.
        """
        names = [p.name for p in fact.parameters]
        n = good.num_rows
        # Canonical JSON, column by column (the same bytes `canonical_answer` makes).
        params_json = _json_objects(fact, good)
        result_json = _json_values(fact, results)
        relied_json = json.dumps(list(relied_on))
        canonical = pc.binary_join_element_wise(
            f'{{"fact":{json.dumps(fact.ref)},"params":',
            params_json,
            f',"relied_on":{json.dumps(sorted(relied_on), separators=(",", ":"))},"result":',
            result_json,
            f',"time":{json.dumps(time)}}}',
            "",
        )
        # Digests over domain || nonce || JSON (each row's nonce from ``pool``).
        nonces = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(pool)])
        digests = _sha256_each(
            pc.binary_join_element_wise(
                pa.repeat(pa.scalar(ANSWER_DOMAIN, pa.binary()), n),
                nonces.cast(pa.binary()),
                canonical.cast(pa.binary()),
                b"",
            )
        )
        template = Entry(
            kind="ask",
            time=time,
            department=department,
            principal=principal,
            outcome="answered",
            fact_id=fact.id,
            fact_version=fact.version,
            service_matter=service_matter,
            case_ref=case_ref,
            answer_digest=bytes(32),
            relied_on=relied_on,
        )
        refusal = dataclasses.replace(
            template,
            outcome="refused",
            reason=UNFIT_PARAMETERS,
            answer_digest=None,
            relied_on=(),
        )
        refused_count = table.num_rows - n
        nonce_hex = _hex_column(pool, 16, n)
        archived = pa.table(
            {
                "fact": pa.repeat(pa.scalar(fact.ref), n),
                "params": params_json,
                "result": result_json,
                "relied_on": pa.repeat(pa.scalar(relied_json), n),
                "time": pa.repeat(pa.scalar(time), n),
                "nonce": nonce_hex,
                "digest": _hex_column(b"".join(digests), 32, n),
            }
        )
        # Fail closed: one durable commit for the whole caseload before anything else.
        # Its archive file is written meanwhile, from the moment the entries have their
        # indexes, and becomes part of the archive only once they are durable.
        staged: list[Future[Path]] = []
        with ThreadPoolExecutor(1, thread_name_prefix="onceonly-archive") as writer:

            def placed(first: int) -> None:  # in the ledger's sequencer: start, not wait
                if n:
                    staged.append(writer.submit(self.archive.stage_batch, first, archived))

            try:
                indexes = self.log.append_answer_columns(
                    template, digests, tags, commitments, [refusal] * refused_count, placed=placed
                )
            except BaseException:
                for future in staged:
                    with contextlib.suppress(Exception):
                        self.archive.drop_batch(future.result())
                raise
            files = [future.result() for future in staged]
        for file in files:
            self.archive.keep_batch(file, indexes[0], n)
        # Back to the caller's row order: answered rows took the first indexes, in order.
        fits = ok.to_numpy(zero_copy_only=False).astype(bool)
        row_index = np.empty(len(fits), np.int64)
        row_index[fits] = indexes[:n]
        row_index[~fits] = indexes[n:]
        taken = np.cumsum(fits) - 1
        position = pa.array(taken, pa.int64(), mask=~fits)  # null where refused
        out = given.select(names)  # as the caseworker gave them, refused rows included
        if fact.result_type == "date":  # ISO text, as a single ask's answer carries it
            results = results.cast(pa.string())
        out = out.append_column("answer", pc.take(results, position))
        out = out.append_column("outcome", pc.if_else(ok, "answered", "refused"))
        out = out.append_column("reason", pc.if_else(ok, "", UNFIT_PARAMETERS))
        out = out.append_column("ledger_index", pa.array(row_index, pa.int64()))
        return out.append_column("nonce", pc.take(nonce_hex, position))

    # --- proofs -----------------------------------------------------------------------

    def proof(self, index: int) -> str:
        """The c2sp.org/tlog-proof of ledger entry ``index`` (once a checkpoint covers it)."""
        return self.log.prove(index)


def _json_scalar(value: object) -> str:
    """`json.dumps` of an answer, without the encoder for the common booleans."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return json.dumps(value)


@functools.lru_cache(maxsize=1024)
def _json_ids(ids: tuple[int, ...]) -> str:
    """`json.dumps` of a publication-id list; asks share a handful of them."""
    return json.dumps(list(ids))


def _sha256_each(messages: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """SHA-256 of each value of a binary column, read in place from its buffers.

    (`to_pylist` would box every value as a Python object first: that doubled the cost
    for a million answers.)
    """
    if messages.null_count:
        raise ValueError("a message to hash is missing")
    sha256 = hashlib.sha256
    out: list[bytes] = []
    chunks = messages.chunks if isinstance(messages, pa.ChunkedArray) else [messages]
    for chunk in chunks:
        wide = pa.types.is_large_binary(chunk.type)
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if wide else np.int32)
        bounds = offsets[chunk.offset : chunk.offset + len(chunk) + 1].tolist()
        data = memoryview(chunk.buffers()[2] or b"")
        out += [sha256(data[a:b]).digest() for a, b in itertools.pairwise(bounds)]
    return out


def _hex_column(data: bytes, width: int, count: int) -> pa.Array:
    """``count`` fixed-width byte strings packed in ``data``, as lower-case hex strings."""
    size = 2 * width * count
    large = size >= 2**31  # past int32 offsets (33M digests): Arrow's large strings
    offsets = np.arange(0, size + 1, 2 * width, dtype=np.int64 if large else np.int32)
    kind = pa.LargeStringArray if large else pa.StringArray
    return kind.from_buffers(
        count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.hex().encode("ascii"))
    )


def _reason(problem: Exception) -> str:
    """A fixed-form reason for the ledger: the error's class, never its (data-bearing) text."""
    return f"fact could not be answered ({type(problem).__name__})"


def _jsonable(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _json_values(fact: Fact, results: pa.Array) -> pa.Array:
    """Each answer as canonical JSON text (`json.dumps` of the value), column-wise."""
    if fact.result_type == "boolean":
        return pc.if_else(results, "true", "false")
    if fact.result_type == "count":
        return results.cast(pa.string())
    if fact.result_type == "enum":
        texts = pa.array([json.dumps(v, ensure_ascii=False) for v in fact.result_values])
        return pc.take(texts, pc.index_in(results, pa.array(fact.result_values)))
    quoted = pc.binary_join_element_wise('"', results.cast(pa.string()), '"', "")
    return pc.fill_null(quoted, "null")


def _json_objects(fact: Fact, table: pa.Table) -> pa.Array:
    """Each row's parameters as canonical JSON (sorted keys, no spaces), column-wise.

    Checked resident IDs, codes and ISO dates need no escaping; integers are digits; an
    enum value or free string goes through `json.dumps`, once per distinct value.
    """
    parts: list[Any] = []
    for n, parameter in enumerate(sorted(fact.parameters, key=lambda p: p.name)):
        parts.append(("{" if n == 0 else ",") + json.dumps(parameter.name) + ":")
        column = table.column(parameter.name).combine_chunks()
        if parameter.type == "integer":
            parts.append(column.cast(pa.string()))
        elif parameter.type in ("enum", "string"):
            distinct = pc.unique(column)
            texts = pa.array([json.dumps(v, ensure_ascii=False) for v in distinct.to_pylist()])
            parts.append(pc.take(texts, pc.index_in(column, distinct)))
        else:
            parts.append(pc.binary_join_element_wise('"', column.cast(pa.string()), '"', ""))
    parts.append("}")
    if table.num_rows == 0:
        return pa.array([], pa.string())
    return pc.binary_join_element_wise(*parts, "")
