"""The Garmin Connect export parser, on a hand-written `DI_CONNECT/` tree shaped like a
real export (tests/fixtures/garmin: file names, nesting and field names as Garmin writes
them), zipped here as "Export Your Data" sends it.

None of these tests needs the local stack."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pytest

from backend.ingest.formats import garmin
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample
from tests.formats import test_fit
from tests.formats.outcomes import parse_bytes, streamed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "garmin"
UTC = dt.UTC


def export_zip(root: Path = FIXTURES, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def parse(data: bytes) -> tuple[list[Sample], list[Rejected], ParseReport]:
    return parse_bytes(garmin.parse, data, "export.zip")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_every_kind_of_file_is_read_with_its_units_and_offsets() -> None:
    samples, rejected, report = parse(export_zip())
    got = [
        (s.code, s.value, s.unit, s.start, s.end, s.tz_offset_minutes, s.qualifier) for s in samples
    ]
    day1 = (at("2024-03-29T23:00:00"), at("2024-03-30T23:00:00"))
    day2 = (at("2024-03-30T23:00:00"), at("2024-03-31T22:00:00"))  # 23 h: summer time
    night = (at("2024-03-30T21:41:00"), at("2024-03-31T05:12:00"))
    run = (
        at("2024-03-31T08:30:00"),
        at("2024-03-31T08:30:00") + dt.timedelta(milliseconds=2712345.947265625),
    )
    walk = (at("2024-04-02T07:00:00"), at("2024-04-02T07:30:00"))
    assert got == [
        # DI-Connect-Aggregator/UDSFile: the day as Garmin bounds it, offset from its clocks
        ("41950-7", 11234, "{steps}", *day1, 60, None),
        ("x-rejuve:distance", 8862, "m", *day1, 60, None),
        ("41981-2", 612, "kcal", *day1, 60, None),
        ("x-rejuve:basal-energy", 1684, "kcal", *day1, 60, None),
        ("40443-4", 52, "/min", *day1, 60, None),
        ("x-rejuve:stress-level", 31, "{score}", *day1, 60, None),
        ("41950-7", 4021, "{steps}", *day2, 60, None),
        ("x-rejuve:distance", 3190, "m", *day2, 60, None),
        ("41981-2", 188, "kcal", *day2, 60, None),
        ("x-rejuve:basal-energy", 1611, "kcal", *day2, 60, None),
        # DI-Connect-Fitness: ms since the epoch, centimetres, offset +02:00 (Paris, DST)
        ("x-rejuve:workout", 2712345.947265625 / 60000, "min", *run, 120, "running"),
        ("x-rejuve:distance", 803450, "cm", *run, 120, None),
        ("8867-4", 151, "/min", *run, 120, None),
        # Kathmandu is UTC+05:45
        ("x-rejuve:workout", 30, "min", *walk, 345, "walking"),
        ("x-rejuve:distance", 241050, "cm", *walk, 345, None),
        ("8867-4", 102, "/min", *walk, 345, None),
        # DI-Connect-Wellness/_sleepData: totals per stage over the night, UTC
        ("x-rejuve:sleep-stage", 87, "min", *night, None, "asleep_deep"),
        ("x-rejuve:sleep-stage", 240, "min", *night, None, "asleep_core"),
        ("x-rejuve:sleep-stage", 106, "min", *night, None, "asleep_rem"),
        ("x-rejuve:sleep-stage", 18, "min", *night, None, "awake"),
        ("93832-4", 5220 + 14400 + 6360, "s", *night, None, None),
        ("9279-1", 14, "/min", *night, None, None),
        # DI-Connect-Wellness/_userBioMetrics: grams
        ("29463-7", 72450, "g", at("2024-03-30T05:47:12"), None, None, None),
        ("41982-0", 21.4, "%", at("2024-03-30T05:47:12"), None, None, None),
        ("39156-5", 23.1, "kg/m2", at("2024-03-30T05:47:12"), None, None, None),
        ("29463-7", 72100, "g", at("2024-04-01T06:02:00"), None, None, None),
    ]
    assert {s.source for s in samples} == {
        "Garmin Connect",
        "Garmin Connect (INDEX_SCALE)",
        "Garmin Connect (MANUAL)",
    }
    # the strength session's clocks are 127 minutes apart: no UTC offset is
    [bad] = rejected
    assert (bad.reason, bad.field) == ("bad_timestamp", "startTimeLocal")
    assert "timeZoneId 124" in bad.detail
    # the account's name in the file name (jane_doe_0_...) is not repeated
    assert bad.locator == (
        "export.zip/DI_CONNECT/DI-Connect-Fitness/<account>_0_summarizedActivities.json[2]"
    )
    assert report.read == 3 + 3 + 2 + 3
    assert report.unmapped == {
        "garmin stress: no data (negative sentinel)": 1,
        "garmin daily summary without data": 1,
        "garmin sleep without a sleep window": 1,
        "garmin biometrics without weight": 1,
        "garmin file DI-Connect-Wellness/#_heartRateZones.json": 1,
        "garmin file DI-Connect-User/user_profile.json": 1,
    }


@pytest.mark.parametrize(
    ("difference_ms", "minutes"),
    [
        (0, 0),
        (3_600_000, 60),  # Paris in winter
        (7_200_000, 120),  # Paris in summer
        (-18_000_000, -300),  # New York in winter
        (19_800_000, 330),  # India, half an hour
        (20_700_000, 345),  # Nepal, a quarter
        (-34_200_000, -570),  # Marquesas
        (50_400_000, 840),  # Kiribati, the easternmost
        (-43_200_000, -720),  # Baker Island, the westernmost
    ],
)
def test_garmin_local_clock_gives_the_offset(difference_ms: int, minutes: int) -> None:
    assert garmin.local_offset(difference_ms, 124) == minutes


@pytest.mark.parametrize(
    "difference_ms",
    [
        7 * 60_000,  # not a quarter hour
        3_600_001,  # a millisecond off
        15 * 3_600_000,  # beyond UTC+14
        -13 * 3_600_000,  # beyond UTC-12
    ],
)
def test_a_difference_that_is_no_offset_is_refused(difference_ms: int) -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        garmin.local_offset(difference_ms, 124)


def _one_file(name: str, entries: object) -> bytes:
    return export_zip(FIXTURES / "none", {f"DI_CONNECT/{name}": json.dumps(entries).encode()})


def test_bad_fields_become_rejected_records_naming_the_field() -> None:
    data = _one_file(
        "DI-Connect-Aggregator/UDSFile_2024-01-01_2024-04-10.json",
        [
            {"calendarDate": "2024-01-01", "wellnessStartTimeGmt": "yesterday"},
            {
                "wellnessStartTimeGmt": "2024-01-01T00:00:00.0",
                "wellnessEndTimeGmt": "2024-01-02T00:00:00.0",
                "totalSteps": "many",
            },
            {
                "wellnessStartTimeGmt": "2024-01-02T00:00:00.0",
                "wellnessEndTimeGmt": "2024-01-01T00:00:00.0",
            },
            ["not", "an", "object"],
        ],
    )
    samples, rejected, report = parse(data)
    assert samples == []
    assert [(r.reason, r.field) for r in rejected] == [
        ("bad_timestamp", "wellnessStartTimeGmt"),
        ("bad_value", "totalSteps"),
        ("bad_interval", "wellnessEndTimeGmt"),
        ("bad_record", None),
    ]
    assert rejected[0].locator == (
        "export.zip/DI_CONNECT/DI-Connect-Aggregator/UDSFile_2024-01-01_2024-04-10.json[0]"
    )
    assert report.read == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 truncated", "export.zip: not a zip archive"),
        (b"{}", "export.zip: not a zip archive"),
        (
            export_zip(FIXTURES / "none", {"apple_health_export/export.xml": b"<HealthData/>"}),
            "export.zip: not a Garmin Connect export: no DI_CONNECT/ folder",
        ),
    ],
)
def test_input_that_is_no_garmin_export_is_refused_in_one_line(data: bytes, message: str) -> None:
    with pytest.raises(FormatError) as refused:
        parse(data)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(message)


def _stored(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"DI_CONNECT/{name}", text)
    return buffer.getvalue()


def test_broken_json_names_the_file_and_the_entry() -> None:
    data = _stored("DI-Connect-Wellness/1_sleepData.json", '[\n {"a": 1},\n {"b" 2}\n]')
    with pytest.raises(FormatError) as refused:
        parse(data)
    assert str(refused.value) == (
        "export.zip/DI_CONNECT/DI-Connect-Wellness/1_sleepData.json[1]: not readable as JSON:"
        " Expecting ':' delimiter"
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_json_allows_are_bad_values(constant: str) -> None:
    data = _stored(
        "DI-Connect-Wellness/1_userBioMetrics.json",
        f'[{{"weight": {{"weight": {constant}, "timestampGMT": "2024-01-01T06:00:00.0"}}}}]',
    )
    samples, rejected, _ = parse(data)
    assert samples == []
    assert [(r.reason, r.field) for r in rejected] == [("bad_value", "weight")]


@pytest.mark.parametrize(
    "text",
    [
        '{"summarizedActivitiesExport": []}',
        '[{"summarizedActivitiesExport": []}, {"summarizedActivitiesExport": []}]',
        '[{"summarizedActivitiesExport": [{"activityId": 1}]',
        "[]",
    ],
)
def test_activities_not_in_garmins_one_block_are_refused(text: str) -> None:
    data = _stored("DI-Connect-Fitness/a_0_summarizedActivities.json", text)
    with pytest.raises(
        FormatError, match=r"^export\.zip/DI_CONNECT/DI-Connect-Fitness/<account>_0_summ"
    ):
        parse(data)


def test_activities_are_read_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many activities the file holds, only one entry's text is held: an entry
    past MAX_ENTRY_CHARS is refused, the ones before it were already read."""
    monkeypatch.setattr(garmin, "MAX_ENTRY_CHARS", 2000)
    activity = {
        "activityType": "running",
        "beginTimestamp": 1711873800000,
        "startTimeLocal": 1711881000000,
        "duration": 60000.0,
    }
    entries = [activity] * 500 + [{**activity, "splits": ["x" * 3000]}]
    data = _stored(
        "DI-Connect-Fitness/a_0_summarizedActivities.json",
        json.dumps([{"summarizedActivitiesExport": entries}]),
    )
    report = ParseReport()
    stream = garmin.parse(io.BytesIO(data), report, name="export.zip")
    with pytest.raises(FormatError, match=r"\[500\]: an element longer than 2,000 characters"):
        for _ in stream:
            pass
    assert report.read == 500


