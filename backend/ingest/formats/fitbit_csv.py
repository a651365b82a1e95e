"""Fitbit's CSV files: the health-metric folders and Google Takeout's
`Physical Activity_GoogleData` tree. Streamed row by row (`csv` over the zip member).

Named files (the member's wall clock, no offset: read in the member's zone):

    Heart Rate Variability Details - 2024-05-01.csv   timestamp,rmssd,coverage,
                                                      low_frequency,high_frequency  (5 min)
    Daily Heart Rate Variability Summary - *.csv      timestamp,rmssd,nremhr,entropy
    Minute SpO2 - 2024-05-01.csv                      timestamp,value
    Daily SpO2 - *.csv                                timestamp,average_value,
                                                      lower_bound,upper_bound

with timestamps such as `2024-05-01T03:12:00`. Google Takeout's tree writes UTC in ISO
8601 and names the recording device in a `data source` column (one `*_readme.txt` per
stream gives the columns): `heart_rate_2024-05-01.csv` (timestamp,beats per minute,data
source), steps_, distance_ (metres), calories_, oxygen_saturation_,
heart_rate_variability_ (timestamp,root mean square of successive differences
milliseconds,standard deviation milliseconds,data source), daily_resting_heart_rate.csv.
A value column is found by its name, or as the one column besides the time and the
source. `estimated_oxygen_variation-*.csv` is an infrared-to-red signal ratio, not an
oxygen saturation: it is counted unmapped, not stored as SpO2.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from zoneinfo import ZoneInfo

from backend.ingest.formats.fitbit_json import SOURCE, Bad, NoData, number, sample
from backend.ingest.formats.local_clock import LocalClock
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

_TIME = "timestamp"
_DEVICE = "data source"
# Fitbit's rows are under 200 bytes; a "line" of a megabyte is not one of its files, and
# reading it whole would let one input cost any amount of memory.
MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Stream:
    code: str
    unit: str
    columns: tuple[str, ...]  # the value column's names, most likely first
    qualifier: str | None = None
    daily: bool = False  # one row a day: the sample spans the member's local day


NAMED: dict[str, Stream] = {
    "Heart Rate Variability Details": Stream("x-rejuve:hrv-rmssd", "ms", ("rmssd",)),
    "Daily Heart Rate Variability Summary": Stream(
        "x-rejuve:hrv-rmssd", "ms", ("rmssd",), "daily", daily=True
    ),
    "Minute SpO2": Stream("59408-5", "%", ("value",)),
    "Daily SpO2": Stream("59408-5", "%", ("average_value",), "daily_average", daily=True),
}

GOOGLE: dict[str, Stream] = {
    "heart_rate": Stream("8867-4", "/min", ("beats per minute",)),
    "steps": Stream("55423-8", "{steps}", ("steps",)),
    "distance": Stream("x-rejuve:distance", "m", ("distance", "meters", "distance meters")),
    "calories": Stream("x-rejuve:total-energy", "kcal", ("calories", "kcal")),
    "oxygen_saturation": Stream("59408-5", "%", ("oxygen saturation percentage", "percentage")),
    "heart_rate_variability": Stream(
        "x-rejuve:hrv-rmssd", "ms", ("root mean square of successive differences milliseconds",)
    ),
    "daily_resting_heart_rate": Stream("40443-4", "/min", ("beats per minute",), daily=True),
}

# The Global Export Data stream a Google Takeout CSV stream supersedes.
JSON_TWIN: dict[str, str] = {
    "heart_rate": "heart_rate",
    "steps": "steps",
    "distance": "distance",
    "calories": "calories",
    "daily_resting_heart_rate": "resting_heart_rate",
}


def read_named(
    stream: str, member: IO[bytes], where: str, report: ParseReport, tz: ZoneInfo
) -> Iterator[Sample | Rejected]:
    return _rows(NAMED[stream], stream, member, where, report, tz, local=True)


def read_google(
    stream: str, member: IO[bytes], where: str, report: ParseReport, tz: ZoneInfo
) -> Iterator[Sample | Rejected]:
    return _rows(GOOGLE[stream], stream, member, where, report, tz, local=False)


def _rows(
    spec: Stream,
    stream: str,
    member: IO[bytes],
    where: str,
    report: ParseReport,
    tz: ZoneInfo,
    *,
    local: bool,
) -> Iterator[Sample | Rejected]:
    bounded = io.BufferedReader(_LineBound(member, where), 64 * 1024)
    text = io.TextIOWrapper(bounded, encoding="utf-8-sig", newline="")
    rows = csv.reader(text)
    try:
        header = [h.strip().lower() for h in next(rows, [])]
        if not header:
            return
        time_at, value_at, device_at = _columns(spec, header, f"{where} line 1")
        clock = LocalClock(tz)
        for row in rows:
            line = rows.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            report.read += 1
            locator = f"{where} line {line}"
            record = dict(zip(header, row, strict=False))
            try:
                yield _row(spec, row, time_at, value_at, device_at, locator, clock, local)
            except NoData:
                report.unmapped[f"no data: {stream}"] += 1
            except Bad as err:
                yield Rejected(err.reason, err.key, err.detail, locator, dict(record))
    except csv.Error as err:
        raise FormatError(f"not readable as CSV ({err})", f"{where} line {rows.line_num}") from err
    except UnicodeDecodeError as err:
        raise FormatError(f"not UTF-8 ({err.reason})", where) from err


def _columns(spec: Stream, header: list[str], where: str) -> tuple[int, int, int | None]:
    if _TIME not in header:
        raise FormatError(f"no '{_TIME}' column (columns: {', '.join(header)})", where)
    named = [c for c in spec.columns if c in header]
    others = [c for c in header if c not in (_TIME, _DEVICE)]
    column = named[0] if named else (others[0] if len(others) == 1 else None)
    if column is None:
        raise FormatError(
            f"no value column ({' or '.join(spec.columns)}) among: {', '.join(header)}", where
        )
    device = header.index(_DEVICE) if _DEVICE in header else None
    return header.index(_TIME), header.index(column), device


def _row(
    spec: Stream,
    row: list[str],
    time_at: int,
    value_at: int,
    device_at: int | None,
    locator: str,
    clock: LocalClock,
    local: bool,
) -> Sample:
    value = number(row[value_at].strip() if value_at < len(row) else "", spec.columns[0])
    raw = row[time_at].strip() if time_at < len(row) else ""
    start, end = _span(raw, spec.daily, clock, local)
    device = row[device_at].strip() if device_at is not None and device_at < len(row) else ""
    source = f"{SOURCE} [{device}]" if device else SOURCE
    return sample(spec.code, value, spec.unit, start, end, locator, spec.qualifier, source)


def _span(raw: str, daily: bool, clock: LocalClock, local: bool) -> tuple[dt.datetime, dt.datetime]:
    try:
        moment = dt.datetime.fromisoformat(raw) if 10 <= len(raw) <= 40 else None
    except ValueError:
        moment = None
    if moment is None:
        raise Bad("bad_timestamp", _TIME, f"timestamp {raw!r} is not ISO 8601")
    if daily:
        # A day's value: the member's local day, whatever clock the row's time uses.
        day = (moment.astimezone(clock.tz) if moment.tzinfo else moment).date()
        start = clock.resolve(dt.datetime.combine(day, dt.time()))
        end = clock.resolve(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
        return start, end
    if moment.tzinfo is None:
        moment = clock.resolve(moment) if local else moment.replace(tzinfo=dt.UTC)
    return moment, moment


class _LineBound(io.RawIOBase):
    """The zip member as the CSV reader sees it, refusing a line over MAX_LINE_BYTES
    before the reader has to hold it."""

    def __init__(self, raw: IO[bytes], where: str) -> None:
        self._raw = raw
        self._where = where
        self._run = 0  # bytes since the last newline
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._raw.read(len(buffer))
        last = chunk.rfind(b"\n")
        self._run = len(chunk) - 1 - last if last >= 0 else self._run + len(chunk)
        if self._run > MAX_LINE_BYTES or (last >= 0 and _longest_line(chunk) > MAX_LINE_BYTES):
            raise FormatError(
                f"a line longer than {MAX_LINE_BYTES:,} bytes: refused (not a Fitbit CSV)",
                f"{self._where} near byte {self._offset:,}",
            )
        self._offset += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _longest_line(chunk: bytes) -> int:
    return max(map(len, chunk.split(b"\n"))) if len(chunk) > MAX_LINE_BYTES else 0
