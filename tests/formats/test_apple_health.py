"""The Apple Health export parser, on hand-written exports shaped like the phone's.

None of these tests needs the local stack."""

from __future__ import annotations

import datetime as dt
import io
import re
import tracemalloc
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import defusedxml.ElementTree
import pytest

from backend.ingest.formats.apple_health import parse, parse_path
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "apple_health"
EXPORT = FIXTURES / "export.xml"
EXPORT_DE = FIXTURES / "export_de_DE.xml"

CET = dt.timezone(dt.timedelta(hours=1))
WATCH = (
    'device="&lt;&lt;HKDevice: 0x283b2c1e0&gt;, name:Apple Watch, manufacturer:Apple Inc., '
    'model:Watch, hardware:Watch6,1, software:10.1&gt;"'
)

# (code, value, unit, qualifier, tz_offset_minutes) of every sample in export.xml, in order.
EXPECTED = [
    ("8867-4", 62.0, "count/min", None, 60),
    ("40443-4", 54.0, "count/min", None, 60),
    ("x-rejuve:walking-heart-rate-average", 98.5, "count/min", None, 60),
    ("80404-7", 48.2, "ms", None, 60),
    ("55423-8", 312.0, "count", None, 60),
    ("x-rejuve:distance", 0.241, "km", None, 60),
    ("x-rejuve:distance", 1.2, "mi", None, -420),
    ("41981-2", 0.512, "kcal", None, 60),
    ("41981-2", 245.0, "Cal", None, 60),
    ("x-rejuve:basal-energy", 1.102, "kcal", None, 60),
    ("29463-7", 68.4, "kg", None, 60),
    ("29463-7", 150.8, "lb", None, -300),
    ("8302-2", 171.0, "cm", None, -300),
    ("41982-0", 25.3, "%", None, 60),  # written 0.253
    ("39156-5", 23.4, "count", None, 60),
    ("8480-6", 128.0, "mmHg", None, 60),
    ("8462-4", 82.0, "mmHg", None, 60),
    ("2339-0", 97.0, "mg/dL", None, 60),
    ("2339-0", 5.4, "mmol<180.1558800000541>/L", None, 60),
    ("59408-5", 97.0, "%", None, 60),  # written 0.97
    ("9279-1", 14.5, "count/min", None, 60),
    ("8310-5", 36.7, "degC", None, 60),
    ("8310-5", 98.1, "degF", None, -480),
    ("x-rejuve:sleep-stage", 462.0, "min", "in_bed", -300),  # iOS 12 Clock
    ("x-rejuve:sleep-stage", 428.5, "min", "asleep", -300),  # old "Asleep"
    ("x-rejuve:sleep-stage", 480.0, "min", "in_bed", 60),
    ("x-rejuve:sleep-stage", 51.5, "min", "asleep_core", 60),
    ("x-rejuve:sleep-stage", 46.5, "min", "asleep_deep", 60),
    ("x-rejuve:sleep-stage", 21.5, "min", "asleep_rem", 60),
    ("x-rejuve:sleep-stage", 3.5, "min", "awake", 60),
    ("x-rejuve:sleep-stage", 270.0, "min", "asleep", 330),  # AsleepUnspecified
    ("x-rejuve:workout", 30.5, "min", "running", 60),
    ("x-rejuve:workout", 45.0, "min", "traditional_strength_training", 120),  # 2700 s
]


def run(outcomes: Iterable[Sample | Rejected]) -> tuple[list[Sample], list[Rejected]]:
    samples: list[Sample] = []
    rejected: list[Rejected] = []
    for outcome in outcomes:
        if isinstance(outcome, Sample):
            samples.append(outcome)
        else:
            rejected.append(outcome)
    return samples, rejected


def parse_bytes(
    data: bytes, report: ParseReport | None = None
) -> tuple[list[Sample], list[Rejected]]:
    return run(parse(io.BytesIO(data), report or ParseReport()))