def test_a_member_past_the_limit_is_refused_before_it_is_inflated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(garmin, "MAX_MEMBER_BYTES", 1000)
    bomb = json.dumps([{"calendarDate": "2024-01-01"}] * 1000).encode()  # ~30 kB, zips to ~100 B
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("DI_CONNECT/DI-Connect-Wellness/1_sleepData.json", bomb)
    with pytest.raises(FormatError, match="larger than 1,000 bytes uncompressed: refused"):
        parse(buffer.getvalue())


def test_a_member_that_lies_about_its_size_is_stopped_at_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A zip bomb states a small size: the stream is cut at the limit all the same."""
    monkeypatch.setattr(garmin, "MAX_MEMBER_BYTES", 1000)
    body = json.dumps([{"calendarDate": "2024-01-01"}] * 1000).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("DI_CONNECT/DI-Connect-Wellness/1_sleepData.json", body)
    data = buffer.getvalue()
    # Rewrite the stated size (local header and central directory) to 500 bytes.
    stated = len(body).to_bytes(4, "little")
    assert data.count(stated) == 2
    with pytest.raises(FormatError, match=r"1_sleepData\.json"):
        parse(data.replace(stated, (500).to_bytes(4, "little")))


def test_memory_stays_flat_on_a_large_file() -> None:
    """Twenty years of daily summaries in one file (~6 MB): read entry by entry, the peak
    is a block of text and one entry (~0.8 MB measured, the same for 1,000 days), far
    below the file's size, let alone its objects."""
    [uds] = (FIXTURES / "DI_CONNECT/DI-Connect-Aggregator").glob("UDSFile_*.json")
    day = json.loads(uds.read_text())[0]
    data = _stored(
        "DI-Connect-Aggregator/UDSFile_2004-01-01_2024-01-01.json", json.dumps([day] * 7300)
    )
    count, report, peak = streamed(garmin.parse, data, "export.zip")
    assert (report.read, count) == (7300, 7300 * 6)
    size = len(json.dumps([day] * 7300))
    assert size > 6_000_000
    assert peak < 2_000_000, (peak, size)


