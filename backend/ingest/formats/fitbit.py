"""Fitbit account export: the zip a member downloads (fitbit.com "Export your account
archive", or Google Takeout's Fitbit part), or its folder zipped by `rejuve ingest`.

The archive is read member by member, in name order, without extracting it; files are
recognised by their names wherever they sit (`MyFitbitData/<name>/Physical Activity/`,
`Takeout/Fitbit/Global Export Data/`, ...):

- `Global Export Data` JSON (`fitbit_json`): heart_rate-, steps-, distance-, calories-,
  resting_heart_rate- and sleep-YYYY-MM-DD.json;
- CSV (`fitbit_csv`): `Heart Rate Variability Details - *.csv`, `Daily Heart Rate
  Variability Summary - *.csv`, `Minute SpO2 - *.csv`, `Daily SpO2 - *.csv`, and Google
  Takeout's `Physical Activity_GoogleData` tree (heart_rate_*.csv, steps_*.csv, ...,
  daily_resting_heart_rate.csv). Where that tree holds a stream, it supersedes the JSON
  twin (the same samples, with the device named): the JSON files of that stream are
  counted unmapped, not read twice.

Which times are local: see `fitbit_json` and `fitbit_csv`; local ones are read in the
member's zone (`options["tz"]`, see `local_clock`). Every other file is counted in
`report.unmapped` under its stream name (`altitude (file)`), unread.

What one archive may cost: at most MAX_MEMBERS files, each at most MAX_MEMBER_BYTES
uncompressed and compressed no more than MAX_RATIO to 1 (a zip bomb is refused before a
byte of it is inflated); JSON elements are bounded by `json_stream`, CSV fields by the
csv module's limit.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any, BinaryIO

from backend.exceptions import UserError
from backend.ingest.formats import fitbit_csv, fitbit_json
from backend.ingest.formats.local_clock import zone
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

MAX_MEMBERS = 200_000
MAX_MEMBER_BYTES = 4 * 1024**3
MAX_RATIO = 1000

_DATED_JSON = re.compile(r"^(?P<stream>[a-z_]+)-\d{4}-\d{2}-\d{2}\.json$")
_GOOGLE_CSV = re.compile(r"^(?P<stream>[a-z_]+?)(?:_\d{4}-\d{2}-\d{2})?\.csv$")
_NAMED_CSV = re.compile(r"^(?P<stream>[A-Za-z0-9 ()]+?) - [0-9()-]+\.csv$")
_UNDATED = re.compile(r"[-_ ]*[0-9()-]*\.(json|csv)$")


@dataclass(frozen=True)
class _File:
    info: zipfile.ZipInfo
    stream: str  # the reader's key, or the unmapped name
    kind: str  # "json", "csv", "google-csv", "skip"


@dataclass
class _Plan:
    files: list[_File] = field(default_factory=list)
    google_streams: set[str] = field(default_factory=set)


def parse(
    data: BinaryIO,
    report: ParseReport,
    *,
    name: str = "fitbit.zip",
    options: Mapping[str, Any] | None = None,
) -> Iterator[Sample | Rejected]:
    """Stream the samples of a Fitbit export zip; `options["tz"]` is the member's zone."""
    tz_name = (options or {}).get("tz")
    if not isinstance(tz_name, str):
        raise FormatError("no time zone for the export's local times (--tz)", name)
    try:
        tz = zone(tz_name)
    except UserError as err:
        raise FormatError(str(err), name) from err
    try:
        archive = zipfile.ZipFile(data)
    except (zipfile.BadZipFile, OSError) as err:
        raise FormatError(
            f"not a zip archive ({err}): give the export's zip, or its folder", name
        ) from err
    with archive:
        plan = _plan(archive, name)
        state = fitbit_json.State(report, tz)
        for f in plan.files:
            where = f"{name}/{f.info.filename}"
            if f.kind == "skip":
                report.unmapped[f.stream] += 1
                continue
            if f.kind == "json" and f.stream in plan.google_streams:
                report.unmapped[f"{f.stream} json (superseded by its csv twin)"] += 1
                continue
            _check_size(f.info, where)
            try:
                with archive.open(f.info) as member:
                    yield from _read(f, member, where, state)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise FormatError(f"damaged zip member ({err})", where) from err


def _read(
    f: _File, member: IO[bytes], where: str, state: fitbit_json.State
) -> Iterator[Sample | Rejected]:
    if f.kind == "json":
        return fitbit_json.read(f.stream, member, where, state)
    if f.kind == "google-csv":
        return fitbit_csv.read_google(f.stream, member, where, state.report, state.tz)
    return fitbit_csv.read_named(f.stream, member, where, state.report, state.tz)


def _plan(archive: zipfile.ZipFile, where: str) -> _Plan:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise FormatError(f"more than {MAX_MEMBERS:,} files in the archive: refused", where)
    plan = _Plan()
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir():
            continue
        f = _classify(info)
        if f is None:
            continue
        plan.files.append(f)
        if f.kind == "google-csv":
            plan.google_streams.add(fitbit_csv.JSON_TWIN.get(f.stream, ""))
    if not any(f.kind != "skip" for f in plan.files):
        raise FormatError(
            "no Fitbit data files found (heart_rate-*.json, sleep-*.json, "
            "Minute SpO2 - *.csv, ...): is this a Fitbit export?",
            where,
        )
    return plan


def _classify(info: zipfile.ZipInfo) -> _File | None:
    base = PurePosixPath(info.filename).name
    if base.startswith("._"):  # macOS resource forks, added when re-zipped on a Mac
        return None
    if m := _DATED_JSON.match(base):
        stream = m.group("stream")
        if stream in fitbit_json.READERS:
            return _File(info, stream, "json")
        return _File(info, f"{stream} (file)", "skip")
    if m := _NAMED_CSV.match(base):
        stream = m.group("stream")
        if stream in fitbit_csv.NAMED:
            return _File(info, stream, "csv")
        return _File(info, f"{stream} (file)", "skip")
    if m := _GOOGLE_CSV.match(base):
        stream = m.group("stream")
        if stream in fitbit_csv.GOOGLE:
            return _File(info, stream, "google-csv")
        return _File(info, f"{stream} (file)", "skip")
    if base.endswith((".json", ".csv")):
        return _File(info, f"{_UNDATED.sub('', base) or base} (file)", "skip")
    return None


def _check_size(info: zipfile.ZipInfo, where: str) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise FormatError(
            f"{info.file_size:,} bytes uncompressed: over the {MAX_MEMBER_BYTES:,} a file "
            "may hold (no export file is this large)",
            where,
        )
    if info.file_size > 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise FormatError(
            f"compressed more than {MAX_RATIO}:1 ({info.compress_size:,} -> "
            f"{info.file_size:,} bytes): refused as a zip bomb",
            where,
        )
