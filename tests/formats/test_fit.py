"""The FIT activity-file parser, on files written here the way a watch writes them: with
fit-tool (Garmin's message profile), or byte by byte for the long and damaged ones.

None of these tests needs the local stack."""

from __future__ import annotations

import datetime as dt
import struct

import pytest
from fit_tool.fit_file_builder import FitFileBuilder  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.activity_message import ActivityMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.file_id_message import FileIdMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.lap_message import LapMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.record_message import RecordMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.messages.session_message import SessionMessage  # type: ignore[import-untyped, unused-ignore]
from fit_tool.profile.profile_type import (  # type: ignore[import-untyped, unused-ignore]
    FileType,
    GarminProduct,
    Manufacturer,
    Sport,
)
from fitdecode.utils import compute_crc  # type: ignore[import-untyped, unused-ignore]

from backend.ingest.formats import fit
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample
from tests.formats.outcomes import parse_bytes, streamed

START = dt.datetime(2024, 5, 4, 6, 30, tzinfo=dt.UTC)
FIT_EPOCH = dt.datetime(1989, 12, 31, tzinfo=dt.UTC)


def ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def activity() -> bytes:
    """A 12-second run: three records (one with every field invalid but the time), a
    record the device lost the time of, a lap, the session, the activity."""
    builder = FitFileBuilder(auto_define=True, min_string_size=50)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.GARMIN.value
    file_id.product = GarminProduct.FENIX6.value
    file_id.serial_number = 3_375_581_236
    file_id.time_created = ms(START)
    builder.add(file_id)
    for second, hr, cadence, speed, power in ((0, 128, 84, 2.91, 240), (4, 131, 85, 3.05, 251)):
        record = RecordMessage()
        record.timestamp = ms(START + dt.timedelta(seconds=second))
        record.heart_rate = hr
        record.cadence = cadence
        record.speed = speed
        record.power = power
        record.distance = second * 3.0
        builder.add(record)
    empty = RecordMessage()
    empty.timestamp = ms(START + dt.timedelta(seconds=8))
    empty.distance = 24.0  # the odometer alone: not a measurement
    builder.add(empty)
    lost = RecordMessage()
    lost.heart_rate = 133
    builder.add(lost)
    lap = LapMessage()
    lap.timestamp = ms(START + dt.timedelta(seconds=12))
    lap.start_time = ms(START)
    builder.add(lap)
    session = SessionMessage()
    session.timestamp = ms(START + dt.timedelta(seconds=12))
    session.start_time = ms(START)
    session.total_elapsed_time = 12.0
    session.total_timer_time = 12.0
    session.sport = Sport.RUNNING
    session.total_distance = 36.0
    builder.add(session)
    closing = ActivityMessage()
    closing.timestamp = ms(START + dt.timedelta(seconds=12))
    closing.local_timestamp = int((START - FIT_EPOCH).total_seconds()) + 12 + 7200
    closing.num_sessions = 1
    builder.add(closing)
    return bytes(builder.build().to_bytes())


def parse(data: bytes) -> tuple[list[Sample], list[Rejected], ParseReport]:
    return parse_bytes(fit.parse, data, "run.fit")


def test_records_and_the_session_become_samples_from_the_device() -> None:
    samples, rejected, report = parse(activity())
    t0, t4, t12 = (START + dt.timedelta(seconds=s) for s in (0, 4, 12))
    got = [(s.code, s.value, s.unit, s.start, s.end, s.qualifier) for s in samples]
    assert got == [
        ("8867-4", 128, "/min", t0, None, None),
        ("x-rejuve:cadence", 84, "/min", t0, None, None),
        ("x-rejuve:speed", 2.91, "m/s", t0, None, None),
        ("x-rejuve:power", 240, "W", t0, None, None),
        ("8867-4", 131, "/min", t4, None, None),
        ("x-rejuve:cadence", 85, "/min", t4, None, None),
        ("x-rejuve:speed", 3.05, "m/s", t4, None, None),
        ("x-rejuve:power", 251, "W", t4, None, None),
        ("x-rejuve:workout", 0.2, "min", t0, t12, "running"),
        ("x-rejuve:distance", 36, "m", t0, t12, None),
    ]
    assert {s.source for s in samples} == {"garmin fenix6 (FIT)"}
    # FIT states UTC; the wall-clock offset comes only in the closing activity message
    assert {s.tz_offset_minutes for s in samples} == {None}
    assert samples[0].locator == "run.fit message 2 (record)"
    [lost] = rejected
    assert (lost.reason, lost.field, lost.record) == (
        "bad_timestamp",
        "timestamp",
        {"heart_rate": 133},
    )
    # file_id, 4 records, lap, session, activity
    assert report.read == 8
    assert report.unmapped == {
        "fit record without heart rate, cadence, speed or power": 1,
        "fit lap": 1,
        "fit activity": 1,
    }


def test_files_chained_in_one_input_are_all_read() -> None:
    one = activity()
    samples, _, report = parse(one + one)
    assert len(samples) == 20 and report.read == 16


def _damaged(data: bytes) -> FormatError:
    with pytest.raises(FormatError) as refused:
        parse(data)
    assert "\n" not in str(refused.value)
    return refused.value


def test_a_cut_file_is_refused_with_its_offset() -> None:
    data = activity()
    error = _damaged(data[: len(data) // 2])
    assert str(error).startswith("run.fit byte ")
    assert "truncated" in str(error)
    assert int(error.where.split()[-1]) <= len(data) // 2


def test_a_file_with_a_flipped_byte_is_refused_by_its_crc() -> None:
    data = bytearray(activity())
    data[40] ^= 0x01  # inside a record's values: still decodable, but not what was written
    error = _damaged(bytes(data))
    assert str(error) == (
        f"run.fit byte {len(data)}: damaged FIT file: its CRC does not match (file altered or cut)"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a FIT file: it is empty"),
        (b"<?xml version='1.0'?><gpx/>", "not a FIT file, or its header is damaged"),
        (b"\x0e\x10", "not a FIT file, or its header is damaged"),
    ],
)
def test_what_is_not_fit_is_refused(data: bytes, reason: str) -> None:
    assert reason in str(_damaged(data))


def raw_fit(records: int) -> bytes:
    """A FIT file of `records` heart-rate records, written byte by byte (fit-tool keeps
    every message in memory: too slow for a long file)."""
    definition = struct.pack("<BBBHB", 0x40, 0, 0, 20, 2) + bytes([253, 4, 0x86, 3, 1, 0x02])
    first = int((START - FIT_EPOCH).total_seconds())
    body = bytearray(definition)
    pack = struct.Struct("<BIB").pack
    for n in range(records):
        body += pack(0x00, first + n, 60 + n % 100)
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    header += struct.pack("<H", compute_crc(header))
    return header + bytes(body) + struct.pack("<H", compute_crc(header + body))


def test_memory_stays_flat_on_a_long_file() -> None:
    """Six hours of one-second heart rate (21,600 records, ~130 kB) are parsed as a
    stream: peak memory is that of a few messages (~6 kB measured, whatever the length),
    not of the file or of its samples."""
    data = raw_fit(21_600)
    count, report, peak = streamed(fit.parse, data, "day.fit")
    assert count == report.read == 21_600
    assert peak < 64 * 1024, peak
