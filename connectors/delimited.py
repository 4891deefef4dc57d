"""CSV sources in any encoding: BOM, CRLF, quoted delimiters and quoted newlines.

Two paths, one result. The fast path takes a block of whole lines (16 MiB) as it comes:
decoded in one call, re-encoded as UTF-8 and parsed by Arrow's C++ CSV reader in one go.
It is taken when the block is as exports almost always are: every byte decodes, no CR
stands alone, every record has the header's number of fields and ends inside the block.
Otherwise the block is looked at again in pieces (1 MiB), and only the pieces that need it
take the careful path: records are found in Python only where a line holds a quote (rare),
then the well-formed records are parsed by Arrow too. A record that does not decode or has
the wrong number of fields is yielded with its problem, never dropped. Quoting follows
RFC 4180 as lenient readers do: a quote opens a quoted field only at the start of a field;
elsewhere it is an ordinary character. The property tests hold the two paths to the same
records, problems and numbering.
"""

from __future__ import annotations

import csv
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.base import TEXT, batch, mark
from connectors.errors import SourceUnreadable
from connectors.text import LineBlock, TextSource, codec_for, decode_block, read_raw_blocks

PIECE_BYTES = 1 << 20  # a block the fast path refuses is looked at again in pieces this size


@dataclass
class _Scan:
    """Where a record stands after some of its text: inside a quoted field or not."""

    inside: bool = False
    at_field_start: bool = True
    fields: int = 1


def _scan(line: str, delimiter: str, state: _Scan) -> _Scan:
    inside, at_start, fields = state.inside, state.at_field_start, state.fields
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if inside:
            if ch == '"':
                if i + 1 < n and line[i + 1] == '"':
                    i += 1  # an escaped quote
                else:
                    inside = False
        elif ch == delimiter:
            fields += 1
            at_start = True
            i += 1
            continue
        elif ch == '"' and at_start:
            inside = True
        at_start = False
        i += 1
    if inside:
        at_start = False
    return _Scan(inside, at_start, fields)


