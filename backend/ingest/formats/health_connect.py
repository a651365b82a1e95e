"""Android Health Connect export: the zip the phone writes ("Health Connect.zip") holding
its SQLite database `health_connect_export.db`, or that database on its own.

The database is Health Connect's own storage. Every record table has `uuid` (16-byte
blob), `app_info_id` (-> `application_info_table`: `package_name`, `app_name`) and
`device_info_id` (-> `device_info_table`: `manufacturer`, `model`). Interval records
have `start_time`/`end_time` (epoch ms, UTC) with `start_zone_offset`/`end_zone_offset`
(seconds); instant records have `time` and `zone_offset`. Series (heart rate) keep their
samples in a child table (`heart_rate_record_series_table`: `parent_key` -> the parent's
`row_id`, `epoch_millis`, `beats_per_minute`); sleep stages likewise
(`sleep_stages_table`: `stage_start_time`, `stage_end_time`, `stage_type`). Units are
Health Connect's internal ones: metres, grams, calories (not kcal), percent, Celsius,
mmHg, litres.

SQLite cannot read from a stream, so the database is copied to a temporary file first,
refused past `MAX_DB_BYTES` however small the zip claims it is. It is opened read-only
(`immutable`, no journal written); a file that is not SQLite, or a database without
Health Connect's tables, is refused with one line. Rows are read with one cursor per
table, so memory stays flat whatever the size.

`report.read` counts the rows of the record tables (and each heart-rate sample and sleep
stage); rows of tables not mapped here count in `report.unmapped` by table name."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, BinaryIO

from backend.ingest.formats.archive import copy_member, copy_stream, open_zip
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

MAX_DB_BYTES = 4 * 1024**3
MAX_VALUE_BYTES = 16 * 1024 * 1024
DATABASE = "health_connect_export.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_ZIP_MAGIC = b"PK\x03\x04"
# Tables every Health Connect database has, whatever the user recorded.
_REQUIRED = frozenset({"application_info_table", "device_info_table"})

_Outcome = Sample | Rejected


@dataclass(frozen=True)
class _Column:
    table: str
    column: str
    code: str
    unit: str  # as Health Connect stores it; the refiner converts to the catalog's unit
    instant: bool  # `time` + `zone_offset`; else `start_time`..`end_time`


_INSTANTS = (
    _Column("resting_heart_rate_record_table", "beats_per_minute", "40443-4", "/min", True),
    _Column("oxygen_saturation_record_table", "percentage", "59408-5", "%", True),
    _Column("weight_record_table", "weight", "29463-7", "g", True),
    _Column("height_record_table", "height", "8302-2", "m", True),
    _Column("body_fat_record_table", "percentage", "41982-0", "%", True),
    _Column("respiratory_rate_record_table", "rate", "9279-1", "/min", True),
    _Column("body_temperature_record_table", "temperature", "8310-5", "Cel", True),
    _Column("blood_pressure_record_table", "systolic", "8480-6", "mm[Hg]", True),
    _Column("blood_pressure_record_table", "diastolic", "8462-4", "mm[Hg]", True),
    _Column(
        "heart_rate_variability_rmssd_record_table",
        "heart_rate_variability_millis",
        "x-rejuve:hrv-rmssd",
        "ms",
        True,
    ),
)
_INTERVALS = (
    _Column("steps_record_table", "count", "55423-8", "{steps}", False),
    _Column("distance_record_table", "distance", "x-rejuve:distance", "m", False),
    _Column("active_calories_burned_record_table", "energy", "41981-2", "cal", False),
    _Column("total_calories_burned_record_table", "energy", "x-rejuve:total-energy", "cal", False),
)
_HEART_RATE = "heart_rate_record_table"
_HEART_RATE_SERIES = "heart_rate_record_series_table"
_SLEEP = "sleep_session_record_table"
_SLEEP_STAGES = "sleep_stages_table"
_EXERCISE = "exercise_session_record_table"
_MAPPED = frozenset(
    {c.table for c in (*_INSTANTS, *_INTERVALS)}
    | {_HEART_RATE, _HEART_RATE_SERIES, _SLEEP, _SLEEP_STAGES, _EXERCISE}
)

# SleepSessionRecord.STAGE_TYPE_*: 0 unknown, 1 awake, 2 sleeping, 3 out of bed, 4 light,
# 5 deep, 6 REM, 7 awake in bed; named as Apple's stages are.
SLEEP_STAGES = {
    0: "asleep",
    1: "awake",
    2: "asleep",
    3: "out_of_bed",
    4: "asleep_core",
    5: "asleep_deep",
    6: "asleep_rem",
    7: "awake",
}
# ExerciseSessionRecord.EXERCISE_TYPE_* for the common workouts; others keep their number.
EXERCISE_TYPES = {
    0: "other",
    8: "biking",
    37: "hiking",
    56: "running",
    70: "strength_training",
    73: "swimming_open_water",
    74: "swimming_pool",
    79: "walking",
    83: "yoga",
}


def parse(
    data: BinaryIO,
    report: ParseReport,
    *,
    name: str = "Health Connect.zip",
    options: Mapping[str, Any] | None = None,
) -> Iterator[_Outcome]:
    """Stream the samples of a Health Connect export (zip or bare database). A folder
    arrives zipped (backend.ingest.folder); the format takes no `options`."""
    del options  # registry passes them to every format that takes folders
    with tempfile.NamedTemporaryFile(prefix="rejuve-hc-", suffix=".db") as copy:
        where = _extract(data, copy, name)
        copy.flush()
        yield from _read_database(copy.name, where, report)


def _extract(data: BinaryIO, target: IO[bytes], name: str) -> str:
    head = data.read(len(_SQLITE_MAGIC))
    data.seek(-len(head), 1)
    if head.startswith(_ZIP_MAGIC):
        archive = open_zip(data, name, f"a Health Connect export (.zip holding {DATABASE})")
        with archive:
            found = [
                i
                for i in archive.infolist()
                if not i.is_dir() and PurePosixPath(i.filename).name == DATABASE
            ]
            if len(found) != 1:
                raise FormatError(
                    f"not a Health Connect export: expected one {DATABASE} in the zip,"
                    f" found {len(found)}",
                    name,
                )
            where = f"{name}/{found[0].filename}"
            copy_member(archive, found[0], target, where, MAX_DB_BYTES)
            return where
    if head == _SQLITE_MAGIC:
        copy_stream(data, target, name, MAX_DB_BYTES)
        return name
    raise FormatError(
        f"not a Health Connect export: neither a zip nor an SQLite database ({DATABASE})", name
    )


def _read_database(path: str, where: str, report: ParseReport) -> Iterator[_Outcome]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as err:
        raise FormatError(f"not readable as SQLite ({err})", where) from err
    try:
        # The file is the uploader's: a generated column or view could ask for a 2 GB blob
        # (zeroblob) per row. No value Health Connect writes is near 16 MiB.
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        db.execute("pragma trusted_schema = off")
        db.row_factory = sqlite3.Row
        tables = _tables(db, where)
        reader = _Reader(db, where, report, tables, _sources(db, tables))
        yield from reader.read_all()
    except sqlite3.DatabaseError as err:
        raise FormatError(f"damaged SQLite database ({err})", where) from err
    finally:
        db.close()


def _tables(db: sqlite3.Connection, where: str) -> frozenset[str]:
    try:
        rows = db.execute("select name from sqlite_master where type = 'table'").fetchall()
    except sqlite3.DatabaseError as err:
        raise FormatError(f"damaged SQLite database ({err})", where) from err
    tables = frozenset(str(r[0]) for r in rows)
    missing = _REQUIRED - tables
    if missing or not any(t.endswith("_record_table") for t in tables):
        raise FormatError(
            "an SQLite database, but not Health Connect's: no "
            + ", ".join(sorted(missing) or ["*_record_table"]),
            where,
        )
    return tables


def _sources(db: sqlite3.Connection, tables: frozenset[str]) -> dict[tuple[Any, Any], str]:
    """(app_info_id, device_info_id) -> "Fitbit (com.fitbit.FitbitMobile) [Google Pixel
    Watch 2]": app and device, the provenance of each row."""
    apps = {
        r["row_id"]: _app_name(r["app_name"], r["package_name"])
        for r in db.execute("select row_id, app_name, package_name from application_info_table")
    }
    devices = {
        r["row_id"]: " ".join(str(p) for p in (r["manufacturer"], r["model"]) if p)
        for r in db.execute("select row_id, manufacturer, model from device_info_table")
    }
    out: dict[tuple[Any, Any], str] = {}
    for app_id, app in apps.items():
        out[(app_id, None)] = app
        for device_id, device in devices.items():
            out[(app_id, device_id)] = f"{app} [{device}]" if device else app
    return out