def test_unmapped_files_are_counted_by_kind_without_the_account_name() -> None:
    data = export_zip(
        FIXTURES / "none",
        {
            "DI_CONNECT/DI-Connect-Fitness/jane.doe@example.com_0_workout.json": b"[]",
            "DI_CONNECT/DI-Connect-Fitness/jane.doe@example.com_1_workout.json": b"[]",
            "DI_CONNECT/DI-Connect-Fitness/jdoe_0_personalRecord.json": b"[]",
            "DI_CONNECT/DI-Connect-Metrics/MetricsMaxMetData_20230101_20230411_104.json": b"[]",
            "DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip": b"PK",
        },
    )
    _, _, report = parse(data)
    assert report.unmapped == {
        "garmin file DI-Connect-Fitness/<account>_#_workout.json": 2,
        "garmin file DI-Connect-Fitness/<account>_#_personalRecord.json": 1,
        "garmin file DI-Connect-Metrics/MetricsMaxMetData_#_#_#.json": 1,
        "garmin uploads zip skipped: export.zip/DI_CONNECT/DI-Connect-Uploaded-Files/"
        "UploadedFiles_0-_Part1.zip: not a zip archive (File is not a zip file): expected a"
        " zip of uploaded activity files": 1,
    }


def test_the_di_connect_folder_itself_is_an_export_too() -> None:
    samples, _, _ = parse(export_zip(FIXTURES / "DI_CONNECT"))
    assert len(samples) == len(parse(export_zip())[0]) > 0


