"""Garmin Connect account export (the zip from "Export Your Data", folder `DI_CONNECT/`).

What is read (real file names; the leading numbers are the account's id and date range):

- `DI-Connect-Aggregator/UDSFile_<from>_<to>.json` (older exports: `DI-Connect-User/`):
  one daily summary ("user daily summary") per day: `totalSteps`, `totalDistanceMeters`,
  `activeKilocalories`, `bmrKilocalories`, `restingHeartRate`, and all-day stress in
  `allDayStress.aggregatorList[type=TOTAL].averageStressLevel`. The day is
  `wellnessStartTimeGmt`..`wellnessEndTimeGmt`; `wellnessStartTimeLocal` gives the offset.
- `DI-Connect-Wellness/<id>_sleepData.json`: one night per entry, `sleepStartTimestampGMT`
  / `sleepEndTimestampGMT` and the seconds in each stage (`deepSleepSeconds`,
  `lightSleepSeconds`, `remSleepSeconds`, `awakeSleepSeconds`), `averageRespiration`.
- `DI-Connect-Wellness/<id>_userBioMetrics.json`: body composition, `weight.weight` in
  grams at `weight.timestampGMT`, with `bodyFat` (%) and `bmi` when a scale sent them.
- `DI-Connect-Fitness/<name>_<n>_summarizedActivities.json`: `[{"summarizedActivitiesExport":
  [...]}]`, activities with epoch-millisecond times (`beginTimestamp`/`startTimeGmt`,
  `startTimeLocal`), `duration` in ms, `distance` in centimetres, `avgHr`, `activityType`
  and Garmin's own numeric `timeZoneId` (see `local_offset`).

- `DI-Connect-Uploaded-Files/UploadedFiles_*.zip`: the activities' FIT files, read as
  `--format fit` reads them (backend.ingest.formats.garmin_uploads: a damaged one is
  skipped and counted, the rest go in).

Other files of the export (settings, goals, gear...) are counted in `report.unmapped`
per kind of file. `report.read` counts the entries of the files read:
each becomes its samples, `Rejected`s, an unmapped count, or nothing (a day Garmin wrote
without any of the fields read here).

Each file is a JSON array read one entry at a time (backend.ingest.formats.json_stream),
so memory holds one block and one entry whatever the export's size. A file is refused
past `MAX_MEMBER_BYTES` uncompressed (a zip bomb), an entry past `MAX_ENTRY_CHARS`; the
activities file must be the one block Garmin writes."""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from backend.ingest.formats import garmin_uploads
from backend.ingest.formats.archive import open_member, open_zip
from backend.ingest.formats.json_stream import BLOCK, Readable, array_elements
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

MAX_MEMBER_BYTES = 2 * 1024**3  # one file of the export, uncompressed
MAX_ENTRY_CHARS = 1024 * 1024  # one entry (a day, a night, an activity with its splits)
SOURCE = "Garmin Connect"

_Outcome = Sample | Rejected
_MINUTE_MS = 60_000
# Offsets in use on Earth run from UTC-12 to UTC+14, in whole quarter hours (+05:45).
_OFFSET_RANGE_MIN = (-12 * 60, 14 * 60)

# Daily-summary fields and what they are: (field, code, unit Garmin means).
_UDS_FIELDS = (
    ("totalSteps", "41950-7", "{steps}"),
    ("totalDistanceMeters", "x-rejuve:distance", "m"),
    ("activeKilocalories", "41981-2", "kcal"),
    ("bmrKilocalories", "x-rejuve:basal-energy", "kcal"),
    ("restingHeartRate", "40443-4", "/min"),
)
STRESS = "x-rejuve:stress-level"
_SLEEP_STAGES = (
    ("deepSleepSeconds", "asleep_deep"),
    ("lightSleepSeconds", "asleep_core"),  # Garmin's "light" is Apple's "core" (N1+N2)
    ("remSleepSeconds", "asleep_rem"),
    ("awakeSleepSeconds", "awake"),
)
_ASLEEP_STAGES = ("deepSleepSeconds", "lightSleepSeconds", "remSleepSeconds")


def parse(
    data: BinaryIO,
    report: ParseReport,
    *,
    name: str = "garmin-export.zip",
    options: Mapping[str, Any] | None = None,
) -> Iterator[_Outcome]:
    """Stream the samples of one Garmin Connect export zip; `name` goes into locators.
    A folder arrives zipped (backend.ingest.folder); the format takes no `options`."""
    del options  # registry passes them to every format that takes folders
    archive = open_zip(data, name, "a Garmin Connect export (.zip holding DI_CONNECT/)")
    with archive:
        infos = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
        if not any(_in_export(PurePosixPath(i.filename)) for i in infos):
            raise FormatError("not a Garmin Connect export: no DI_CONNECT/ folder in the zip", name)
        for info in infos:
            yield from _member(archive, info, name, report)


