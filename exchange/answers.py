"""Precomputed answers: a one-resident fact answered for everyone at once, then looked up.

A fact's query costs the same few milliseconds whether it answers one question or a
hundred thousand (DuckDB binds and plans the statement each time; the joins scan the
publications either way). For a fact whose only parameter is a resident ID, the
exchange can therefore run the query once for every resident its publications mention
and answer single asks by lookup:

- **The same query, the same answers.** The table is the fact's own query over the
  same pinned publications and the same ``_today``, run over a parameter table of every
  candidate ID; nothing about the fact is re-implemented. An auditor re-deriving an
  answer runs the query itself (`exchange.audit`), so a table that ever disagreed with
  its query would be caught there.
- **Candidates** are the distinct values shaped like a resident ID (GB 11643: 17 digits
  and a digit or X) in every field the fact declares it reads, and every resident of the
  current household register (so that "no criminal record" is tabulated for the people
  without one, not only for those with one). An ID outside them, an
  ``as_of`` ask, or an ask before the table is ready goes through the query as before:
  the lookup only ever replaces the query where the query was run.
- **Keyed by what the answer depends on**: the fact, the publications pinned for each
  dataset, and the date. A new publication or a new day makes a new key; the old table
  is dropped once the new one is ready, and until then asks take the query path.
- **Built in the background**, on a DuckDB cursor of its own, so asks never wait for it.

Only the serving process (`onceonly serve`) and long-running callers turn this on
(``Exchange.open(home, precompute=True)``); a one-shot ``onceonly ask`` would build a
table to use it once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from exchange.facts import Fact, Source, evaluate, param_schema, result_column
from exchange.store import quote

_RESIDENT_ID = "^[0-9]{17}[0-9X]$"
_ID_WIDTH = 18
_ABSENT = object()
HASHED_UP_TO = 2_000_000  # IDs; see AnswerTable

Key = tuple[str, tuple[int, ...], dt.date]


def precomputable(fact: Fact) -> bool:
    """A fact whose one parameter is a resident ID: its answers can be tabulated."""
    return len(fact.parameters) == 1 and fact.parameters[0].type == "resident_id"


def answers_key(fact: Fact, sources: Sequence[Source], today: dt.date) -> Key:
    return (fact.ref, tuple(s.publication_id for s in sources), today)


@dataclass(frozen=True)
class AnswerTable:
    """A fact's answers for a sorted array of resident IDs.

    Up to `HASHED_UP_TO` IDs are also kept in a dict (a lookup in well under a
    microsecond, ~100 bytes an ID); a bigger table is binary-searched in its numpy array
    (~10 microseconds, 18 bytes an ID), so a 10-million-person register costs 180 MB a
    fact, not a gigabyte.
    """

    key: Key
    ids: np.ndarray  # sorted, dtype S18
    results: list[object]
    seconds: float  # how long the build took
    by_id: dict[str, object] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.results)

    def lookup(self, resident_id: str) -> tuple[bool, object]:
        """``(True, answer)`` for a tabulated ID, ``(False, None)`` otherwise."""
        if self.by_id is not None:
            found = self.by_id.get(resident_id, _ABSENT)
            return (False, None) if found is _ABSENT else (True, found)
        if len(resident_id) != _ID_WIDTH:
            return False, None
        wanted = resident_id.encode("ascii", "replace")
        i = int(np.searchsorted(self.ids, wanted))
        if i < len(self.ids) and self.ids[i] == wanted:
            return True, self.results[i]
        return False, None


def candidate_ids(
    cursor: Any, fact: Fact, sources: Sequence[Source], population: str | None = None
) -> pa.Array:
    """Every distinct resident-ID-shaped value in the fields the fact reads, sorted.

    ``population``, a relation with an ``id_number`` column (the household register),
    adds everyone in it.
    """
    relation = {s.dataset: s.relation for s in sources}
    parts = [f"SELECT id_number AS id FROM {population}"] if population else []
    for reads in fact.reads:
        columns = {
            str(name): str(kind)
            for name, kind in cursor.execute(
                f"SELECT column_name, column_type FROM (DESCRIBE {relation[reads.dataset]})"
            ).fetchall()
        }
        for name in reads.fields:
            if columns.get(name) == "VARCHAR":
                parts.append(f"SELECT {quote(name)} AS id FROM {relation[reads.dataset]}")
    if not parts:
        return pa.array([], pa.string())
    found = cursor.sql(
        f"SELECT DISTINCT id FROM ({' UNION ALL '.join(parts)})"
        f" WHERE regexp_full_match(id, '{_RESIDENT_ID}') ORDER BY id"
    ).to_arrow_table()
    return found.column("id").combine_chunks().cast(pa.string())


def build_table(
    cursor: Any,
    fact: Fact,
    sources: Sequence[Source],
    today: dt.date,
    *,
    clock: Callable[[], float],
    population: str | None = None,
) -> AnswerTable:
    """Run the fact's query once over every candidate ID (see the module docstring)."""
    started = clock()
    ids = candidate_ids(cursor, fact, sources, population)
    (parameter,) = fact.parameters
    params = pa.table(
        {
            "_n": pa.array(np.arange(len(ids), dtype=np.int64)),
            parameter.name: ids,
            "_today": pa.array([today] * len(ids), pa.date32()),
        }
    ).cast(param_schema(fact))
    answered = evaluate(cursor, fact, params, list(sources))
    column = result_column(fact, answered.column("answer"))
    if fact.result_type == "date":  # as `result_value` gives it: ISO text, or None
        column = column.cast(pa.string())
    results = column.to_pylist()
    by_id = dict(zip(ids.to_pylist(), results, strict=True)) if len(ids) <= HASHED_UP_TO else None
    key = answers_key(fact, sources, today)
    return AnswerTable(key, _packed(ids), results, clock() - started, by_id)


