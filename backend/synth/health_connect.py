"""A member's Android Health Connect export (`health-connect`): `Health Connect.zip`
holding `health_connect_export.db`, an SQLite database with Health Connect's own tables
and columns (see backend/ingest/formats/health_connect.py): hourly steps and heart-rate
series from a watch app, sleep sessions with stages, a morning weight, SpO2, exercise
sessions with their distance, daily total calories, and a logged meal (nutrition: a
table the platform does not map).

Faults, at the cohort's rates: an implausible weight (quarantined), a steps interval
that ends before it starts and a sleep stage of an unknown type (rejected by the
parser), and steps written a second time by another app (Google Fit copying the watch's
steps: duplicates). Times fall on seconds 40-59, apart from the member's other sources."""

from __future__ import annotations

import datetime as dt
import io
import random
import sqlite3
import zipfile
from dataclasses import dataclass, field
from typing import Any

from backend.synth.faults import Faults, implausible
from backend.synth.manifest import Tally
from backend.synth.members import CohortSpec, Member, stream_rng
from backend.synth.timeline import (
    CADENCE,
    EXERCISE,
    day_states,
    hr_targets,
    local_dates,
    night_stages,
    plans,
)

ZIP_NAME = "Health Connect.zip"
DATABASE = "health_connect_export.db"
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
_WATCH_APP, _COPYING_APP = 1, 2
_WATCH = 1
_STAGE_TYPES = {"awake": 1, "asleep_core": 4, "asleep_deep": 5, "asleep_rem": 6}
_EXERCISE_TYPES = {"running": 56, "cycling": 8, "hiking": 37, "rowing": 53}
_SPEEDS = {"running": 2.9, "cycling": 7.0, "hiking": 1.3, "rowing": 3.3}

_COMMON = (
    "row_id INTEGER PRIMARY KEY AUTOINCREMENT, uuid BLOB NOT NULL, last_modified_time INTEGER,"
    " client_record_id TEXT, client_record_version INTEGER, device_info_id INTEGER,"
    " app_info_id INTEGER, recording_method INTEGER, dedupe_hash BLOB"
)
_INTERVAL = (
    "start_time INTEGER NOT NULL, start_zone_offset INTEGER, end_time INTEGER NOT NULL,"
    " end_zone_offset INTEGER, local_date INTEGER"
)
_INSTANT = "time INTEGER NOT NULL, zone_offset INTEGER, local_date INTEGER"
SCHEMA = f"""
CREATE TABLE application_info_table (row_id INTEGER PRIMARY KEY AUTOINCREMENT,
  package_name TEXT NOT NULL UNIQUE, app_name TEXT, app_icon BLOB, record_types_used TEXT);
CREATE TABLE device_info_table (row_id INTEGER PRIMARY KEY AUTOINCREMENT,
  manufacturer TEXT, model TEXT, device_type INTEGER);
CREATE TABLE steps_record_table ({_COMMON}, {_INTERVAL}, count INTEGER NOT NULL);
CREATE TABLE distance_record_table ({_COMMON}, {_INTERVAL}, distance REAL NOT NULL);
CREATE TABLE total_calories_burned_record_table ({_COMMON}, {_INTERVAL}, energy REAL NOT NULL);
CREATE TABLE heart_rate_record_table ({_COMMON}, {_INTERVAL});
CREATE TABLE heart_rate_record_series_table (parent_key INTEGER NOT NULL,
  beats_per_minute INTEGER NOT NULL, epoch_millis INTEGER NOT NULL,
  FOREIGN KEY (parent_key) REFERENCES heart_rate_record_table(row_id) ON DELETE CASCADE);
CREATE TABLE sleep_session_record_table ({_COMMON}, {_INTERVAL}, notes TEXT, title TEXT);
CREATE TABLE sleep_stages_table (parent_key INTEGER NOT NULL, stage_start_time INTEGER NOT NULL,
  stage_end_time INTEGER NOT NULL, stage_type INTEGER NOT NULL,
  FOREIGN KEY (parent_key) REFERENCES sleep_session_record_table(row_id) ON DELETE CASCADE);
CREATE TABLE exercise_session_record_table ({_COMMON}, {_INTERVAL}, notes TEXT, exercise_type
  INTEGER NOT NULL, title TEXT, has_route INTEGER);
CREATE TABLE weight_record_table ({_COMMON}, {_INSTANT}, weight REAL NOT NULL);
CREATE TABLE oxygen_saturation_record_table ({_COMMON}, {_INSTANT}, percentage REAL NOT NULL);
CREATE TABLE nutrition_record_table ({_COMMON}, {_INTERVAL}, energy REAL, name TEXT);
"""


