"""The elements of one top-level JSON array, read one at a time from a byte stream.

Exports such as Fitbit's write each day of one-second heart rate as one array of ~86,000
small objects (6 MB and more); reading the whole file into Python objects would cost ten
times that. This reads a block, decodes the elements it holds with the standard
library's C scanner (`raw_decode`) and keeps only the unfinished tail, so memory is one
block plus one element. An element longer than `max_element` characters is refused
(bounded cost per input): no export record is that large.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Protocol

from backend.ingest.model import FormatError

BLOCK = 256 * 1024
_WHITESPACE = " \t\n\r"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def array_elements(
    source: Readable, where: str, *, max_element: int = 1024 * 1024
) -> Iterator[object]:
    """Each element of the array `source` holds, in order. `where` names the file in
    errors, which also give the element's index."""
    reader = _Blocks(source, where)
    decode = json.JSONDecoder().raw_decode
    buf, pos = reader.first()
    if pos >= len(buf) or buf[pos] != "[":
        found = repr(buf[pos : pos + 20]) if pos < len(buf) else "nothing"
        raise FormatError(f"expected a JSON array, found {found}", where)
    pos += 1
    index = 0
    while True:
        buf, pos = reader.skip_space(buf, pos)
        if pos >= len(buf):
            raise FormatError("the array ends early (truncated?)", f"{where}[{index}]")
        if buf[pos] == "]":
            reader.expect_end(buf, pos + 1)
            return
        if index:
            if buf[pos] != ",":
                raise FormatError(f"expected ',' or ']', found {buf[pos]!r}", f"{where}[{index}]")
            buf, pos = reader.skip_space(buf, pos + 1)
        while True:
            try:
                element, end = decode(buf, pos)
            except json.JSONDecodeError as err:
                if reader.done or len(buf) - pos > max_element:
                    raise _unreadable(err, buf, pos, max_element, f"{where}[{index}]") from err
                buf, pos = reader.more(buf, pos)
                continue
            if end == len(buf) and not reader.done and _may_continue(buf, pos):
                # A number at the end of the block may go on in the next one.
                buf, pos = reader.more(buf, pos)
                continue
            if end - pos > max_element:
                raise _too_long(max_element, f"{where}[{index}]")
            break
        yield element
        pos = end
        index += 1


def _may_continue(buf: str, pos: int) -> bool:
    return buf[pos] not in '{["tfn'


def _unreadable(
    err: json.JSONDecodeError, buf: str, pos: int, max_element: int, where: str
) -> FormatError:
    if len(buf) - pos > max_element:
        return _too_long(max_element, where)
    return FormatError(f"not readable as JSON: {err.msg}", where)


def _too_long(max_element: int, where: str) -> FormatError:
    return FormatError(
        f"an element longer than {max_element:,} characters: refused "
        "(no export record is this large)",
        where,
    )


class _Blocks:
    """The text of the stream, a block at a time, with what is not yet decoded."""

    def __init__(self, source: Readable, where: str) -> None:
        self._source = source
        self._where = where
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self.done = False

    def _read(self) -> str:
        chunk = self._source.read(BLOCK)
        try:
            if not chunk:
                self.done = True
                return self._decoder.decode(b"", final=True)
            return self._decoder.decode(chunk)
        except UnicodeDecodeError as err:
            raise FormatError(f"not UTF-8 ({err.reason})", self._where) from err

    def first(self) -> tuple[str, int]:
        return self.skip_space("", 0)

    def more(self, buf: str, pos: int) -> tuple[str, int]:
        """The undecoded tail of `buf` with the next block after it."""
        return buf[pos:] + self._read(), 0

    def skip_space(self, buf: str, pos: int) -> tuple[str, int]:
        while True:
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            if pos < len(buf) or self.done:
                return buf, pos
            buf, pos = self._read(), 0

    def expect_end(self, buf: str, pos: int) -> None:
        buf, pos = self.skip_space(buf, pos)
        if pos < len(buf):
            raise FormatError(f"text after the array: {buf[pos : pos + 20]!r}", self._where)
