"""Reading a member export that arrives as a zip (Garmin, Health Connect), at bounded cost.

A zip states each member's uncompressed size, but the statement is not to be trusted (a
zip bomb states a small size and inflates to gigabytes): every read here stops one byte
past its limit and refuses the member, naming the archive, the member and the limit."""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from backend.ingest.model import FormatError

_CHUNK = 1024 * 1024
# What zipfile raises for a damaged archive: a bad CRC or header, a name that differs
# between directory and header, an unknown compression method, an offset out of range.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError)


def open_zip(source: Path | BinaryIO, name: str, what: str) -> zipfile.ZipFile:
    """The archive, or one line saying that `name` is not the zip `what` comes as."""
    try:
        return zipfile.ZipFile(source)
    except _DAMAGED as err:
        raise FormatError(f"not a zip archive ({err}): expected {what}", name) from err


class _Bounded:
    """A zip member as a stream, refused once it inflates past its limit."""

    def __init__(self, member: IO[bytes], where: str, limit: int) -> None:
        self._member, self._where, self._limit = member, where, limit
        self._read = 0

    def read(self, size: int = -1, /) -> bytes:
        try:
            chunk = self._member.read(size)
        except _DAMAGED as err:
            raise _damaged(err, self._where) from err
        self._read += len(chunk)
        if self._read > self._limit:
            raise _too_large(self._where, self._limit)
        return chunk


@contextlib.contextmanager
def open_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, limit: int
) -> Iterator[_Bounded]:
    """The member as a stream of at most `limit` bytes, for parsers that read as they go."""
    _check_stated(info, where, limit)
    with _open(archive, info, where) as member:
        yield _Bounded(member, where, limit)


def _open(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> IO[bytes]:
    try:
        return archive.open(info)
    except _DAMAGED as err:
        raise _damaged(err, where) from err


def _damaged(err: Exception, where: str) -> FormatError:
    return FormatError(f"damaged zip member ({type(err).__name__}: {err})"[:300], where)


def copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: IO[bytes], where: str, limit: int
) -> int:
    """Copy the member into `target` in 1 MiB chunks; refused past `limit` bytes."""
    _check_stated(info, where, limit)
    with open_member(archive, info, where, limit) as member:
        return copy_stream(member, target, where, limit)


def copy_stream(source: BinaryIO | _Bounded, target: IO[bytes], where: str, limit: int) -> int:
    """The same bound for an input that is the file itself rather than a zip."""
    copied = 0
    while chunk := source.read(_CHUNK):
        copied += len(chunk)
        if copied > limit:
            raise _too_large(where, limit)
        target.write(chunk)
    return copied


def _check_stated(info: zipfile.ZipInfo, where: str, limit: int) -> None:
    if info.file_size > limit:
        raise _too_large(where, limit)


def _too_large(where: str, limit: int) -> FormatError:
    return FormatError(
        f"larger than {limit:,} bytes uncompressed: refused (no real export holds one;"
        " a zip bomb does)",
        where,
    )
