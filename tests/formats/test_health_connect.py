"""The Android Health Connect export parser, on a database built here from
tests/fixtures/health_connect/health_connect_export.sql (Health Connect's table and
column names and units), zipped as the phone writes it or given bare.

None of these tests needs the local stack."""

from __future__ import annotations

import datetime as dt
import io
import sqlite3
import tempfile
import zipfile
from collections.abc import Generator
from pathlib import Path

import pytest

from backend.ingest.formats import health_connect
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample
from tests.formats.outcomes import parse_bytes

SCRIPT = Path(__file__).parent.parent / "fixtures" / "health_connect" / "health_connect_export.sql"
WHERE = "Health Connect.zip/health_connect_export.db"


def database(script: str | None = None) -> bytes:
    db = sqlite3.connect(":memory:")
    db.executescript(SCRIPT.read_text() if script is None else script)
    data = db.serialize()
    db.close()
    return data


def zipped(data: bytes, name: str = "health_connect_export.db") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def parse(data: bytes) -> tuple[list[Sample], list[Rejected], ParseReport]:
    return parse_bytes(health_connect.parse, data, "Health Connect.zip")


def ms(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC)


def test_every_mapped_table_is_read_in_its_units_with_its_offsets() -> None:
    samples, rejected, report = parse(zipped(database()))
    got = [
        (s.code, s.value, s.unit, s.start, s.end, s.tz_offset_minutes, s.qualifier) for s in samples
    ]
    hour = (ms(1711792800000), ms(1711796400000))
    run = (ms(1711872000000), ms(1711874700000))
    assert got == [
        ("59408-5", 96, "%", ms(1711864860000), None, 120, None),
        ("29463-7", 72450, "g", ms(1711865400000), None, 120, None),
        ("8480-6", 121, "mm[Hg]", ms(1711866000000), None, 120, None),
        ("8462-4", 79, "mm[Hg]", ms(1711866000000), None, 120, None),
        ("x-rejuve:hrv-rmssd", 41.5, "ms", ms(1711864500000), None, 120, None),
        # the watch's hour of steps and Google Fit's copy of it (a duplicate downstream)
        ("55423-8", 1234, "{steps}", *hour, 60, None),
        ("55423-8", 1234, "{steps}", *hour, 60, None),
        ("41981-2", 412000, "cal", *run, 120, None),  # calories, not kcal
        ("x-rejuve:total-energy", 2310000, "cal", ms(1711836000000), ms(1711918800000), 60, None),
        ("x-rejuve:total-energy", 2290000, "cal", ms(1711918800000), ms(1712005200000), 120, None),
        ("8867-4", 61, "/min", ms(1711792805000), None, 60, None),
        ("8867-4", 64, "/min", ms(1711793105000), None, 60, None),
        ("8867-4", 66, "/min", ms(1711793399000), None, 60, None),
        # the night starts at +01:00 and ends at +02:00: the start's offset is kept
        (
            "x-rejuve:sleep-stage",
            20,
            "min",
            ms(1711838400000),
            ms(1711839600000),
            60,
            "asleep_core",
        ),
        (
            "x-rejuve:sleep-stage",
            60,
            "min",
            ms(1711839600000),
            ms(1711843200000),
            60,
            "asleep_deep",
        ),
        (
            "x-rejuve:sleep-stage",
            350,
            "min",
            ms(1711843200000),
            ms(1711864200000),
            60,
            "asleep_rem",
        ),
        ("x-rejuve:sleep-stage", 10, "min", ms(1711864200000), ms(1711864800000), 60, "awake"),
        # a nap without stages: asleep throughout
        ("x-rejuve:sleep-stage", 30, "min", ms(1711897200000), ms(1711899000000), 120, "asleep"),
        ("x-rejuve:workout", 45, "min", *run, 120, "running"),
        (
            "x-rejuve:workout",
            30,
            "min",
            ms(1711958400000),
            ms(1711960200000),
            120,
            "exercise_type_44",
        ),
    ]
    assert samples[0].source == "Fitbit (com.fitbit.FitbitMobile) [Google Pixel Watch 2]"
    assert samples[1].source == "Samsung Health (com.sec.android.app.shealth) [Samsung SM-S918B]"
    assert samples[6].source == "Fit (com.google.android.apps.fitness) [Google Pixel Watch 2]"
    assert samples[5].locator == f"{WHERE} steps_record_table row 1"
    assert [(r.reason, r.field) for r in rejected] == [
        ("bad_interval", "end_time"),
        ("bad_value", "stage_type"),
    ]
    # the quarantine keeps the row as read, its uuid blob as hex
    assert rejected[0].record["uuid"] == "22222222222222222222222222222222"
    assert report.unmapped == {"health connect speed_record_table": 2}
    # instants (SpO2, weight, one blood-pressure row, HRV), intervals (3 steps, active and
    # total energy), heart-rate samples, sleep stages and the nap, exercises, speed samples
    assert report.read == 4 + 6 + 3 + 6 + 2 + 2