def _in_export(path: PurePosixPath) -> bool:
    # DI_CONNECT/ at the top of Garmin's zip; its subfolders at the top when a member
    # gives the DI_CONNECT folder itself.
    return any(part == "DI_CONNECT" or part.startswith("DI-Connect-") for part in path.parts)


def _member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, report: ParseReport
) -> Iterator[_Outcome]:
    path = PurePosixPath(info.filename)
    # The account's e-mail or name in a file name stays out of locators and errors.
    where = f"{name}/{path.parent}/{_account_folded(path.name)}"
    if garmin_uploads.is_uploads(path):
        yield from garmin_uploads.fit_files(archive, info, where, report, _account_folded)
        return
    reader = _reader(path.name)
    if reader is None:
        report.unmapped[f"garmin file {_file_kind(path)}"] += 1
        return
    with open_member(archive, info, where, MAX_MEMBER_BYTES) as stream:
        source: Readable = _Unwrapped(stream, where) if reader is _activity else stream
        entries = array_elements(source, where, max_element=MAX_ENTRY_CHARS)
        for index, entry in enumerate(entries):
            report.read += 1
            locator = f"{where}[{index}]"
            if not isinstance(entry, dict):
                detail = "an entry that is not a JSON object"
                yield Rejected("bad_record", None, detail, locator, {"entry": entry})
                continue
            yield from reader(entry, locator, report)


def _file_kind(path: PurePosixPath) -> str:
    """`DI-Connect-Wellness/#_heartRateZones.json`: the folder and the name with the
    account folded away and numbers (the account id, dates) too, so that one kind of
    file counts under one key."""
    return f"{path.parent.name}/{re.sub(r'[0-9]+', '#', _account_folded(path.name))}"


def _account_folded(name: str) -> str:
    """The file name without the e-mail address or user name Garmin puts before `_<n>_`
    (`jane.doe@example.com_0_workout.json` -> `<account>_0_workout.json`): the ledger
    and the quarantine keep no one's name."""
    name = re.sub(r"^[^/]*@[^_]*", "<account>", name)
    return re.sub(r"^.+?_([0-9]+)_(?=[A-Za-z])", r"<account>_\1_", name)


_ACTIVITIES_HEAD = re.compile(rb'\s*\[\s*\{\s*"summarizedActivitiesExport"\s*:\s*')
_ACTIVITIES_TAIL = re.compile(rb"\}\s*\]\s*$")
_HEAD_BYTES = 4096
_TAIL_BYTES = 256
_WRAPPER = 'expected one block: [{"summarizedActivitiesExport": [...]}]'


class _Unwrapped:
    """The activities array of `[{"summarizedActivitiesExport": [...]}]` as a stream of
    its own, so that its entries are read one at a time like any other file's: the
    wrapper's head is checked and dropped, and the last bytes are held back until the
    end, where the wrapper's `}]` must close the file."""

    def __init__(self, raw: Readable, where: str) -> None:
        self._raw, self._where = raw, where
        self._held = b""
        self._started = self._ended = False

    def read(self, size: int = -1, /) -> bytes:
        if self._ended:
            return b""
        if not self._started:
            self._start()
        while len(self._held) <= _TAIL_BYTES:
            chunk = self._raw.read(size if size > 0 else BLOCK)
            if not chunk:
                return self._end()
            self._held += chunk
        out, self._held = self._held[:-_TAIL_BYTES], self._held[-_TAIL_BYTES:]
        return out

    def _start(self) -> None:
        self._started = True
        head = b""
        while len(head) < _HEAD_BYTES and (chunk := self._raw.read(_HEAD_BYTES - len(head))):
            head += chunk
        match = _ACTIVITIES_HEAD.match(head)
        if match is None:
            raise FormatError(_WRAPPER, self._where)
        self._held = head[match.end() :]

    def _end(self) -> bytes:
        self._ended = True
        match = _ACTIVITIES_TAIL.search(self._held)
        if match is None:
            raise FormatError(_WRAPPER, self._where)
        return self._held[: match.start()]


_Reader = Callable[[dict[str, Any], str, ParseReport], Iterator[_Outcome]]


def _reader(file_name: str) -> _Reader | None:
    if not file_name.endswith(".json") or file_name.startswith("._"):
        return None
    if file_name.startswith("UDSFile"):
        return _daily_summary
    if file_name.endswith("_sleepData.json"):
        return _sleep
    if file_name.endswith("_userBioMetrics.json"):
        return _biometrics
    if file_name.endswith("_summarizedActivities.json"):
        return _activity
    return None


class _Unreadable(ValueError):
    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


def _rejected(err: _Unreadable, locator: str, entry: Mapping[str, Any]) -> Rejected:
    return Rejected(err.reason, err.field, err.detail, locator, dict(entry))