def _uploads(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_uploaded_fit_files_are_read_and_a_damaged_one_is_skipped_and_counted() -> None:
    run = test_fit.activity()
    nested = _uploads(
        {
            "jane.doe@example.com_14503214587.fit": run,
            "jane.doe@example.com_14503214588.fit": run[: len(run) // 2],
            "jane.doe@example.com_14503214589.gpx": b"<gpx/>",
        }
    )
    data = export_zip(
        FIXTURES / "none",
        {"DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip": nested},
    )
    samples, rejected, report = parse(data)
    expected, lost, _ = test_fit.parse(run)
    assert [(s.code, s.value, s.start, s.source) for s in samples] == [
        (s.code, s.value, s.start, s.source) for s in expected
    ]
    where = "export.zip/DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip"
    assert samples[0].locator == f"{where}/<account>_14503214587.fit message 2 (record)"
    assert [r.reason for r in rejected] == [r.reason for r in lost]
    skipped = [k for k in report.unmapped if k.startswith("garmin uploaded FIT file skipped")]
    assert skipped == [
        f"garmin uploaded FIT file skipped: {where}/<account>_14503214588.fit byte"
        f" {len(run) // 2}: FIT file ends in the middle of a message (truncated)"
    ]
    assert report.unmapped["garmin uploaded file .gpx"] == 1
    assert "jane" not in " ".join([*report.unmapped, *(s.locator for s in samples)])