def _app_name(name: object, package: object) -> str:
    parts = [str(p) for p in (name, f"({package})" if package else None) if p]
    return (" ".join(parts) or "Health Connect")[:120]


class _Unreadable(ValueError):
    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


class _Reader:
    def __init__(
        self,
        db: sqlite3.Connection,
        where: str,
        report: ParseReport,
        tables: frozenset[str],
        sources: dict[tuple[Any, Any], str],
    ) -> None:
        self.db, self.where, self.report, self.tables, self.sources = (
            db,
            where,
            report,
            tables,
            sources,
        )

    def read_all(self) -> Iterator[_Outcome]:
        for column in (*_INSTANTS, *_INTERVALS):
            if column.table in self.tables:
                yield from self._column(column)
        if {_HEART_RATE, _HEART_RATE_SERIES} <= self.tables:
            yield from self._heart_rate()
        if _SLEEP in self.tables:
            yield from self._sleep()
        if _EXERCISE in self.tables:
            yield from self._exercise()
        for table in sorted(self.tables - _MAPPED):
            # A series keeps its samples in a snake_case child (speed_record_table) of a
            # CamelCase parent (SpeedRecordTable): the samples are what is counted.
            if table.endswith("_record_table"):
                (count,) = self.db.execute(_select(table, "count(*)")).fetchone()
                if count:
                    self.report.read += count
                    self.report.unmapped[f"health connect {table}"] += count

    def _source(self, row: sqlite3.Row) -> str:
        app, device = _get(row, "app_info_id"), _get(row, "device_info_id")
        return self.sources.get((app, device)) or self.sources.get((app, None)) or "Health Connect"

    def _locator(self, table: str, row: sqlite3.Row) -> str:
        return f"{self.where} {table} row {_get(row, 'row_id')}"

    def _rejected(self, err: _Unreadable, table: str, row: sqlite3.Row) -> Rejected:
        return Rejected(err.reason, err.field, err.detail, self._locator(table, row), _plain(row))

    def _column(self, m: _Column) -> Iterator[_Outcome]:
        # Blood pressure is one row and two samples: read counts the row once.
        counts = m.column != "diastolic"
        order = "time, row_id" if m.instant else "start_time, row_id"
        for row in self.db.execute(_select(m.table, tail=f"order by {order}")):
            self.report.read += counts
            try:
                if m.instant:
                    start, end, offset = _millis(row, "time"), None, _offset(row, "zone_offset")
                else:
                    start, end, offset = _span(row, "start_time", "end_time", "start_zone_offset")
                value = _number(row, m.column)
            except _Unreadable as err:
                if counts:
                    yield self._rejected(err, m.table, row)
                continue
            where = self._locator(m.table, row)
            source = self._source(row)
            yield Sample(
                m.code, value, m.unit, start, source, where, end=end, tz_offset_minutes=offset
            )

    def _heart_rate(self) -> Iterator[_Outcome]:
        query = (
            "select s.epoch_millis, s.beats_per_minute, p.row_id, p.start_zone_offset,"
            " p.app_info_id, p.device_info_id"
            " from heart_rate_record_series_table s"
            " join heart_rate_record_table p on s.parent_key = p.row_id"
            " order by s.epoch_millis, p.row_id"
        )
        for row in self.db.execute(query):
            self.report.read += 1
            locator = f"{self.where} {_HEART_RATE} row {row['row_id']} at {row['epoch_millis']}"
            try:
                at = _millis(row, "epoch_millis")
                offset = _offset(row, "start_zone_offset")
                bpm = _number(row, "beats_per_minute")
            except _Unreadable as err:
                yield Rejected(err.reason, err.field, err.detail, locator, _plain(row))
                continue
            source = self._source(row)
            yield Sample("8867-4", bpm, "/min", at, source, locator, tz_offset_minutes=offset)

    def _sleep(self) -> Iterator[_Outcome]:
        # One query, sessions with their stages (SQLite indexes the join itself): a
        # query per session would scan the stages table once per night.
        query = (
            "select s.*, t.parent_key as stage_parent, t.stage_start_time, t.stage_end_time,"
            " t.stage_type from sleep_session_record_table s"
            " left join sleep_stages_table t on t.parent_key = s.row_id"
            " order by s.start_time, s.row_id, t.stage_start_time"
            if _SLEEP_STAGES in self.tables
            else _select(_SLEEP, tail="order by start_time, row_id")
        )
        rows = self.db.execute(query)
        for _, group in itertools.groupby(rows, key=lambda row: _get(row, "row_id")):
            session, *rest = group
            stages = [r for r in (session, *rest) if _get(r, "stage_parent") is not None]
            source = self._source(session)
            try:
                offset = _offset(session, "start_zone_offset")
            except _Unreadable as err:
                self.report.read += 1
                yield self._rejected(err, _SLEEP, session)
                continue
            if not stages:
                # A session without stages: the whole span asleep, as Apple's "asleep".
                self.report.read += 1
                yield from self._stage(
                    session, _SLEEP, "start_time", "end_time", "asleep", offset, source
                )
                continue
            # A staged session is read as its stages: they are the records counted.
            for stage in stages:
                self.report.read += 1
                kind = _get(stage, "stage_type")
                name = SLEEP_STAGES.get(kind) if isinstance(kind, int) else None
                if name is None:
                    yield Rejected(
                        "bad_value",
                        "stage_type",
                        f"unknown sleep stage type {kind!r}",
                        self._stage_locator(session, stage),
                        _plain(stage),
                    )
                    continue
                yield from self._stage(
                    stage,
                    _SLEEP_STAGES,
                    "stage_start_time",
                    "stage_end_time",
                    name,
                    offset,
                    source,
                    session,
                )

    def _stage_locator(self, session: sqlite3.Row, stage: sqlite3.Row) -> str:
        at = _get(stage, "stage_start_time")
        return f"{self.where} {_SLEEP} row {_get(session, 'row_id')} stage at {at}"

    def _stage(
        self,
        row: sqlite3.Row,
        table: str,
        start_key: str,
        end_key: str,
        stage: str,
        offset: int | None,
        source: str,
        session: sqlite3.Row | None = None,
    ) -> Iterator[_Outcome]:
        locator = (
            self._stage_locator(session, row) if session is not None else self._locator(table, row)
        )
        try:
            start, end, _ = _span(row, start_key, end_key, None)
        except _Unreadable as err:
            yield Rejected(err.reason, err.field, err.detail, locator, _plain(row))
            return
        minutes = (end - start).total_seconds() / 60
        yield Sample(
            "x-rejuve:sleep-stage",
            minutes,
            "min",
            start,
            source,
            locator,
            end=end,
            tz_offset_minutes=offset,
            qualifier=stage,
        )

    def _exercise(self) -> Iterator[_Outcome]:
        for row in self.db.execute(_select(_EXERCISE, tail="order by start_time, row_id")):
            self.report.read += 1
            try:
                start, end, offset = _span(row, "start_time", "end_time", "start_zone_offset")
                kind = _get(row, "exercise_type")
                if not isinstance(kind, int):
                    raise _Unreadable(
                        "bad_value", "exercise_type", f"exercise_type {kind!r} is not a number"
                    )
            except _Unreadable as err:
                yield self._rejected(err, _EXERCISE, row)
                continue
            qualifier = EXERCISE_TYPES.get(kind, f"exercise_type_{kind}")
            minutes = (end - start).total_seconds() / 60
            where = self._locator(_EXERCISE, row)
            source = self._source(row)
            yield Sample(
                "x-rejuve:workout",
                minutes,
                "min",
                start,
                source,
                where,
                end=end,
                tz_offset_minutes=offset,
                qualifier=qualifier,
            )