class CsvConnector(TextSource):
    """A delimited text file with a header line."""

    kind = "CSV"

    def __init__(self, path: Path, *, delimiter: str = ",", **options: Any) -> None:
        super().__init__(path, **options)
        self.delimiter = delimiter

    def read(self) -> Iterator[pa.RecordBatch]:
        encoding = self.resolved_encoding()
        codec = codec_for(encoding)
        blocks = read_raw_blocks(self.path, self.block_bytes)
        header: list[str] | None = None
        for data in blocks:
            header, data = self._header(data, codec, encoding)
            if header is not None:
                break
        if header is None:
            return
        head = header
        # The next block is transcoded in a thread of its own (the codec holds the GIL)
        # while this one is parsed (Arrow does not) and its batches are used.
        prepared = _ahead(
            lambda block: (block, self._prepare(block, head, codec)),
            itertools.chain([data], blocks),
        )
        pending = LineBlock(pa.array([], pa.string()))  # a record still inside a quoted field
        next_row = 1
        for block, utf8 in prepared:
            pieces = [(block, utf8, True)]  # (bytes, transcoded, may be split), reversed
            while pieces:
                piece, ready, whole = pieces.pop()
                if not piece:
                    continue
                if not len(pending.lines):
                    table = self._parse_plain(ready, header, codec) if ready else None
                    if table is not None:
                        for part in table.to_batches(max_chunksize=self.batch_rows):
                            yield self._plain_batch(part, header, next_row)
                            next_row += part.num_rows
                        continue
                    if whole and len(piece) > PIECE_BYTES:
                        # Something in the block needs a closer look: only the pieces of it
                        # that do take the careful path below.
                        split = _split_lines(piece, PIECE_BYTES)
                        pieces.extend(
                            (part, self._prepare(part, header, codec), False)
                            for part in reversed(split)
                        )
                        continue
                records, pending = self._records(pending, decode_block(piece, codec))
                for start in range(0, len(records.text), self.batch_rows):
                    part = records.slice(start, self.batch_rows)
                    yield self._batch(part, header, next_row)
                    next_row += len(part.text)
        if len(pending.lines):
            # The file ended inside a quoted field: one last, malformed record.
            text = "\n".join(pending.lines.to_pylist())
            why = "quote: the file ends inside a quoted field"
            tail = _Records(pa.array([text]), np.array([len(header)]), {0: why}, {0: text})
            yield self._batch(tail, header, next_row)

    def _header(self, data: bytes, codec: str, encoding: str) -> tuple[list[str] | None, bytes]:
        """The header (after any blank lines) and the bytes after it; None if all blank."""
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            try:
                line = data[start:end].decode(codec)
            except UnicodeDecodeError:
                raise SourceUnreadable(
                    f"{self.path}: the header line is not valid {encoding}"
                ) from None
            start = end
            if not line.strip():
                continue  # blank lines before the header
            line = line.removesuffix("\n").removesuffix("\r")
            header = next(csv.reader([line], delimiter=self.delimiter))
            if len(set(header)) != len(header) or not all(header):
                raise SourceUnreadable(f"{self.path}: the header has empty or repeated names")
            return header, data[start:]
        return None, b""

    def _prepare(self, data: bytes, header: list[str], codec: str) -> bytes | None:
        """The fast path, first half: whole lines as UTF-8 with a closing record, or None
        when they need the careful path.

        The fast path is for blocks as exports almost always are: every byte decodes, no CR
        stands alone, every record has the header's number of fields and ends in the block.
        Anything else (an undecodable row, a wrong field count, a lone CR, a quoted value
        running on past the block) makes this or `_parse_plain` return None, and the careful
        path finds and explains it. Records are the same either way: a quote opens a quoted
        field only at the start of a field in Arrow's parser as in `_scan`, and Arrow parses
        the values of both.
        """
        width = len(header)
        if width < 2 or not data:
            return None  # the end-of-block check needs a delimiter
        if _lone_cr(data):
            return None  # a CR that ends no line: the careful path decides what it is
        # A last record of empty fields: a record of its own if every quote before it was
        # closed, else swallowed by the quoted value left open.
        ending = (b"" if data.endswith(b"\n") else b"\n") + self.delimiter.encode() * (width - 1)
        if codec == "utf-8":
            return data + ending + b"\n"  # Arrow checks that it is UTF-8
        try:
            return _transcode(data, codec, ending + b"\n")
        except UnicodeDecodeError:
            return None

    def _parse_plain(self, utf8: bytes, header: list[str], codec: str) -> pa.Table | None:
        """The fast path, second half: Arrow parses the lines in one go; the closing record
        must come back as a record of its own."""
        try:
            table = pacsv.read_csv(
                pa.BufferReader(utf8),
                read_options=pacsv.ReadOptions(
                    column_names=header, use_threads=False, block_size=min(len(utf8), 1 << 30)
                ),
                parse_options=self._parse_options(),
                # What Python encoded is UTF-8: only bytes read as they are need checking.
                convert_options=_convert_options(header, check_utf8=codec == "utf-8"),
            )
        except pa.ArrowInvalid:
            return None  # a wrong number of fields, or bytes that are not UTF-8
        last = table.num_rows - 1
        if last < 0 or any(column[last].is_valid for column in table.columns):
            return None
        return table.slice(0, last)

    def _plain_batch(
        self, part: pa.RecordBatch, header: list[str], first_row: int
    ) -> pa.RecordBatch:
        size = part.num_rows
        fields = [mark(pa.field(name, pa.string()), TEXT) for name in header]
        rows = pa.array(np.arange(first_row, first_row + size), pa.int64())
        nothing = pa.nulls(size, pa.string())
        return batch(rows, nothing, nothing, fields, part.columns)

    def _parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)

    def _records(self, pending: LineBlock, block: LineBlock) -> tuple[_Records, LineBlock]:
        """Group lines into records; returns the records and the lines of an unfinished one."""
        offset = len(pending.lines)
        lines = pa.concat_arrays([pending.lines, block.lines]) if offset else block.lines
        bad = {**pending.bad, **{i + offset: why for i, why in block.bad.items()}}
        raw = {**pending.raw, **{i + offset: text for i, text in block.raw.items()}}
        # Blocks normalised differently cannot share a record: keep the CRs of both then.
        line_end = block.line_end if not offset or pending.line_end == block.line_end else None
        counts = pc.add(pc.count_substring(lines, self.delimiter), 1).to_numpy().copy()
        keep = np.ones(len(lines), dtype=bool)
        blank = pc.equal(lines, "")
        if line_end is None:
            blank = pc.or_(blank, pc.equal(lines, "\r"))
        keep[blank.to_numpy(zero_copy_only=False)] = False  # a blank line is no record
        keep[list(bad)] = True
        joined: dict[int, str] = {}
        quoted = pc.match_substring(lines, '"').to_numpy(zero_copy_only=False)
        consumed = -1
        for first in np.flatnonzero(quoted).tolist():
            if first <= consumed or first in bad:
                continue
            state = _scan(lines[first].as_py(), self.delimiter, _Scan())
            last = first
            while state.inside and last + 1 < len(lines):
                last += 1
                # An undecodable line inside a quoted value: the whole record is the problem.
                text = "" if last in bad else lines[last].as_py()
                state = _scan(text, self.delimiter, _Scan(True, False, state.fields))
            if state.inside:  # the record goes on in the next block
                rest = range(first, len(lines))
                leftover = LineBlock(
                    pa.array([lines[i].as_py() for i in rest], pa.string()),
                    {i - first: bad[i] for i in rest if i in bad},
                    {i - first: raw[i] for i in rest if i in bad},
                    line_end,
                    block.lone_cr,
                )
                keep[first:] = False
                records = self._collect(lines, keep, counts, joined, bad, raw, line_end)
                records.may_hold_cr = line_end is None or block.lone_cr or pending.lone_cr
                return records, leftover
            counts[first] = state.fields
            if last > first:
                parts = [raw[i] if i in bad else lines[i].as_py() for i in range(first, last + 1)]
                joined[first] = (line_end or "\n").join(parts)
                damaged = [i for i in range(first + 1, last + 1) if i in bad]
                if damaged:
                    bad[first], raw[first] = bad[damaged[0]], joined[first]
                keep[first + 1 : last + 1] = False
                consumed = last
        records = self._collect(lines, keep, counts, joined, bad, raw, line_end)
        records.may_hold_cr = line_end is None or block.lone_cr or pending.lone_cr
        return records, LineBlock(pa.array([], pa.string()))

    def _collect(
        self,
        lines: pa.Array,
        keep: np.ndarray,
        counts: np.ndarray,
        joined: dict[int, str],
        bad: dict[int, str],
        raw: dict[int, str],
        line_end: str | None,
    ) -> _Records:
        indices = np.flatnonzero(keep)
        text = pc.take(lines, pa.array(indices))
        if joined:
            mask = np.isin(indices, np.fromiter(joined, dtype=np.int64))
            values = pa.array([joined[i] for i in indices[mask].tolist()], pa.string())
            text = pc.replace_with_mask(text, pa.array(mask), values)
        if line_end is None:
            # Mixed line ends: one final CR is a record's terminator, not its content.
            text = pc.replace_substring_regex(text, "\r$", "")
        problems: dict[int, str] = {}
        raws: dict[int, str] = {}
        for line, why in bad.items():
            k = int(np.searchsorted(indices, line))
            if k < len(indices) and indices[k] == line:
                problems[k], raws[k] = why, raw[line]
        return _Records(text, counts[indices], problems, raws)

    def _batch(self, records: _Records, header: list[str], first_row: int) -> pa.RecordBatch:
        width = len(header)
        size = len(records.text)
        problems, raw = dict(records.problems), dict(records.raw)
        misfit = np.flatnonzero(records.fields != width).tolist()
        for k in misfit:
            if k not in problems:
                problems[k] = f"fields: expected {width}, found {records.fields[k]}"
                raw[k] = records.text[k].as_py()
        good = np.ones(size, dtype=bool)
        good[list(problems)] = False
        parsed = self._parse(pc.filter(records.text, pa.array(good)), header, records.may_hold_cr)
        where = np.cumsum(good) - 1
        index = pa.array(where, mask=~good)
        fields = [mark(pa.field(name, pa.string()), TEXT) for name in header]
        columns = [pc.take(parsed.column(name), index).combine_chunks() for name in header]
        rows = pa.array(np.arange(first_row, first_row + size), pa.int64())
        return batch(rows, _sparse(problems, size), _sparse(raw, size), fields, columns)

    def _parse(self, records: pa.Array, header: list[str], may_hold_cr: bool = True) -> pa.Table:
        if len(records) == 0:
            return pa.table({name: pa.array([], pa.string()) for name in header})
        # Arrow's parser ends a row at a lone CR too; here a record ends only at LF. So a CR
        # still in a record is hidden behind a character the batch does not hold, then restored.
        stand_in = None
        if may_hold_cr and pc.any(pc.match_substring(records, "\r")).as_py():
            stand_in = next(
                c for c in _STAND_INS if not pc.any(pc.match_substring(records, c)).as_py()
            )
            records = pc.replace_substring(records, "\r", stand_in)
        table = pacsv.read_csv(
            pa.BufferReader(_joined(records)),
            read_options=pacsv.ReadOptions(column_names=header, block_size=1 << 26),
            parse_options=self._parse_options(),
            convert_options=_convert_options(header),
        )
        if table.num_rows != len(records):  # our record boundaries and Arrow's must agree
            raise SourceUnreadable(f"{self.path}: CSV structure could not be parsed consistently")
        if stand_in is not None:
            restored = [pc.replace_substring(column, stand_in, "\r") for column in table.columns]
            table = pa.table(restored, names=table.column_names)
        return table