# --- daily summaries ---------------------------------------------------------------


def _daily_summary(entry: dict[str, Any], locator: str, report: ParseReport) -> Iterator[_Outcome]:
    try:
        start = _gmt(entry, "wellnessStartTimeGmt")
        end = _gmt(entry, "wellnessEndTimeGmt")
        offset = _offset_from_local(entry, "wellnessStartTimeLocal", start)
        if end < start:
            raise _Unreadable("bad_interval", "wellnessEndTimeGmt", "the day ends before it starts")
        values = [(f, code, unit, _number(entry, f)) for f, code, unit in _UDS_FIELDS]
        stress = _total_stress(entry)
    except _Unreadable as err:
        yield _rejected(err, locator, entry)
        return
    found = False
    for field, code, unit, value in values:
        if value is None:
            continue
        found = True
        yield _sample(code, value, unit, start, end, offset, f"{locator}.{field}")
    if stress is not None:
        found = True
        if stress < 0:
            # -1 / -2: Garmin's "not enough data" (off wrist, too active to measure).
            report.unmapped["garmin stress: no data (negative sentinel)"] += 1
        else:
            yield _sample(STRESS, stress, "{score}", start, end, offset, f"{locator}.allDayStress")
    if not found:
        report.unmapped["garmin daily summary without data"] += 1


def _total_stress(entry: Mapping[str, Any]) -> float | None:
    stress = entry.get("allDayStress")
    if not isinstance(stress, dict):
        return None
    aggregates = stress.get("aggregatorList")
    for aggregate in aggregates if isinstance(aggregates, list) else ():
        if isinstance(aggregate, dict) and aggregate.get("type") == "TOTAL":
            return _number(aggregate, "averageStressLevel")
    return None


# --- sleep -------------------------------------------------------------------------


def _sleep(entry: dict[str, Any], locator: str, report: ParseReport) -> Iterator[_Outcome]:
    if entry.get("sleepStartTimestampGMT") is None and not any(
        entry.get(f) for f, _ in _SLEEP_STAGES
    ):
        # Garmin writes a day with no sleep recorded as its calendarDate alone.
        report.unmapped["garmin sleep without a sleep window"] += 1
        return
    try:
        start = _gmt(entry, "sleepStartTimestampGMT")
        end = _gmt(entry, "sleepEndTimestampGMT")
        if end < start:
            raise _Unreadable("bad_interval", "sleepEndTimestampGMT", "sleep ends before it starts")
        stages = [(f, stage, _number(entry, f)) for f, stage in _SLEEP_STAGES]
        breathing = _number(entry, "averageRespiration")
    except _Unreadable as err:
        yield _rejected(err, locator, entry)
        return
    for field, stage, seconds in stages:
        if seconds is not None:
            # Garmin states how long each stage lasted in the night, not when: each total
            # spans the night, like Apple's undifferentiated "asleep".
            yield _sample(
                "x-rejuve:sleep-stage",
                seconds / 60,
                "min",
                start,
                end,
                None,
                f"{locator}.{field}",
                stage,
            )
    asleep = [s for f, _, s in stages if f in _ASLEEP_STAGES and s is not None]
    if asleep:
        yield _sample("93832-4", sum(asleep), "s", start, end, None, f"{locator}.sleepTime")
    if breathing is not None and breathing > 0:
        yield _sample(
            "9279-1", breathing, "/min", start, end, None, f"{locator}.averageRespiration"
        )


# --- body composition --------------------------------------------------------------


def _biometrics(entry: dict[str, Any], locator: str, report: ParseReport) -> Iterator[_Outcome]:
    weight = entry.get("weight")
    if not isinstance(weight, dict):
        # The same file holds lactate threshold, VO2 max and height updates.
        report.unmapped["garmin biometrics without weight"] += 1
        return
    try:
        at = _gmt(weight, "timestampGMT")
        grams = _number(weight, "weight")
        fat = _number(weight, "bodyFat")
        bmi = _number(weight, "bmi")
    except _Unreadable as err:
        yield _rejected(err, locator, entry)
        return
    source = _source(weight.get("sourceType"))
    if grams is not None:
        yield _sample("29463-7", grams, "g", at, None, None, f"{locator}.weight", source=source)
    if fat is not None:
        yield _sample("41982-0", fat, "%", at, None, None, f"{locator}.bodyFat", source=source)
    if bmi is not None:
        yield _sample("39156-5", bmi, "kg/m2", at, None, None, f"{locator}.bmi", source=source)


# --- activities --------------------------------------------------------------------


