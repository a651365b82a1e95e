"""Fitbit's `Global Export Data` JSON files: one array per file, read element by element.

Shapes (from real exports; sources in NOTES-f.md):

    heart_rate-2024-05-01.json  [{"dateTime": "05/01/24 07:00:07",
                                  "value": {"bpm": 60, "confidence": 3}}, ...]   daily files
    steps-2024-05-01.json       [{"dateTime": "05/01/24 07:00:00", "value": "12"}, ...]
    distance-*.json             the same, centimetres;  calories-*.json: kcal a minute
                                (Fitbit's calories include the basal rate: total energy)
    resting_heart_rate-*.json   [{"dateTime": "05/01/24 00:00:00",
                                  "value": {"date": "05/01/24", "value": 58.9, "error": 6.8}}]
    sleep-2024-05-01.json       [{"logId": 4512, "dateOfSleep": "2024-05-02",
                                  "startTime": "2024-05-01T23:12:30.000", "endTime": ...,
                                  "duration": ms, "timeInBed": min, "type": "stages",
                                  "levels": {"data": [{"dateTime": ..., "level": "light",
                                  "seconds": 870}, ...], "shortData": [...], "summary": {}}}]

Clocks: the intraday files (heart rate, steps, distance, calories) write UTC without
saying so (each file holds one *local* day, so a day file of a member in New York starts
at 04:00 or 05:00); sleep logs and the resting heart rate's date are the member's wall
clock, read in the member's zone (`local_clock`).

Values come as numbers or as strings ("12"). A reading of 0 (or -1, or empty) means "no
data" here (a minute the tracker was not worn, a day without a resting heart rate): it
is counted in `report.unmapped` as `no data: <stream>`, never stored as a measurement.
A sleep log already read from another file (monthly files overlap) is counted as
`sleep log repeated in another file` and read once. `levels.shortData` (short wakes laid
over the stages) is counted, not stored: the stages already cover those minutes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator
from typing import IO, Any
from zoneinfo import ZoneInfo

from backend.ingest.formats.json_stream import array_elements
from backend.ingest.formats.local_clock import LocalClock
from backend.ingest.model import ParseReport, Rejected, Sample

SOURCE = "Fitbit export"
_SLEEP_ELEMENT_MAX = 8 * 1024 * 1024  # a sleep log with its stages; others stay under 1 MiB

_STAGES = {
    # type "stages"
    "wake": "awake",
    "light": "asleep_light",
    "deep": "asleep_deep",
    "rem": "asleep_rem",
    # type "classic" (older trackers): restless minutes count as awake in Fitbit's own
    # minutesAwake, so they are not "asleep" here either.
    "asleep": "asleep",
    "restless": "restless",
    "awake": "awake",
}


class Bad(Exception):
    def __init__(self, reason: str, key: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.key, self.detail = reason, key, detail


class NoData(Exception):
    """A sentinel: the record says there was nothing to measure."""


class State:
    """What one parse of an archive carries from file to file."""

    def __init__(self, report: ParseReport, tz: ZoneInfo) -> None:
        self.report = report
        self.tz = tz
        self.sleep_logs: set[object] = set()
        self.minutes: dict[str, dt.datetime] = {}


Reader = Callable[[dict[str, Any], str, State], Iterator[Sample]]


def read(stream: str, member: IO[bytes], where: str, state: State) -> Iterator[Sample | Rejected]:
    report = state.report
    reader = READERS[stream]
    limit = _SLEEP_ELEMENT_MAX if stream == "sleep" else 1024 * 1024
    for index, element in enumerate(array_elements(member, where, max_element=limit)):
        report.read += 1
        locator = f"{where}[{index}]"
        if not isinstance(element, dict):
            yield Rejected("schema_invalid", None, "not a JSON object", locator, {"value": element})
            continue
        try:
            yield from reader(element, locator, state)
        except NoData:
            report.unmapped[f"no data: {stream}"] += 1
        except Bad as err:
            yield Rejected(err.reason, err.key, err.detail, locator, element)
    if len(state.minutes) > 4096:
        state.minutes.clear()


def _heart_rate(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    value = e.get("value")
    if not isinstance(value, dict):
        raise Bad("missing_value", "value", "no value object")
    bpm = number(value.get("bpm"), "value.bpm")
    yield _utc_sample("8867-4", bpm, "/min", e, locator, s)


def _steps(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    yield _utc_sample("55423-8", number(e.get("value"), "value"), "{steps}", e, locator, s)


def _distance(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    yield _utc_sample("x-rejuve:distance", number(e.get("value"), "value"), "cm", e, locator, s)


def _calories(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    value = number(e.get("value"), "value")
    yield _utc_sample("x-rejuve:total-energy", value, "kcal", e, locator, s)


def _resting(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    value = e.get("value")
    if not isinstance(value, dict):
        raise Bad("missing_value", "value", "no value object")
    bpm = number(value.get("value"), "value.value")
    day = _wall(value.get("date") or e.get("dateTime"), "value.date").date()
    clock = LocalClock(s.tz)
    start = clock.resolve(dt.datetime.combine(day, dt.time()))
    end = clock.resolve(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
    yield sample("40443-4", bpm, "/min", start, end, locator)


def _sleep(e: dict[str, Any], locator: str, s: State) -> Iterator[Sample]:
    log_id = e.get("logId")
    if log_id is None:
        raise Bad("missing_value", "logId", "sleep log without a logId")
    if not isinstance(log_id, int | str) or isinstance(log_id, bool):
        raise Bad("bad_value", "logId", "logId is not a number or text")
    if log_id in s.sleep_logs:
        s.report.unmapped["sleep log repeated in another file"] += 1
        return
    levels = e.get("levels")
    data = levels.get("data") if isinstance(levels, dict) else None
    if not isinstance(data, list):
        raise Bad("missing_value", "levels.data", "sleep log without levels.data")
    clock = LocalClock(s.tz)
    start = clock.resolve(_iso_wall(e.get("startTime"), "startTime"))
    end = clock.resolve(_iso_wall(e.get("endTime"), "endTime"))
    if end < start:
        raise Bad("bad_interval", "endTime", "endTime is before startTime")
    in_bed = number(e.get("timeInBed"), "timeInBed", zero_is_data=True)
    # Check every stage before yielding any: a log goes in whole or is quarantined whole.
    stages = [_stage(item, i, clock) for i, item in enumerate(data)]
    s.sleep_logs.add(log_id)
    yield sample("x-rejuve:sleep-stage", in_bed, "min", start, end, locator, "in_bed")
    for i, (stage_start, seconds, stage) in enumerate(stages):
        if seconds <= 0:
            s.report.unmapped["no data: sleep stage of 0 s"] += 1
            continue
        stage_end = stage_start + dt.timedelta(seconds=seconds)
        yield sample(
            "x-rejuve:sleep-stage",
            seconds / 60,
            "min",
            stage_start,
            stage_end,
            f"{locator}.levels.data[{i}]",
            stage,
        )
    short = levels.get("shortData") if isinstance(levels, dict) else None
    if isinstance(short, list) and short:
        s.report.unmapped["sleep shortData (short wakes inside stages)"] += len(short)


def _stage(item: object, i: int, clock: LocalClock) -> tuple[dt.datetime, float, str]:
    key = f"levels.data[{i}]"
    if not isinstance(item, dict):
        raise Bad("schema_invalid", key, f"{key} is not an object")
    level = item.get("level")
    stage = _STAGES.get(level) if isinstance(level, str) else None
    if stage is None:
        raise Bad("bad_value", f"{key}.level", f"unknown sleep level {level!r}")
    start = clock.resolve(_iso_wall(item.get("dateTime"), f"{key}.dateTime"))
    seconds = number(item.get("seconds"), f"{key}.seconds", zero_is_data=True)
    if seconds < 0:
        raise Bad("bad_value", f"{key}.seconds", "negative seconds")
    return start, seconds, stage


READERS: dict[str, Reader] = {
    "heart_rate": _heart_rate,
    "steps": _steps,
    "distance": _distance,
    "calories": _calories,
    "resting_heart_rate": _resting,
    "sleep": _sleep,
}


def _utc_sample(
    code: str, value: float, unit: str, e: dict[str, Any], locator: str, s: State
) -> Sample:
    start = _utc(e.get("dateTime"), s)
    return Sample(code, value, unit, start, SOURCE, locator, start, 0)


def sample(
    code: str,
    value: float,
    unit: str,
    start: dt.datetime,
    end: dt.datetime,
    locator: str,
    qualifier: str | None = None,
    source: str = SOURCE,
) -> Sample:
    offset = start.utcoffset() or dt.timedelta()
    return Sample(
        code, value, unit, start, source, locator, end, offset // dt.timedelta(minutes=1),
        None, qualifier,
    )  # fmt: skip


def number(raw: object, key: str, *, zero_is_data: bool = False) -> float:
    """A value as Fitbit writes it (72, 58.9, "12"); 0, -1 and "" are "no data"."""
    if raw is None or raw == "":
        if zero_is_data:
            raise Bad("missing_value", key, f"no {key}")
        raise NoData
    if isinstance(raw, bool):
        raise Bad("bad_value", key, f"{key} is not a number")
    if isinstance(raw, int | float):
        number = float(raw)
    elif isinstance(raw, str) and len(raw) <= 32:
        try:
            number = float(raw)
        except ValueError:
            raise Bad("bad_value", key, f"{key} {raw!r} is not a number") from None
    else:
        raise Bad("bad_value", key, f"{key} is not a number")
    if not math.isfinite(number):
        raise Bad("bad_value", key, f"{key} {raw!r} is not a finite number")
    if not zero_is_data and number in (0.0, -1.0):
        raise NoData
    return number


def _utc(raw: object, s: State) -> dt.datetime:
    """ "05/01/24 07:00:07" (MM/DD/YY, UTC) -> an aware datetime; minutes are cached."""
    if not isinstance(raw, str) or len(raw) != 17 or raw[2] != "/" or raw[14] != ":":
        raise Bad("bad_timestamp", "dateTime", f"dateTime {raw!r} is not 'MM/DD/YY hh:mm:ss'")
    minute = s.minutes.get(raw[:14])
    if minute is None:
        minute = _wall(raw[:14] + ":00", "dateTime").replace(tzinfo=dt.UTC)
        s.minutes[raw[:14]] = minute
    second = raw[15:17]
    if not second.isdigit() or int(second) > 59:
        raise Bad("bad_timestamp", "dateTime", f"dateTime {raw!r} has no valid second")
    return minute + dt.timedelta(seconds=int(second))


def _wall(raw: object, key: str) -> dt.datetime:
    """ "05/01/24 07:00:07" or "05/01/24" -> a naive datetime (20YY)."""
    if isinstance(raw, str) and len(raw) in (8, 17):
        try:
            return dt.datetime.strptime(raw, "%m/%d/%y %H:%M:%S" if len(raw) == 17 else "%m/%d/%y")
        except ValueError:
            pass
    raise Bad("bad_timestamp", key, f"{key} {raw!r} is not 'MM/DD/YY[ hh:mm:ss]'")


def _iso_wall(raw: object, key: str) -> dt.datetime:
    """ "2024-05-01T23:12:30.000" (the member's wall clock, no offset) -> naive."""
    if isinstance(raw, str) and 10 <= len(raw) <= 32:
        try:
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                return moment
    raise Bad("bad_timestamp", key, f"{key} {raw!r} is not a local 'YYYY-MM-DDThh:mm:ss.sss'")