def test_a_bare_database_is_read_as_the_zip_is() -> None:
    data = database()
    assert [s.value for s in parse(data)[0]] == [s.value for s in parse(zipped(data))[0]]


def test_the_copy_of_the_database_is_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stream = health_connect.parse(io.BytesIO(zipped(database())), ParseReport())
    next(stream)
    assert len(list(tmp_path.iterdir())) == 1
    assert isinstance(stream, Generator)
    stream.close()  # the refiner stopping early (time limit) removes it too
    assert list(tmp_path.iterdir()) == []


def _refused(data: bytes) -> str:
    with pytest.raises(FormatError) as refused:
        parse(data)
    assert "\n" not in str(refused.value)
    return str(refused.value)


def test_a_database_that_is_not_health_connect_is_refused_in_one_line() -> None:
    other = database("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');")
    assert _refused(zipped(other)) == (
        f"{WHERE}: an SQLite database, but not Health Connect's: no application_info_table,"
        " device_info_table"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Health Connect.zip: not a Health Connect export: neither a zip nor an SQLite"),
        (b'{"json": true}', "Health Connect.zip: not a Health Connect export: neither a zip"),
        (
            zipped(b"hello", name="export.xml"),
            "Health Connect.zip: not a Health Connect export: expected one"
            " health_connect_export.db in the zip, found 0",
        ),
        (b"PK\x03\x04 and then nothing", "Health Connect.zip: not a zip archive"),
    ],
)
def test_input_that_is_no_export_is_refused(data: bytes, message: str) -> None:
    assert _refused(data).startswith(message)


def test_a_damaged_database_is_refused() -> None:
    data = database()
    assert "damaged SQLite database" in _refused(zipped(data[: len(data) // 2]))


def test_a_database_past_the_limit_is_refused_while_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_connect, "MAX_DB_BYTES", 4096)
    data = database()
    assert len(data) > 4096
    assert _refused(zipped(data)) == (
        f"{WHERE}: larger than 4,096 bytes uncompressed: refused (no real export holds one;"
        " a zip bomb does)"
    )
    assert "Health Connect.zip: larger than 4,096" in _refused(data)


def test_a_value_too_large_to_be_health_data_is_refused() -> None:
    """A generated column asking for a 2 GB blob per row costs nothing: SQLite refuses it."""
    script = SCRIPT.read_text() + (
        "ALTER TABLE oxygen_saturation_record_table"
        " ADD COLUMN padding BLOB AS (zeroblob(2000000000));"
    )
    assert "string or blob too big" in _refused(zipped(database(script)))


def test_a_table_without_an_expected_column_rejects_its_rows_naming_it() -> None:
    script = (
        SCRIPT.read_text()
        .replace("local_date INTEGER, weight REAL NOT NULL", "local_date INTEGER, mass REAL")
        .replace("local_date, weight) VALUES", "local_date, mass) VALUES")
    )
    samples, rejected, _ = parse(zipped(database(script)))
    assert "29463-7" not in {s.code for s in samples}
    assert ("missing_value", "weight") in {(r.reason, r.field) for r in rejected}
