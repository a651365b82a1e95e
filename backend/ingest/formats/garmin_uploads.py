"""The FIT files inside a Garmin Connect export: `DI_CONNECT/DI-Connect-Uploaded-Files/
UploadedFiles_<n>-_Part<n>.zip`, zips nested in the export holding every activity the
member's devices uploaded (`<account>_<activityId>.fit`, some `.tcx`/`.gpx`). They carry
what the JSON summaries do not: heart rate, cadence, speed and power at each second.

A nested zip can only be read from a seekable file, and seeking in a member of the outer
zip means inflating it again from its start, so each nested zip is copied to a temporary
file first (refused past `MAX_UPLOADS_BYTES`, removed when done).

A damaged FIT file among hundreds must not keep the whole export out, nor may it leave
half of itself in (backend.ingest.formats.fit refuses a damaged file whole). So each FIT
file is decoded twice: once to check it, keeping nothing, then to yield its samples.
A damaged one is counted in `report.unmapped` under its name and reason and skipped: it
is still in the raw zone with the export, and can be ingested alone once repaired. So
is a nested zip that cannot be read (damaged, or inflating past its limit)."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

from backend.ingest.formats import fit
from backend.ingest.formats.archive import copy_member, open_member, open_zip
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

FOLDER = "DI-Connect-Uploaded-Files"
MAX_UPLOADS_BYTES = 8 * 1024**3  # one nested zip, as copied out
MAX_FIT_BYTES = 256 * 1024**2  # one FIT file: a day-long ride at 1 s is ~10 MB


def is_uploads(path: PurePosixPath) -> bool:
    return path.parent.name == FOLDER and path.suffix.lower() == ".zip"


def fit_files(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    where: str,
    report: ParseReport,
    fold: Callable[[str], str],
) -> Iterator[Sample | Rejected]:
    """The samples of every sound FIT file in the nested zip `info`; `fold` takes the
    account's name out of a file name."""
    with tempfile.TemporaryFile(prefix="rejuve-garmin-") as copy:
        try:
            copy_member(archive, info, copy, where, MAX_UPLOADS_BYTES)
            copy.seek(0)
            uploads = open_zip(copy, where, "a zip of uploaded activity files")
        except FormatError as err:
            # Like a damaged FIT file: the rest of the export still goes in.
            report.unmapped[f"garmin uploads zip skipped: {err}"] += 1
            return
        with uploads:
            for inner in sorted(uploads.infolist(), key=lambda i: i.filename):
                if inner.is_dir():
                    continue
                name = PurePosixPath(inner.filename).name
                place = f"{where}/{fold(name)}"
                if not name.lower().endswith(".fit"):
                    suffix = PurePosixPath(name).suffix.lower() or "(no suffix)"
                    report.unmapped[f"garmin uploaded file {suffix}"] += 1
                    continue
                problem = _problem(uploads, inner, place)
                if problem is not None:
                    report.unmapped[f"garmin uploaded FIT file skipped: {problem}"] += 1
                    continue
                with open_member(uploads, inner, place, MAX_FIT_BYTES) as stream:
                    yield from fit.parse(stream, report, name=place)  # type: ignore[arg-type]


def _problem(uploads: zipfile.ZipFile, inner: zipfile.ZipInfo, place: str) -> str | None:
    """None for a sound FIT file, else the refusal's one line (file, offset, reason)."""
    try:
        with open_member(uploads, inner, place, MAX_FIT_BYTES) as stream:
            for _ in fit.parse(stream, ParseReport(), name=place):  # type: ignore[arg-type]
                pass
    except FormatError as err:
        return str(err)
    return None