def _activity(entry: dict[str, Any], locator: str, report: ParseReport) -> Iterator[_Outcome]:
    try:
        start_ms = _millis(entry, "beginTimestamp", "startTimeGmt")
        start = _from_millis(start_ms, "beginTimestamp")
        local_ms = _millis(entry, "startTimeLocal")
        offset = local_offset(local_ms - start_ms, entry.get("timeZoneId"))
        duration = _number(entry, "duration")
        if duration is None or duration < 0:
            raise _Unreadable("missing_value", "duration", "an activity needs its duration (ms)")
        end = start + dt.timedelta(milliseconds=duration)
        kind = entry.get("activityType")
        if not isinstance(kind, str) or not kind.strip():
            raise _Unreadable("missing_value", "activityType", "no activityType")
        centimetres = _number(entry, "distance")
        heart = _number(entry, "avgHr")
    except _Unreadable as err:
        yield _rejected(err, locator, entry)
        return
    qualifier = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
    yield _sample(
        "x-rejuve:workout", duration / _MINUTE_MS, "min", start, end, offset, locator, qualifier
    )
    if centimetres:
        yield _sample(
            "x-rejuve:distance", centimetres, "cm", start, end, offset, f"{locator}.distance"
        )
    if heart:
        yield _sample("8867-4", heart, "/min", start, end, offset, f"{locator}.avgHr")


def local_offset(
    difference_ms: int, time_zone_id: object = None, field: str = "startTimeLocal"
) -> int:
    """The UTC offset (minutes) of a Garmin activity, from its two clocks.

    Garmin states a time zone as its own numeric `timeZoneId` (an index into Connect's
    list of zones, which Garmin does not publish), and states the start twice: UTC
    (`startTimeGmt`) and wall clock (`startTimeLocal`, the same epoch-millisecond scale
    shifted by the zone's offset at that moment, summer time included). The difference
    is therefore the offset itself; the id only names where it came from. A difference
    that is no real offset (not whole quarter hours, beyond UTC-12..+14) is refused."""
    minutes, rest = divmod(difference_ms, _MINUTE_MS)
    low, high = _OFFSET_RANGE_MIN
    if rest or minutes % 15 or not low <= minutes <= high:
        zone = "" if time_zone_id is None else f" (timeZoneId {time_zone_id!r})"
        raise _Unreadable(
            "bad_timestamp", field, f"{field} is {difference_ms} ms from GMT: no UTC offset{zone}"
        )
    return minutes


# --- fields ------------------------------------------------------------------------


def _sample(
    code: str,
    value: float,
    unit: str,
    start: dt.datetime,
    end: dt.datetime | None,
    offset: int | None,
    locator: str,
    qualifier: str | None = None,
    source: str = SOURCE,
) -> Sample:
    # Keywords past the first six: the Sample's later fields may grow (H's issue-11 work).
    return Sample(
        code,
        value,
        unit,
        start,
        source,
        locator,
        end=end,
        tz_offset_minutes=offset,
        qualifier=qualifier,
    )


def _source(kind: object) -> str:
    # sourceType: MANUAL, INDEX_SCALE, MFP (MyFitnessPal)...: provenance, no personal data.
    if isinstance(kind, str) and re.fullmatch(r"[A-Z_]{1,40}", kind):
        return f"{SOURCE} ({kind})"
    return SOURCE


def _number(entry: Mapping[str, Any], key: str) -> float | None:
    """The field as a finite number; None when Garmin wrote null or left it out."""
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Unreadable("bad_value", key, f"{key} {value!r} is not a number")
    return float(value)


def _millis(entry: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = entry.get(key)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _Unreadable("bad_timestamp", key, f"{key} {value!r} is not epoch milliseconds")
        return int(value)
    raise _Unreadable("missing_value", keys[0], f"no {' or '.join(keys)}")


_EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _from_millis(ms: int, key: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        moment = _LATEST
    if not _EARLIEST <= moment < _LATEST:
        raise _Unreadable("bad_timestamp", key, f"{key} {ms} is not a plausible epoch-ms time")
    return moment


def _gmt(entry: Mapping[str, Any], key: str) -> dt.datetime:
    """Garmin's "2024-03-02T06:15:00.0": UTC without an offset (the field says GMT)."""
    return _naive(entry, key).replace(tzinfo=dt.UTC)


def _naive(entry: Mapping[str, Any], key: str) -> dt.datetime:
    text = entry.get(key)
    if not isinstance(text, str) or not text.strip():
        raise _Unreadable("missing_value", key, f"no {key}")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is not None:
        raise _Unreadable("bad_timestamp", key, f"{key} {text!r} is not 'YYYY-MM-DDThh:mm:ss.f'")
    return moment


def _offset_from_local(entry: Mapping[str, Any], key: str, utc: dt.datetime) -> int | None:
    if entry.get(key) is None:
        return None
    local = _naive(entry, key).replace(tzinfo=dt.UTC)
    return local_offset(int((local - utc).total_seconds() * 1000), field=key)