def _convert_options(header: list[str], *, check_utf8: bool = True) -> pacsv.ConvertOptions:
    """Every column as text; an empty field, quoted or not, is a null."""
    return pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        null_values=[""],
        check_utf8=check_utf8,
    )


def _split_lines(data: bytes, size: int) -> list[bytes]:
    """Whole lines of `data` in pieces of about `size` bytes, in order."""
    pieces = []
    start = 0
    while start < len(data):
        cut = data.find(b"\n", min(start + size, len(data)) - 1)
        end = len(data) if cut < 0 else cut + 1
        pieces.append(data[start:end])
        start = end
    return pieces


TRANSCODE_BYTES = 1 << 20


def _transcode(data: bytes, codec: str, suffix: bytes) -> bytes:
    """`data` (whole lines) decoded and encoded as UTF-8, then `suffix`, a piece at a time:
    a codec holds the GIL for the length of its call, and shorter calls let other threads
    in between."""
    whole, parts, start = memoryview(data), [], 0
    while start < len(data):
        cut = data.find(b"\n", min(start + TRANSCODE_BYTES, len(data)) - 1)
        end = len(data) if cut < 0 else cut + 1
        parts.append(str(whole[start:end], codec).encode())
        start = end
    parts.append(suffix)
    return b"".join(parts)