def table(samples: list[Sample]) -> list[tuple[str, float | None, str, str | None, int | None]]:
    return [(s.code, s.value, s.unit, s.qualifier, s.tz_offset_minutes) for s in samples]


def at(needle: str) -> str:
    """The locator of the one line of export.xml that holds `needle`."""
    lines = [n for n, text in enumerate(EXPORT.read_text().splitlines(), 1) if needle in text]
    assert len(lines) == 1, (needle, lines)
    return f"export.xml line {lines[0]}"


def export_doc(body: str, locale: str = "en_US") -> bytes:
    """A minimal export: no DTD, the prologue elements, then `body`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<HealthData locale="{locale}">\n'
        ' <ExportDate value="2024-03-05 21:04:11 +0100"/>\n'
        ' <Me HKCharacteristicTypeIdentifierDateOfBirth=""/>\n'
        f"{body}"
        "</HealthData>\n"
    ).encode()


def record(kind: str, value: str | None = "62", unit: str = "count/min", **extra: str) -> str:
    # Apple names devices with a typographic apostrophe, U+2019: "Anna\u2019s Apple Watch".
    attrs = {
        "type": f"HKQuantityTypeIdentifier{kind}",
        "sourceName": "Anna\u2019s Apple Watch",
        "unit": unit,
        "startDate": "2024-03-02 07:15:00 +0100",
        "endDate": "2024-03-02 07:15:00 +0100",
        **({"value": value} if value is not None else {}),
        **extra,
    }
    return " <Record " + " ".join(f'{k}="{v}"' for k, v in attrs.items()) + "/>\n"


# --- the realistic export --------------------------------------------------------------


def test_every_sample_of_the_export_with_code_value_unit_qualifier_and_offset() -> None:
    samples, _ = run(parse_path(EXPORT, ParseReport()))
    assert table(samples) == EXPECTED


def test_a_sample_carries_times_source_and_the_line_it_came_from() -> None:
    samples, _ = run(parse_path(EXPORT, ParseReport()))
    heart = samples[0]
    assert heart.start == dt.datetime(2024, 3, 2, 7, 15, tzinfo=CET)
    assert heart.end == heart.start
    assert heart.source == "Anna\u2019s Apple Watch (10.1) [Apple Watch]"
    assert heart.locator == at('value="62"')
    assert heart.member_ref is None

    deep = next(s for s in samples if s.qualifier == "asleep_deep")
    assert (deep.start, deep.end) == (
        dt.datetime(2024, 3, 1, 23, 54, tzinfo=CET),
        dt.datetime(2024, 3, 2, 0, 40, 30, tzinfo=CET),
    )
    weight_lb = next(s for s in samples if s.unit == "lb")
    assert weight_lb.start == dt.datetime(2019, 1, 6, 13, 0, tzinfo=dt.UTC)
    assert weight_lb.source == "Health (12.1)"  # no device attribute


def test_unreadable_records_are_rejected_with_reason_field_and_line() -> None:
    _, rejected = run(parse_path(EXPORT, ParseReport()))
    got = [(r.reason, r.field, r.locator) for r in rejected]
    assert got == [
        ("bad_value", "value", at('value="seventy"')),
        ("bad_timestamp", "startDate", at("07:25:00Z")),
        ("missing_value", "value", at("08:45:40 +0100")),
        ("bad_interval", "endDate", at("06:30:00 +0100")),
    ]
    bad_value = rejected[0]
    assert bad_value.detail == "value 'seventy' is not a number"
    assert bad_value.record["value"] == "seventy"
    assert bad_value.record["type"] == "HKQuantityTypeIdentifierHeartRate"
    assert bad_value.record["device"] == (
        "<<HKDevice: 0x283b2c1e0>, name:Apple Watch, manufacturer:Apple Inc., "
        "model:Watch, hardware:Watch6,1, software:10.1>"
    )
    assert "2024-03-02T07:25:00Z" in rejected[1].detail
    assert rejected[3].detail == (
        "endDate '2024-03-03 06:10:00 +0100' is before startDate '2024-03-03 06:30:00 +0100'"
    )


def test_report_counts_every_data_element_and_each_unmapped_type() -> None:
    report = ParseReport()
    samples, rejected = run(parse_path(EXPORT, report))
    data_elements = r"^ <(Record|Correlation|Workout|ActivitySummary)\b"
    top_level = re.findall(data_elements, EXPORT.read_text(), re.MULTILINE)
    assert report.read == len(top_level) == 43
    assert report.unmapped == Counter(
        {
            "HKQuantityTypeIdentifierDietaryWater": 2,
            "ActivitySummary": 2,
            "HKCategoryTypeIdentifierAppleStandHour": 1,
        }
    )
    # Everything read is accounted for; the correlation's readings are the top-level ones.
    correlations = top_level.count("Correlation")
    assert report.read == len(samples) + len(rejected) + report.unmapped.total() + correlations


def test_apples_dtd_header_is_accepted_by_defusedxml_itself() -> None:
    with EXPORT.open("rb") as data:
        tags = Counter(element.tag for _, element in defusedxml.ElementTree.iterparse(data))
    assert tags["HealthData"] == 1
    assert tags["Record"] == 40  # 38 top-level + 2 inside the correlation


def test_ios16_broken_dtd_is_read_with_the_same_lines() -> None:
    """iOS 16 (export version 12) left `<!ATTLIST` declarations unterminated."""
    original = EXPORT.read_bytes()
    broken = original.replace(
        b"  brand            CDATA #IMPLIED\n>", b"  brand            CDATA #IMPLIED\n"
    )
    assert broken != original
    with pytest.raises(defusedxml.ElementTree.ParseError):
        list(defusedxml.ElementTree.iterparse(io.BytesIO(broken)))

    expected = list(parse(io.BytesIO(original), ParseReport()))
    assert list(parse(io.BytesIO(broken), ParseReport())) == expected


def test_control_characters_in_names_do_not_sink_the_export() -> None:
    data = export_doc(record("HeartRate", sourceName="Anna\u2019s\x0bWatch"))
    samples, _ = parse_bytes(data)
    assert [(s.value, s.source) for s in samples] == [(62.0, "Anna\u2019s Watch")]


# --- one behaviour at a time ------------------------------------------------------------


def test_blood_pressure_from_export_is_taken_once() -> None:
    samples, _ = run(parse_path(EXPORT, ParseReport()))
    pressures = [s for s in samples if s.code in ("8480-6", "8462-4")]
    assert [(s.code, s.value) for s in pressures] == [("8480-6", 128.0), ("8462-4", 82.0)]
    top_level = [
        n
        for n, text in enumerate(EXPORT.read_text().splitlines(), 1)
        if text.startswith(' <Record type="HKQuantityTypeIdentifierBloodPressure')
    ]
    assert [s.locator for s in pressures] == [f"export.xml line {n}" for n in top_level]


CORRELATION = (
    ' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron"'
    ' startDate="2024-03-02 07:09:30 +0100" endDate="2024-03-02 07:09:30 +0100">\n'
    '  <MetadataEntry key="HKWasUserEntered" value="0"/>\n'
    f"{record('BloodPressureSystolic', '131', 'mmHg', sourceName='Omron')}"
    f"{record('BloodPressureDiastolic', '85', 'mmHg', sourceName='Omron')}"
    " </Correlation>\n"
)
TOP_LEVEL_PRESSURE = record("BloodPressureSystolic", "131", "mmHg", sourceName="Omron") + record(
    "BloodPressureDiastolic", "85", "mmHg", sourceName="Omron"
)


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        pytest.param(CORRELATION, [7, 8], id="correlation only"),
        pytest.param(TOP_LEVEL_PRESSURE, [5, 6], id="top level only"),
        pytest.param(TOP_LEVEL_PRESSURE + CORRELATION, [5, 6], id="top level, then correlation"),
        pytest.param(CORRELATION + TOP_LEVEL_PRESSURE, [7, 8], id="correlation, then top level"),
    ],
)
def test_each_blood_pressure_reading_comes_out_once_wherever_it_is(
    body: str, lines: list[int]
) -> None:
    report = ParseReport()
    samples, rejected = parse_bytes(export_doc(body), report)
    assert [(s.code, s.value, s.unit) for s in samples] == [
        ("8480-6", 131.0, "mmHg"),
        ("8462-4", 85.0, "mmHg"),
    ]
    assert [s.locator for s in samples] == [f"export.xml line {n}" for n in lines]
    assert rejected == []
    assert report.unmapped == Counter()


def test_other_correlations_are_counted_unmapped_by_type() -> None:
    food = (
        ' <Correlation type="HKCorrelationTypeIdentifierFood" sourceName="Lifesum"'
        ' startDate="2024-03-02 12:00:00 +0100" endDate="2024-03-02 12:00:00 +0100">\n'
        f"{record('DietaryEnergyConsumed', '540', 'Cal', sourceName='Lifesum')}"
        " </Correlation>\n"
    )
    report = ParseReport()
    assert parse_bytes(export_doc(food), report) == ([], [])
    assert report.unmapped == Counter({"HKCorrelationTypeIdentifierFood": 1})
    assert report.read == 1


@pytest.mark.parametrize(
    ("duration", "unit", "minutes"),
    [("30.5", "min", 30.5), ("1800", "s", 30.0), ("1.25", "hr", 75.0)],
)
def test_workout_duration_becomes_minutes(duration: str, unit: str, minutes: float) -> None:
    workout = (
        ' <Workout workoutActivityType="HKWorkoutActivityTypeHighIntensityIntervalTraining"'
        f' duration="{duration}" durationUnit="{unit}" sourceName="Anna\u2019s Apple Watch"'
        ' startDate="2024-03-02 17:00:00 +0100" endDate="2024-03-02 18:20:00 +0100"/>\n'
    )
    samples, _ = parse_bytes(export_doc(workout))
    assert [(s.code, s.value, s.unit, s.qualifier) for s in samples] == [
        ("x-rejuve:workout", minutes, "min", "high_intensity_interval_training")
    ]


@pytest.mark.parametrize(
    ("attributes", "reason", "field"),
    [
        ('durationUnit="min"', "missing_value", "duration"),
        ('duration="30" durationUnit="fortnight"', "bad_value", "durationUnit"),
        ('duration="thirty" durationUnit="min"', "bad_value", "duration"),
    ],
)
def test_unreadable_workouts_are_rejected(attributes: str, reason: str, field: str) -> None:
    workout = (
        f' <Workout workoutActivityType="HKWorkoutActivityTypeYoga" {attributes}'
        ' sourceName="Anna\u2019s Apple Watch"'
        ' startDate="2024-03-02 17:00:00 +0100" endDate="2024-03-02 17:30:00 +0100"/>\n'
    )
    samples, rejected = parse_bytes(export_doc(workout))
    assert samples == []
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        (reason, field, "export.xml line 5")
    ]
    assert rejected[0].record["workoutActivityType"] == "HKWorkoutActivityTypeYoga"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing_value"),
        ("", "missing_value"),
        ("72,5", "bad_value"),  # Apple writes "." whatever the locale: a comma is not ours
        ("nan", "bad_value"),
        ("1e999", "bad_value"),
        ("1_000", "bad_value"),
    ],
)
def test_values_that_are_not_numbers_are_rejected(value: str | None, reason: str) -> None:
    samples, rejected = parse_bytes(export_doc(record("HeartRate", value), locale="de_DE"))
    assert samples == []
    assert [(r.reason, r.field) for r in rejected] == [(reason, "value")]


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        ("2024-03-02T07:15:00+01:00", "bad_timestamp"),
        ("2024-03-02 07:15:00", "bad_timestamp"),
        ("2024-02-30 07:15:00 +0100", "bad_timestamp"),
        ("2024-03-02 25:15:00 +0100", "bad_timestamp"),
        ("2024-03-02 07:15:00 +2400", "bad_timestamp"),
        ("", "missing_value"),
        ("2024-03-02 07:15:01 +0100", "bad_interval"),  # after the end
    ],
)
def test_unreadable_dates_are_rejected(start: str, reason: str) -> None:
    samples, rejected = parse_bytes(export_doc(record("HeartRate", startDate=start)))
    assert samples == []
    field = "endDate" if reason == "bad_interval" else "startDate"
    assert [(r.reason, r.field) for r in rejected] == [(reason, field)]


def test_offsets_are_kept_as_stated() -> None:
    body = record(
        "StepCount",
        "40",
        "count",
        startDate="2024-03-02 07:15:00 -0930",
        endDate="2024-03-02 07:20:00 -0930",
    )
    (steps,), _ = parse_bytes(export_doc(body))
    assert steps.tz_offset_minutes == -570
    assert steps.start.utcoffset() == dt.timedelta(hours=-9, minutes=-30)
    assert steps.end is not None and steps.end - steps.start == dt.timedelta(minutes=5)


def test_unknown_sleep_values_and_typeless_records_are_rejected() -> None:
    sleep = (
        ' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Anna\u2019s Apple Watch"'
        ' startDate="2024-03-02 01:00:00 +0100" endDate="2024-03-02 01:30:00 +0100"'
        ' value="HKCategoryValueSleepAnalysisDaydreaming"/>\n'
    )
    typeless = ' <Record sourceName="Nap" startDate="2024-03-02 07:15:00 +0100"/>\n'
    samples, rejected = parse_bytes(export_doc(sleep + typeless))
    assert samples == []
    assert [(r.reason, r.field) for r in rejected] == [
        ("bad_value", "value"),
        ("missing_value", "type"),
    ]
    assert "HKCategoryValueSleepAnalysisDaydreaming" in rejected[0].detail


@pytest.mark.parametrize(
    ("attributes", "source"),
    [
        ('sourceName="Anna\u2019s iPhone"', "Anna\u2019s iPhone"),
        ('sourceName="Anna\u2019s iPhone" sourceVersion="17.3.1"', "Anna\u2019s iPhone (17.3.1)"),
        (f'sourceName="Withings" {WATCH}', "Withings [Apple Watch]"),
        ('sourceName="Oura" device="&lt;&lt;HKDevice: 0x1&gt;, manufacturer:Oura&gt;"', "Oura"),
    ],
)
def test_source_names_app_version_and_device(attributes: str, source: str) -> None:
    body = (
        f' <Record type="HKQuantityTypeIdentifierRespiratoryRate" {attributes} unit="count/min"'
        ' startDate="2024-03-02 03:58:10 +0100" endDate="2024-03-02 03:58:10 +0100" value="14"/>\n'
    )
    (sample,), _ = parse_bytes(export_doc(body))
    assert sample.source == source


def test_locale_does_not_change_numbers() -> None:
    report = ParseReport()
    samples, rejected = run(parse_path(EXPORT_DE, report))
    assert rejected == []
    assert table(samples) == [
        ("8867-4", 72.0, "count/min", None, 120),
        ("55423-8", 1024.0, "count", None, 120),
        ("29463-7", 71.3, "kg", None, 120),
        ("41982-0", 21.5, "%", None, 120),
        ("8310-5", 38.25, "degC", None, 60),
        ("x-rejuve:sleep-stage", 46.5, "min", "asleep_core", 120),
    ]
    assert samples[0].source == "Apple Watch von Jonas (10.3) [Apple Watch]"
    assert report.read == 6


# --- files that are not Apple Health exports ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        pytest.param(
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
            "scan.pdf line 1",
            "not readable as XML: not well-formed (invalid token) at column 8",
            id="pdf",
        ),
        pytest.param(
            b'{"resourceType": "Bundle"}',
            "scan.pdf line 1",
            "not readable as XML: not well-formed (invalid token) at column 0",
            id="json",
        ),
        pytest.param(b"", "scan.pdf line 1", "no element found", id="empty"),
        pytest.param(
            b'<?xml version="1.0"?>\n<?xml-stylesheet href="CDA.xsl"?>\n'
            b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n',
            "scan.pdf line 3",
            "the root element is <{urn:hl7-org:v3}ClinicalDocument>, expected <HealthData>",
            id="clinical document",
        ),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n<!ENTITY a "aaaa">\n'
            b'<!ENTITY b "&a;&a;&a;&a;&a;">\n]>\n<HealthData locale="&b;"/>\n',
            "scan.pdf line 3",
            "declares XML entities",
            id="entity expansion",
        ),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE HealthData [\n'
            b'<!ENTITY me SYSTEM "file:///etc/passwd">\n]>\n<HealthData>&me;</HealthData>',
            "scan.pdf line 3",
            "declares XML entities",
            id="external entity",
        ),
    ],
)
def test_not_an_export_raises_format_error_naming_file_and_line(
    data: bytes, where: str, message: str
) -> None:
    with pytest.raises(FormatError) as raised:
        list(parse(io.BytesIO(data), ParseReport(), name="scan.pdf"))
    assert raised.value.where == where
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{where}: ")


def test_truncated_export_yields_what_it_read_then_raises_at_the_cut() -> None:
    whole = EXPORT.read_bytes()
    cut = whole.index(b'value="54"') + 5
    outcomes: list[Sample | Rejected] = []
    with pytest.raises(FormatError) as raised:
        outcomes.extend(parse(io.BytesIO(whole[:cut]), ParseReport()))
    line = whole[:cut].count(b"\n") + 1
    assert raised.value.where == f"export.xml line {line}"
    assert "unclosed token" in str(raised.value)
    assert "truncated?" in str(raised.value)
    assert [type(o).__name__ for o in outcomes] == ["Sample", "Rejected", "Rejected"]


# --- export.zip ----------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def phone_zip(path: Path, export_name: str = "apple_health_export/export.xml") -> Path:
    cda = export_name.replace(".xml", "_cda.xml")
    return make_zip(
        path,
        {
            export_name: EXPORT.read_bytes(),
            cda: b'<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n',
            "apple_health_export/workout-routes/route_2024-03-02_6.02pm.gpx": b"<gpx/>",
            "apple_health_export/electrocardiograms/ecg_2024-03-02.csv": b"Name,Anna\n",
        },
    )


@pytest.mark.parametrize(
    "export_name",
    ["apple_health_export/export.xml", "apple_health_export/Exportieren.xml", "export.xml"],
)
def test_zip_is_read_in_place_like_the_xml(tmp_path: Path, export_name: str) -> None:
    archive = phone_zip(tmp_path / "export.zip", export_name)
    report = ParseReport()
    from_zip = list(parse_path(archive, report))
    from_xml = list(parse_path(EXPORT, ParseReport()))

    assert len(from_zip) == len(from_xml)
    for zipped, plain in zip(from_zip, from_xml, strict=True):
        assert zipped.locator == plain.locator.replace("export.xml", f"export.zip/{export_name}")
    assert table([s for s in from_zip if isinstance(s, Sample)]) == EXPECTED
    assert report.read == 43
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.zip"]  # nothing extracted


def test_zip_with_several_or_no_exports_is_refused(tmp_path: Path) -> None:
    both = make_zip(tmp_path / "two.zip", {"a/export.xml": b"", "b/export.xml": b""})
    with pytest.raises(FormatError, match=r"^two.zip: .*found: a/export.xml, b/export.xml$"):
        list(parse_path(both, ParseReport()))

    none = make_zip(tmp_path / "none.zip", {"apple_health_export/export_cda.xml": b"<x/>"})
    with pytest.raises(FormatError, match=r"^none.zip: .*found: none$"):
        list(parse_path(none, ParseReport()))


def test_damaged_zip_and_other_files_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / "export.zip"
    fake.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FormatError, match=r"^export.zip: not a zip archive"):
        list(parse_path(fake, ParseReport()))

    archive = phone_zip(tmp_path / "cut.zip")
    archive.write_bytes(archive.read_bytes()[:3000])  # the central directory is gone
    with pytest.raises(FormatError, match=r"^cut.zip: not a zip archive"):
        list(parse_path(archive, ParseReport()))

    with pytest.raises(FormatError, match=r"^export.csv: expected an Apple Health"):
        list(parse_path(tmp_path / "export.csv", ParseReport()))


def test_corrupt_member_is_a_format_error(tmp_path: Path) -> None:
    archive = phone_zip(tmp_path / "export.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as opened:
        member = opened.getinfo("apple_health_export/export.xml")
    middle = member.header_offset + 100 + member.compress_size // 2
    data[middle : middle + 64] = bytes(64)  # zeros in the middle of the deflate stream
    archive.write_bytes(bytes(data))
    with pytest.raises(FormatError) as raised:
        list(parse_path(archive, ParseReport()))
    assert raised.value.where.startswith("export.zip/apple_health_export/export.xml")


# --- memory ------------------------------------------------------------------------------

RECORDS = 200_000
BLOCK = 1000  # records a day in the generated export

# One cycle of 20 records, in the proportions of a watch wearer's export: heart rate is the
# bulk; audio exposure and stand time are common types we do not map.
CYCLE = [
    *["HeartRate"] * 8,
    *["ActiveEnergyBurned"] * 3,
    *["StepCount"] * 3,
    *["EnvironmentalAudioExposure"] * 4,
    *["AppleStandTime"] * 2,
]
UNITS = {
    "HeartRate": "count/min",
    "ActiveEnergyBurned": "kcal",
    "StepCount": "count",
    "EnvironmentalAudioExposure": "dBASPL",
    "AppleStandTime": "min",
}


def one_day_of_records() -> str:
    """BLOCK records of one day, "DAY" standing for its date."""
    lines = []
    for n in range(BLOCK):
        kind = CYCLE[n % len(CYCLE)]
        start = dt.timedelta(seconds=n * 86)
        end = start + (dt.timedelta() if kind == "HeartRate" else dt.timedelta(minutes=1))
        lines.append(
            f' <Record type="HKQuantityTypeIdentifier{kind}" sourceName="Anna\u2019s Apple Watch"'
            f' sourceVersion="10.1" unit="{UNITS[kind]}" creationDate="DAY {end!s:0>8} +0100"'
            f' startDate="DAY {start!s:0>8} +0100"'
            f' endDate="DAY {end!s:0>8} +0100" value="{50 + n % 90}"/>\n'
        )
    return "".join(lines)


def write_big_export(path: Path, records: int) -> None:
    """An export of `records` records, written a day at a time."""
    head = EXPORT.read_text().split("<HealthData")[0]
    day = one_day_of_records()
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{head}<HealthData locale="en_US">\n')
        out.write(' <ExportDate value="2024-03-09 21:04:11 +0100"/>\n')
        for number in range(records // BLOCK):
            date = dt.date(2023, 1, 1) + dt.timedelta(days=number)
            out.write(day.replace("DAY", date.isoformat()))
        out.write("</HealthData>\n")


def test_memory_stays_flat_on_a_large_export(tmp_path: Path) -> None:
    big = tmp_path / "export.xml"
    write_big_export(big, RECORDS)
    assert big.stat().st_size > 45_000_000

    report = ParseReport()
    tracemalloc.start()
    try:
        samples = sum(1 for outcome in parse_path(big, report) if isinstance(outcome, Sample))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report.read == RECORDS
    assert samples == RECORDS * 14 // 20
    assert report.unmapped == Counter(
        {
            "HKQuantityTypeIdentifierEnvironmentalAudioExposure": RECORDS * 4 // 20,
            "HKQuantityTypeIdentifierAppleStandTime": RECORDS * 2 // 20,
        }
    )
    # Keeping the parsed elements of this file would take about 200 MB; streaming holds a
    # block's worth, under 1 MB.
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.1f} MiB"