def _newer(key: Key, than: Key) -> bool:
    """Whether ``key`` is a later state than ``than``: a later date, or later publications.

    Publication ids only grow, and a fact's datasets come in one order, so a table pinned
    after a refresh has every id at least as high as one pinned before it.
    """
    return (key[2], key[1]) > (than[2], than[1])


def _packed(ids: pa.Array) -> np.ndarray:
    """Sorted 18-character IDs as one numpy ``S18`` array, straight from Arrow's buffer."""
    if len(ids) == 0:
        return np.array([], dtype=f"S{_ID_WIDTH}")
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset : ids.offset + len(ids) + 1]
    if not np.all(np.diff(offsets) == _ID_WIDTH):  # the candidate pattern fixes the width
        raise ValueError("candidate IDs are not all 18 characters")
    data = np.frombuffer(ids.buffers()[2], np.uint8)
    return data[offsets[0] : offsets[-1]].copy().view(f"S{_ID_WIDTH}")


class PrecomputedAnswers:
    """The exchange's answer tables: one per precomputable fact, built in the background.

    `lookup` never waits: it answers from a ready table of exactly the ask's key, or
    says it cannot (the caller then runs the query) and asks for that key to be built.
    One builder thread builds the requested keys in turn, each on a DuckDB cursor of
    its own (``cursor`` makes one for the calling thread), so building never competes
    with itself for the two cores, and asks never wait for it.
    """

    def __init__(
        self,
        cursor: Callable[[], Any],
        clock: Callable[[], float],
        population: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._cursor, self._clock, self._population = cursor, clock, population
        self._lock = threading.Condition()
        self._tables: dict[str, AnswerTable] = {}  # by fact ref: the latest built
        self._queue: dict[Key, tuple[Fact, list[Source]]] = {}
        self._building: Key | None = None
        self._failed: set[Key] = set()
        self._builder: threading.Thread | None = None
        self._builder_cursor: Any = None
        self._closing = False
        self.failures: list[tuple[Key, BaseException]] = []
        self.hits = self.misses = 0  # asks answered from a table / sent to the query

    def lookup(
        self, fact: Fact, sources: Sequence[Source], today: dt.date, resident_id: str
    ) -> tuple[bool, object]:
        key = answers_key(fact, sources, today)
        with self._lock:
            table = self._tables.get(fact.ref)
            if table is None or table.key != key:
                self._request(key, fact, sources)
                self.misses += 1
                return False, None
            found = table.lookup(resident_id)
            if found[0]:
                self.hits += 1
            else:
                self.misses += 1
            return found

    def request(self, fact: Fact, sources: Sequence[Source], today: dt.date) -> None:
        """Have this key's table built in the background (a no-op if it is, or was)."""
        with self._lock:
            self._request(answers_key(fact, sources, today), fact, sources)

    def wait(self) -> None:
        """Wait until every requested table is built (or failed): tests and benchmarks."""
        with self._lock:
            while self._queue or self._building is not None:
                self._lock.wait()

    def ready(self) -> list[str]:
        """The facts with a ready table."""
        with self._lock:
            return sorted(self._tables)

    def pending(self) -> int:
        """Tables queued or being built."""
        with self._lock:
            return len(self._queue) + (self._building is not None)

    def table(self, fact_ref: str) -> AnswerTable | None:
        with self._lock:
            return self._tables.get(fact_ref)

    def close(self) -> None:
        """Stop building (a build under way is interrupted) before the database closes."""
        with self._lock:
            self._closing = True
            self._queue.clear()
            builder, cursor = self._builder, self._builder_cursor
            self._lock.notify_all()
        while builder is not None and builder.is_alive():
            if cursor is not None:
                cursor.interrupt()  # DuckDB drops an interrupt between two queries: repeat
            builder.join(0.05)

    def _request(self, key: Key, fact: Fact, sources: Sequence[Source]) -> None:
        """Queue ``key`` unless ready, queued, being built or failed (lock held)."""
        if self._closing:
            return
        ready = self._tables.get(fact.ref)
        if (ready is not None and not _newer(key, ready.key)) or key == self._building:
            return  # this table, or a newer one (an ask pinned just before a refresh)
        if key in self._queue or key in self._failed:
            return
        self._queue[key] = (fact, list(sources))
        if self._builder is None:
            self._builder = threading.Thread(target=self._run, name="answers", daemon=True)
            self._builder.start()
        self._lock.notify_all()

    def _run(self) -> None:
        cursor = self._builder_cursor = self._cursor()
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                key = next(iter(self._queue))
                fact, sources = self._queue.pop(key)
                self._building = key
            try:
                table = build_table(
                    cursor, fact, sources, key[2], clock=self._clock, population=self._population()
                )
            except Exception as problem:  # the query path still answers; keep the reason
                with self._lock:
                    self._failed.add(key)
                    self.failures.append((key, problem))
            else:
                with self._lock:
                    ready = self._tables.get(fact.ref)
                    if ready is None or _newer(table.key, ready.key):
                        self._tables[fact.ref] = table  # replaces the fact's older table
            finally:
                with self._lock:
                    self._building = None
                    self._lock.notify_all()