@dataclass
class _Writer:
    db: sqlite3.Connection
    rng: random.Random
    member: Member
    tally: Tally = field(default_factory=Tally)

    def row(
        self,
        table: str,
        values: dict[str, Any],
        *,
        samples: int = 1,
        bad: int = 0,
        record: bool = True,
    ) -> int:
        """Insert a row; count what the parser will make of it (`record`: it reads the row
        as a record; a series parent is not)."""
        values = {
            "uuid": self.rng.getrandbits(128).to_bytes(16, "big"),
            "device_info_id": _WATCH,
            "app_info_id": _WATCH_APP,
            "recording_method": 2,  # automatically recorded
            **values,
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        # Table and column names are this module's constants; values are bound.
        statement = f"insert into {table} ({columns}) values ({marks})"  # noqa: S608
        cursor = self.db.execute(statement, tuple(values.values()))
        self.tally.records += record
        self.tally.samples += samples
        self.tally.bad += bad
        return int(cursor.lastrowid or 0)

    def interval(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        offset = self.member.tz_offset_minutes * 60
        local = start.astimezone(self.member.tz).date()
        return {
            "start_time": _ms(start),
            "start_zone_offset": offset,
            "end_time": _ms(end),
            "end_zone_offset": offset,
            "local_date": (local - dt.date(1970, 1, 1)).days,
        }

    def instant(self, at: dt.datetime) -> dict[str, Any]:
        local = at.astimezone(self.member.tz).date()
        return {
            "time": _ms(at),
            "zone_offset": self.member.tz_offset_minutes * 60,
            "local_date": (local - dt.date(1970, 1, 1)).days,
        }


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def health_connect_export(spec: CohortSpec, member: Member) -> tuple[bytes, Tally]:
    """The zip and what parsing and refining it must come to."""
    rng = stream_rng(spec.seed, "health-connect", member.member_id)
    faults = Faults(stream_rng(spec.seed, "health-connect-faults", member.member_id), spec)
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.executemany(
        "insert into application_info_table (row_id, package_name, app_name) values (?, ?, ?)",
        [
            (_WATCH_APP, "com.fitbit.FitbitMobile", "Fitbit"),
            (_COPYING_APP, "com.google.android.apps.fitness", "Fit"),
        ],
    )
    db.execute(
        "insert into device_info_table (row_id, manufacturer, model, device_type)"
        " values (?, ?, ?, ?)",
        (_WATCH, "Google", "Pixel Watch 2", 1),
    )
    w = _Writer(db, rng, member)
    first_day = (spec.start.astimezone(member.tz).date() - dt.date(1970, 1, 1)).days
    for date, plan in zip(local_dates(spec, member), plans(rng, member, first_day), strict=False):
        midnight = dt.datetime.combine(date, dt.time(), tzinfo=member.tz)
        states = day_states(plan)
        targets = hr_targets(member, plan)
        for hour in range(24):
            start = midnight + dt.timedelta(hours=hour, seconds=40)
            end = start + dt.timedelta(hours=1)
            if start < spec.start or end >= spec.end:
                continue
            minutes = states[hour * 60 : hour * 60 + 60]
            steps = round(sum(CADENCE[s] for s in minutes) * rng.uniform(0.9, 1.1))
            if steps:
                _steps(w, faults, start, end, steps)
            _heart_rate(w, start, end, [targets[s] for s in minutes[::10]])
        bed = midnight + dt.timedelta(minutes=plan.bed, seconds=rng.randrange(40, 60))
        wake = bed + dt.timedelta(minutes=rng.randrange(420, 520))
        if spec.start <= bed and wake < spec.end:
            _sleep(w, faults, bed, wake)
            at = wake + dt.timedelta(minutes=5)
            w.row(
                "oxygen_saturation_record_table",
                {**w.instant(at), "percentage": round(rng.uniform(94, 99), 1)},
            )
        weighed = midnight + dt.timedelta(minutes=plan.wake + 15, seconds=rng.randrange(40, 60))
        if spec.start <= weighed < spec.end:
            grams = round((member.weight_kg + rng.gauss(0, 0.3)) * 1000)
            bad = faults.bad()
            if bad:
                grams = round(implausible("29463-7") * 1000)
            w.row(
                "weight_record_table", {**w.instant(weighed), "weight": float(grams)}, bad=int(bad)
            )
        for bout in plan.bouts:
            start = midnight + dt.timedelta(minutes=bout.start, seconds=rng.randrange(40, 60))
            end = start + dt.timedelta(minutes=bout.end - bout.start)
            if bout.state != EXERCISE or start < spec.start or end >= spec.end:
                continue
            kind = _EXERCISE_TYPES.get(bout.activity, 0)
            w.row(
                "exercise_session_record_table",
                {**w.interval(start, end), "exercise_type": kind, "title": None},
            )
            metres = _SPEEDS.get(bout.activity, 2.0) * (end - start).total_seconds()
            w.row("distance_record_table", {**w.interval(start, end), "distance": round(metres, 1)})
        day_start = midnight + dt.timedelta(seconds=41)
        if spec.start <= day_start and day_start + dt.timedelta(days=1) < spec.end:
            calories = round(member.weight_kg * 30 * 1000)  # Health Connect keeps calories
            w.row(
                "total_calories_burned_record_table",
                {
                    **w.interval(day_start, day_start + dt.timedelta(days=1)),
                    "energy": float(calories),
                },
            )
        lunch = midnight + dt.timedelta(hours=12, minutes=30, seconds=rng.randrange(40, 60))
        if spec.start <= lunch and lunch + dt.timedelta(minutes=30) < spec.end:
            # A meal logged in a nutrition app: a table the platform does not map.
            meal = {"energy": float(rng.randrange(400, 900) * 1000), "name": "Lunch"}
            end = lunch + dt.timedelta(minutes=30)
            w.row("nutrition_record_table", {**w.interval(lunch, end), **meal}, samples=0)
            w.tally.unmapped += 1
    db.commit()
    data = db.serialize()
    db.close()
    return _zip(data), w.tally


def _steps(w: _Writer, faults: Faults, start: dt.datetime, end: dt.datetime, steps: int) -> None:
    if faults.bad():
        # Start and end swapped, as a buggy app writes them: refused by the parser.
        w.row(
            "steps_record_table",
            {
                **w.interval(start, end),
                "start_time": _ms(end),
                "end_time": _ms(start),
                "count": steps,
            },
            samples=0,
        )
        w.tally.rejected += 1
        w.tally.bad += 1
        return
    w.row("steps_record_table", {**w.interval(start, end), "count": steps})
    if faults.duplicate():
        # Another app that reads the watch's steps and writes them back as its own.
        w.row(
            "steps_record_table",
            {**w.interval(start, end), "count": steps, "app_info_id": _COPYING_APP},
        )
        w.tally.duplicates += 1


def _heart_rate(w: _Writer, start: dt.datetime, end: dt.datetime, means: list[float]) -> None:
    # The parent row holds no value: its samples are the records the parser counts.
    parent = w.row("heart_rate_record_table", w.interval(start, end), samples=0, record=False)
    for n, mean in enumerate(means):
        at = start + dt.timedelta(minutes=10 * n, seconds=5)
        bpm = max(35, min(200, round(mean + w.rng.gauss(0, 3))))
        w.db.execute(
            "insert into heart_rate_record_series_table"
            " (parent_key, beats_per_minute, epoch_millis) values (?, ?, ?)",
            (parent, bpm, _ms(at)),
        )
        w.tally.records += 1
        w.tally.samples += 1


def _sleep(w: _Writer, faults: Faults, bed: dt.datetime, wake: dt.datetime) -> None:
    # A session with stages is read as its stages: they are the records counted.
    session = w.row("sleep_session_record_table", w.interval(bed, wake), samples=0, record=False)
    total = int((wake - bed).total_seconds() // 60)
    for stage in night_stages(w.rng, 0, total):
        start = bed + dt.timedelta(minutes=stage.start)
        end = start + dt.timedelta(minutes=stage.minutes)
        kind = _STAGE_TYPES[stage.qualifier]
        w.tally.records += 1
        if faults.bad():
            kind = 42  # no such stage type: refused by the parser
            w.tally.rejected += 1
            w.tally.bad += 1
        else:
            w.tally.samples += 1
        w.db.execute(
            "insert into sleep_stages_table"
            " (parent_key, stage_start_time, stage_end_time, stage_type) values (?, ?, ?, ?)",
            (session, _ms(start), _ms(end), kind),
        )


def _zip(database: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(DATABASE, _ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, database)
    return buffer.getvalue()