def _lone_cr(data: bytes) -> bool:
    """Whether a CR in `data` is not followed by LF (looked for a megabyte at a time, so
    no temporary array is the size of the block)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    for start in range(0, len(codes), 1 << 20):
        after = np.flatnonzero(codes[start : start + (1 << 20)] == 13) + (start + 1)
        if len(after) and (after[-1] == len(codes) or bool((codes[after] != 10).any())):
            return True
    return False


_T = TypeVar("_T")
_U = TypeVar("_U")


def _ahead(work: Callable[[_T], _U], items: Iterable[_T]) -> Iterator[_U]:
    """`work` on each item, in order, in a thread of its own one item ahead of the caller.

    An exception in the thread is raised here; a caller that stops early stops the thread.
    """
    done: Queue[tuple[bool, Any]] = Queue(maxsize=1)
    stop = threading.Event()

    def hand(result: tuple[bool, Any]) -> bool:
        """Queue a result unless the caller has stopped; whether it was queued."""
        while not stop.is_set():
            try:
                done.put(result, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not hand((True, work(item))):
                    return
        except BaseException as problem:  # handed to the caller, raised there
            hand((False, problem))
            return
        hand((False, None))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        while True:
            ok, value = done.get()
            if not ok:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()


# Private-use characters, one of which is surely absent from any batch.
_STAND_INS = tuple(chr(c) for c in range(0xE000, 0xE100))


def _joined(records: pa.Array) -> pa.Buffer:
    """The records as one UTF-8 buffer, a line each, without a round trip through Python."""
    values = pa.concat_arrays([records.cast(pa.large_string())])
    lists = pa.LargeListArray.from_arrays(pa.array([0, len(values)], pa.int64()), values)
    text = pc.binary_join(lists, pa.scalar("\n", pa.large_string()))
    body = text.buffers()[2]
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[:2]
    return pa.py_buffer(body[int(offsets[0]) : int(offsets[1])].to_pybytes() + b"\n")


def _sparse(values: dict[int, str], size: int) -> pa.Array:
    if not values:
        return pa.nulls(size, pa.string())
    dense: list[str | None] = [None] * size
    for k, v in values.items():
        dense[k] = v
    return pa.array(dense, pa.string())


@dataclass
class _Records:
    text: pa.Array
    fields: np.ndarray
    problems: dict[int, str]  # record index -> why it could not be read
    raw: dict[int, str]
    may_hold_cr: bool = True  # a CR may still be inside a record (see `_parse`)

    def slice(self, start: int, length: int) -> _Records:
        end = min(start + length, len(self.text))

        def part(d: dict[int, str]) -> dict[int, str]:
            return {k - start: v for k, v in d.items() if start <= k < end}

        return _Records(
            self.text.slice(start, end - start),
            self.fields[start:end],
            part(self.problems),
            part(self.raw),
            self.may_hold_cr,
        )
