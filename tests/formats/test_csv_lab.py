"""CSV lab parser: the plain layout, a European lab's TOML mapping, and broken files."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backend.ingest.formats import csv_lab
from backend.ingest.formats.csv_lab import CsvMapping, MappingError
from backend.ingest.model import DATE_ONLY, Coded, FormatError, ParseReport, Rejected, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "csv_lab"
BERLIN = ZoneInfo("Europe/Berlin")


def tz(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


def run(
    payload: bytes, name: str = "labs.csv", mapping: CsvMapping | None = None
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    out = list(
        csv_lab.parse(io.BytesIO(payload), report, name=name, mapping=mapping or CsvMapping())
    )
    samples = [o for o in out if isinstance(o, Sample)]
    rejected = [o for o in out if isinstance(o, Rejected)]
    return samples, rejected, report


def test_plain_layout_with_bom_crlf_blank_lines_and_quotes() -> None:
    payload = (FIXTURES / "labs.csv").read_bytes()
    assert payload.startswith(b"\xef\xbb\xbf") and b"\r\n" in payload

    samples, rejected, report = run(payload)

    assert [
        (s.member_ref, s.code, s.value, s.unit, s.start, s.tz_offset_minutes, s.locator)
        for s in samples
    ] == [
        (
            "M-0001",
            "4548-4",
            6.1,
            "%",
            dt.datetime(2024, 3, 2, 8, 10, tzinfo=tz(1)),
            60,
            "labs.csv line 2",
        ),
        (
            "M-0001",
            "2093-3",
            187.0,
            "mg/dL",
            dt.datetime(2024, 3, 2, 8, 10, tzinfo=tz(1)),
            60,
            "labs.csv line 3",
        ),
        # 15074-8 is kept as the lab wrote it (normalisation folds it onto 2339-0 and
        # records the fold on the row), and so is its unit.
        (
            "M-0002",
            "15074-8",
            5.4,
            "mmol/L",
            dt.datetime(2024, 3, 2, 7, 5, tzinfo=dt.UTC),
            0,
            "labs.csv line 5",
        ),
        # TSH is a valid LOINC code outside the catalog: kept (stored uncatalogued).
        (
            "M-0002",
            "3016-3",
            2.1,
            "mIU/L",
            dt.datetime(2024, 3, 2, 7, 5, tzinfo=dt.UTC),
            0,
            "labs.csv line 6",
        ),
        (
            "M-0004",
            "2160-0",
            0.9,
            "mg/dL",
            dt.datetime(2024, 3, 2, 9, 0, tzinfo=tz(-5)),
            -300,
            "labs.csv line 12",
        ),
    ]
    assert {s.source for s in samples} == {"csv:unknown"}
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("missing_value", "value", "labs.csv line 7"),
        ("bad_value", "value", "labs.csv line 8"),  # "<0.3" is censored
        ("bad_timestamp", "effective_at", "labs.csv line 9"),
        ("missing_value", "member_id", "labs.csv line 10"),
        ("unknown_code", "loinc", "labs.csv line 11"),
        ("bad_row", None, "labs.csv line 13"),  # "0,9" split the row
        ("missing_value", "unit", "labs.csv line 14"),
        ("bad_timestamp", "effective_at", "labs.csv line 15"),  # no offset, no zone
        ("bad_value", "value", "labs.csv line 16"),  # NaN
    ]
    assert rejected[0].record == {
        "member_id": "M-0003",
        "loinc": "2085-9",
        "value": "",
        "unit": "mg/dL",
        "effective_at": "2024-03-02T09:00:00+00:00",
    }
    assert rejected[5].record["_extra"] == ["2024-03-02T09:00:00+00:00"]
    assert report.read == 14
    assert report.unmapped == {}


def test_european_export_with_toml_mapping() -> None:
    mapping = CsvMapping.from_toml(FIXTURES / "mapping-eu.toml")
    assert (mapping.delimiter, mapping.decimal, mapping.test_name) == (";", ",", "Analyt")
    assert mapping.date_formats == ("%d.%m.%Y %H:%M", "%d.%m.%Y")

    samples, rejected, report = run(
        (FIXTURES / "labs-eu.csv").read_bytes(), name="labs-eu.csv", mapping=mapping
    )

    assert [
        (s.member_ref, s.code, s.value, s.unit, s.start, s.tz_offset_minutes, s.source, s.locator)
        for s in samples
    ] == [
        (
            "M-0001",
            "4548-4",
            6.1,
            "%",
            dt.datetime(2024, 3, 2, 8, 10, tzinfo=BERLIN),
            60,
            "csv:Labor Nord",
            "labs-eu.csv line 2",
        ),
        (
            "M-0001",
            "2093-3",
            187.0,
            "mg/dl",
            dt.datetime(2024, 3, 2, 8, 10, tzinfo=BERLIN),
            60,
            "csv:Labor Nord",
            "labs-eu.csv line 3",
        ),
        # Summer time, and a quoted note that spans two lines (4 and 5).
        (
            "M-0002",
            "2339-0",
            5.4,
            "mmol/l",
            dt.datetime(2024, 4, 2, 7, 5, tzinfo=BERLIN),
            120,
            "csv:Labor Süd",
            "labs-eu.csv line 4",
        ),
        # The day summer time ends: 10:30 is already winter time again.
        (
            "M-0003",
            "2085-9",
            52.3,
            "mg/dl",
            dt.datetime(2024, 10, 27, 10, 30, tzinfo=BERLIN),
            60,
            "csv:Labor Nord",
            "labs-eu.csv line 9",
        ),
        # Date only, lower-case test name, no lab in the row: the mapping's source. A
        # date-only time follows the platform's one rule (model.DATE_ONLY): the start of
        # that day in UTC, no offset, flagged date_only, whatever the mapping's zone.
        (
            "M-0004",
            "4548-4",
            5.9,
            "%",
            dt.datetime(2024, 3, 2, 0, 0, tzinfo=dt.UTC),
            None,
            "csv:Laborverbund Nord",
            "labs-eu.csv line 11",
        ),
        # TSH: mapped name, LOINC code outside the catalog: stored uncatalogued.
        (
            "M-0004",
            "3016-3",
            2.1,
            "mU/l",
            dt.datetime(2024, 3, 2, 9, 0, tzinfo=BERLIN),
            60,
            "csv:Labor Nord",
            "labs-eu.csv line 12",
        ),
    ]
    assert [s.flags for s in samples] == [(), (), (), (), (DATE_ONLY,), ()]
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("unknown_code", "Analyt", "labs-eu.csv line 6"),  # Kalium is not mapped
        ("bad_value", "Ergebnis", "labs-eu.csv line 7"),  # "1.234" with a decimal comma
        ("bad_timestamp", "Abnahmezeit", "labs-eu.csv line 10"),
    ]
    assert rejected[0].record["Bemerkung"] == ""
    assert report.read == 9
    assert report.unmapped == {}


def test_time_zone_column() -> None:
    mapping = CsvMapping(timezone_column="tz", source="LabCorp test feed")
    payload = (
        b"member_id,loinc,value,unit,effective_at,tz\n"
        b"M-1,718-7,13.9,g/dL,2024-07-01 08:00,America/New_York\n"
        b"M-1,718-7,14.1,g/dL,2024-07-02 08:00,+05:30\n"
        b"M-1,718-7,14.0,g/dL,2024-07-03T08:00:00+01:00,Asia/Tokyo\n"
        b"M-1,718-7,14.2,g/dL,2024-07-04 08:00,Mars/Olympus\n"
    )

    samples, rejected, _ = run(payload, mapping=mapping)

    assert [(s.start, s.tz_offset_minutes) for s in samples] == [
        (dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC), -240),
        (dt.datetime(2024, 7, 2, 2, 30, tzinfo=dt.UTC), 330),
        # An offset in the timestamp itself wins over the zone column.
        (dt.datetime(2024, 7, 3, 7, 0, tzinfo=dt.UTC), 60),
    ]
    assert {s.source for s in samples} == {"csv:LabCorp test feed"}
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("bad_timestamp", "tz", "labs.csv line 5")
    ]


def test_missing_columns_raise_format_error_naming_them() -> None:
    payload = b"\n\nmember,loinc,result,unit,effective_at\nM-1,718-7,13.9,g/dL,2024-07-01\n"

    with pytest.raises(FormatError) as caught:
        run(payload, name="export.csv")

    assert caught.value.where == "export.csv line 3"
    assert "missing column(s) member_id, value" in str(caught.value)
    assert "member, loinc, result, unit, effective_at" in str(caught.value)


def test_optional_columns_named_by_the_mapping_must_exist() -> None:
    with pytest.raises(FormatError, match="missing column\\(s\\) lab"):
        run(b"member_id,loinc,value,unit,effective_at\n", mapping=CsvMapping(source_column="lab"))


@pytest.mark.parametrize(
    ("payload", "message", "where"),
    [
        (b"", "no header row", "labs.csv"),
        (
            b'member_id,loinc,value,unit,effective_at\nM-1,"718-7,13.9\n',
            "broken CSV",
            "labs.csv line 2",
        ),
        (
            b"member_id,loinc,value,unit,effective_at\nM-1,718-7,13.9,g/dL,\xff\n",
            "not UTF-8",
            "labs.csv line 2",
        ),
    ],
)
def test_broken_files(payload: bytes, message: str, where: str) -> None:
    with pytest.raises(FormatError) as caught:
        run(payload)

    assert caught.value.where == where
    assert message in str(caught.value)


def test_parse_leaves_the_callers_stream_open() -> None:
    stream = io.BytesIO(b"member_id,loinc,value,unit,effective_at\n")

    assert list(csv_lab.parse(stream, ParseReport(), name="x.csv")) == []
    assert not stream.closed


def test_default_mapping_is_the_plain_layout() -> None:
    mapping = CsvMapping.default()

    assert mapping.required_columns() == ["member_id", "loinc", "value", "unit", "effective_at"]
    assert (mapping.delimiter, mapping.decimal, mapping.date_formats) == (",", ".", ())


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('valeu = "Wert"\n', "unknown key(s) valeu"),
        ('loinc = "code"\ntest_name = "name"\n[test_names]\nx = "1-1"\n', "not both"),
        ('test_name = "name"\n', "[test_names]"),
        ('delimiter = ";;"\n', "one character"),
        ('decimal = ";"\n', "'.' or ','"),
        ('delimiter = ","\ndecimal = ","\n', "cannot also be the delimiter"),
        ('default_timezone = "Mars/Olympus"\n', "unknown time zone"),
        ('date_formats = "%d.%m.%Y"\n', "list of strptime formats"),
        ("delimiter = \n", "not TOML"),
    ],
)
def test_bad_mappings(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(toml, encoding="utf-8")

    with pytest.raises(MappingError) as caught:
        CsvMapping.from_toml(path)

    assert message in str(caught.value)


def test_text_results_and_date_only_times() -> None:
    payload = (
        b"member_id,loinc,value,unit,effective_at\n"
        b"M-1,94500-6,Detected,,2024-03-02\n"
        b"M-1,94500-6,not detected,,2024-03-03T08:00:00+01:00\n"
        b"M-1,718-7,inf,g/dL,2024-03-02\n"
        b"M-1,718-7,13.9,,2024-03-02\n"
        b"M-1,1963-9,25,mmol/L,2024-03-02\n"
    )
    samples, rejected, _ = run(payload)

    assert [(s.code, s.value, s.unit, s.coded, s.start, s.flags) for s in samples] == [
        (
            "94500-6",
            None,
            "",
            Coded(text="Detected"),
            dt.datetime(2024, 3, 2, tzinfo=dt.UTC),
            (DATE_ONLY,),
        ),
        (
            "94500-6",
            None,
            "",
            Coded(text="not detected"),
            dt.datetime(2024, 3, 3, 8, tzinfo=tz(1)),
            (),
        ),
    ]
    # "inf" is a number (refused as one); a number needs its unit; 1963-9 fails the
    # LOINC check digit (1963-8 is bicarbonate).
    assert [(r.reason, r.field) for r in rejected] == [
        ("bad_value", "value"),
        ("missing_value", "unit"),
        ("unknown_code", "loinc"),
    ]