def _select(table: str, columns: str = "*", tail: str = "") -> str:
    """A query of one table. Only identifiers are spliced in: the constants above, or a
    table name read from the file's own sqlite_master, quoted as an identifier; values
    are always bound parameters."""
    quoted = table.replace('"', '""')
    return f'select {columns} from "{quoted}" {tail}'  # noqa: S608


_EARLIEST_MS = 631_152_000_000  # 1990-01-01
_LATEST_MS = 4_102_444_800_000  # 2100-01-01


def _get(row: sqlite3.Row, key: str) -> Any:
    """The column's value, or None when this database's table has no such column (an
    older or altered schema): the record is then rejected naming it, never a crash."""
    # Row's `in` looks at values, not column names: keys() is needed.
    return row[key] if key in row.keys() else None  # noqa: SIM118


def _millis(row: sqlite3.Row, key: str) -> dt.datetime:
    value = _get(row, key)
    if not isinstance(value, int) or not _EARLIEST_MS <= value < _LATEST_MS:
        raise _Unreadable("bad_timestamp", key, f"{key} {value!r} is not a plausible epoch-ms time")
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def _offset(row: sqlite3.Row, key: str | None) -> int | None:
    if key is None or (seconds := _get(row, key)) is None:
        return None
    # Health Connect keeps ZoneOffset seconds: -18:00..+18:00 is all java.time allows.
    if not isinstance(seconds, int) or abs(seconds) > 18 * 3600 or seconds % 60:
        raise _Unreadable(
            "bad_timestamp", key, f"{key} {seconds!r} is not a zone offset in seconds"
        )
    return seconds // 60


def _span(
    row: sqlite3.Row, start_key: str, end_key: str, offset_key: str | None
) -> tuple[dt.datetime, dt.datetime, int | None]:
    start = _millis(row, start_key)
    end = _millis(row, end_key)
    if end < start:
        raise _Unreadable("bad_interval", end_key, f"{end_key} is before {start_key}")
    return start, end, _offset(row, offset_key)


def _number(row: sqlite3.Row, key: str) -> float:
    value = _get(row, key)
    if value is None:
        raise _Unreadable("missing_value", key, f"no {key}")
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise _Unreadable("bad_value", key, f"{key} {value!r} is not a number")
    return float(value)


def _plain(row: sqlite3.Row) -> dict[str, object]:
    """The row as the steward sees it in the quarantine (blobs as hex, e.g. the uuid)."""
    out: dict[str, object] = {}
    for key in row.keys():  # noqa: SIM118 (Row iterates over values)
        value = row[key]
        if isinstance(value, bytes):
            value = value[:64].hex() + ("..." if len(value) > 64 else "")
        elif isinstance(value, str) and len(value) > 1000:
            value = value[:1000] + "..."
        out[key] = value
    return out
