"""A folder as one batch: the unpacked export a member gives instead of its zip.

Raw payloads are landed as received, so a folder is landed as a zip of itself, made the
same way every time (files in path order, fixed dates and permissions, one compression
level): the same folder gives the same bytes, so ingesting it again is all duplicates,
and the batch's digest names its content. Files are streamed in, never read whole.
Symbolic links are refused: an export holds none, and one could point anywhere."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from backend.exceptions import UserError
from backend.ingest.formats.registry import get as get_format

_DATE = (1980, 1, 1, 0, 0, 0)
MAX_FILES = 200_000


def zip_folder(folder: Path, dest: Path) -> Path:
    """Write `folder`'s files into the zip `dest` (names relative to `folder`)."""
    files: list[tuple[str, Path]] = []
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise UserError(f"{path}: a symbolic link in the folder; give the export itself")
        if path.is_file():
            files.append((path.relative_to(folder).as_posix(), path))
        if len(files) > MAX_FILES:
            raise UserError(f"{folder}: more than {MAX_FILES:,} files; is this an export?")
    if not files:
        raise UserError(f"{folder}: the folder holds no files")
    files.sort()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with path.open("rb") as src, archive.open(info, "w", force_zip64=True) as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
    return dest


@contextlib.contextmanager
def as_file(path: Path, fmt: str) -> Iterator[Path]:
    """`path` itself, or for a folder of a format that takes folders, its zip (in a
    temporary directory removed afterwards) named after the folder."""
    if not path.is_dir():
        yield path
        return
    if not get_format(fmt).folders:
        raise UserError(f"{path} is a folder; {fmt} takes a file")
    with tempfile.TemporaryDirectory(prefix="rejuve-folder-") as tmp:
        yield zip_folder(path, Path(tmp) / f"{path.resolve().name}.zip")
