"""Text files read as decoded lines, block by block, in bounded memory.

Decoding uses Python's codecs with `surrogateescape`, so a line that does not decode never
stops the read: it is reported with its bytes, and the lines around it are unharmed.
The encoding is named, or detected: a UTF-8 byte-order mark; else UTF-8 if a sample
decodes as UTF-8; else whichever of UTF-8 and GB18030 (a superset of GBK and GB2312) more
of the sample's non-ASCII lines are valid in — counting for GB18030 only lines that are
not also valid UTF-8, since UTF-8 Chinese with even-length runs decodes as GB18030 too,
while multi-byte UTF-8 almost never happens by chance.

Lines end at LF; a CR before it stays on the line, for the reader of the format to judge
(a CSV record's terminator, or part of a quoted value).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import DEFAULT_BATCH_ROWS
from connectors.errors import SourceUnreadable

UTF8_BOM = codecs.BOM_UTF8
DETECT_SAMPLE_BYTES = 1 << 20
_ESCAPED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of undecodable bytes


@dataclass
class LineBlock:
    """Consecutive lines of a file; `bad` maps a line's index here to why it did not decode."""

    lines: pa.Array  # UTF-8 strings, without the LF; a bad line is ""
    bad: dict[int, str] = field(default_factory=dict)
    raw: dict[int, str] = field(default_factory=dict)  # the bad lines, decoded for display
    # How this block's lines ended: "\r\n" (the CRs are already gone from `lines`), "\n",
    # or None when it mixes the two (each line keeps its CR).
    line_end: str | None = "\n"
    lone_cr: bool = False  # a CR that does not end a line is somewhere in the block


def detect_encoding(path: Path) -> str:
    """The file's encoding: "utf-8-sig", "utf-8" or "gb18030"."""
    with path.open("rb") as handle:
        sample = handle.read(DETECT_SAMPLE_BYTES)
    if sample.startswith(UTF8_BOM):
        return "utf-8-sig"
    if len(sample) == DETECT_SAMPLE_BYTES:
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    utf8 = gb18030 = 0
    for line in sample.split(b"\n"):
        if line.isascii():
            continue
        if _decodes(line, "utf-8"):
            utf8 += 1
        elif _decodes(line, "gb18030"):
            gb18030 += 1
    return "gb18030" if gb18030 > utf8 else "utf-8"


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def codec_for(encoding: str) -> str:
    """The codec that decodes a file's lines; a BOM is handled when the file is opened."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise SourceUnreadable(f"unknown encoding {encoding!r}") from None
    return "utf-8" if name == "utf-8-sig" else name


def read_blocks(path: Path, encoding: str, block_bytes: int = 16 << 20) -> Iterator[LineBlock]:
    """The file's lines (without line ends), a block at a time."""
    codec = codec_for(encoding)
    for data in read_raw_blocks(path, block_bytes):
        yield decode_block(data, codec)


def read_raw_blocks(path: Path, block_bytes: int = 16 << 20) -> Iterator[bytes]:
    """The file's bytes after any UTF-8 byte-order mark, cut after a LF: whole lines.

    Every block but the last ends with LF; a line longer than a block makes its block
    longer. CR and LF never occur inside a multi-byte GB18030 or UTF-8 character, so a
    block decodes on its own.
    """
    try:
        handle = path.open("rb")
    except OSError as problem:
        raise SourceUnreadable(f"cannot open {path}: {problem.strerror}") from problem
    with handle:
        if handle.read(len(UTF8_BOM)) != UTF8_BOM:
            handle.seek(0)
        while chunk := handle.read(block_bytes):
            if not chunk.endswith(b"\n"):
                chunk += handle.readline()  # the rest of the last line (all of a long one)
            yield chunk


def decode_block(data: bytes, codec: str) -> LineBlock:
    """Whole lines of bytes as a LineBlock: each line decoded, or marked bad with its bytes."""
    # Where every line ends in CR LF, drop the CRs on the bytes (memory speed; CR and LF
    # never occur inside a multi-byte GB18030 or UTF-8 character); a reader re-joining a
    # multi-line record uses `line_end`, so a CR LF inside a quoted value is kept.
    breaks, crlf, cr = data.count(b"\n"), data.count(b"\r\n"), data.count(b"\r")
    line_end: str | None = "\n"
    if crlf and crlf == breaks:
        data, line_end = data.replace(b"\r\n", b"\n"), "\r\n"
    elif crlf:
        line_end = None
    text = data.decode(codec, "surrogateescape")
    bad: dict[int, str] = {}
    raw: dict[int, str] = {}
    line, scanned = 0, 0
    for found in _ESCAPED.finditer(text):  # one pass over the text, not a search per line
        line += text.count("\n", scanned, found.start())
        scanned = found.start()
        if line not in bad:
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.start())
            original = text[start : end if end >= 0 else len(text)].encode(codec, "surrogateescape")
            bad[line] = f"encoding: bytes that are not valid {codec}"
            raw[line] = original.decode(codec, "replace")
    utf8 = text.encode("utf-8", "replace") if bad else (data if codec == "utf-8" else text.encode())
    whole = pa.array([utf8], pa.large_binary()).cast(pa.large_string())
    lines = pc.list_flatten(pc.split_pattern(whole, "\n"))
    if len(lines) and utf8.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    lines = lines.cast(pa.string())
    if bad:
        mask = np.zeros(len(lines), dtype=bool)
        mask[list(bad)] = True
        lines = pc.if_else(pa.array(mask), "", lines)
    return LineBlock(lines, bad, raw, line_end, lone_cr=cr > crlf)


class TextSource:
    """What every text-file connector shares: a path, an encoding (or detection), blocks."""

    kind = "text"

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        encoding: str = "auto",
        batch_rows: int = DEFAULT_BATCH_ROWS,
        block_bytes: int = 16 << 20,
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self.encoding = encoding
        self.batch_rows = batch_rows
        self.block_bytes = block_bytes

    def resolved_encoding(self) -> str:
        if self.encoding != "auto":
            return self.encoding
        try:
            return detect_encoding(self.path)
        except OSError as problem:
            raise SourceUnreadable(f"cannot open {self.path}: {problem.strerror}") from problem

    def describe(self) -> str:
        return f"{self.kind} {self.path.name} ({self.resolved_encoding()})"
