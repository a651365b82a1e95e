"""Normalisation of results that are not plain catalog numbers: coded and text results,
LOINC codes outside the catalog, folded codes and date-only times (pure: no stack)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from backend.ingest.catalog import UNCATALOGUED, is_loinc
from backend.ingest.model import DATE_ONLY, Coded, Sample, date_only
from backend.refine.normalise import Observation, Quarantined, normalise, sample_record
from backend.refine.quarantine import _as_sample

MEMBER = uuid.UUID("9f0c3a52-2b1d-4c7e-8f6a-1d2e3f4a5b6c")
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
WHEN = dt.datetime(2024, 3, 2, 8, 10, tzinfo=dt.timezone(dt.timedelta(hours=1)))
DETECTED = Coded("260373001", "http://snomed.info/sct", "Detected (qualifier value)")


def sample(code: str, value: float | None, unit: str, **extra: object) -> Sample:
    return Sample(code, value, unit, WHEN, "test", "here", **extra)  # type: ignore[arg-type]


def stored(s: Sample) -> Observation:
    result = normalise(s, MEMBER, NOW)
    assert isinstance(result, Observation), result
    return result


def refused(s: Sample) -> Quarantined:
    result = normalise(s, MEMBER, NOW)
    assert isinstance(result, Quarantined), result
    return result


def test_a_coded_result_is_stored_with_its_concept() -> None:
    o = stored(sample("94500-6", None, "", coded=DETECTED))
    assert (o.code, o.value, o.unit, o.coded, o.quality_flags) == (
        "94500-6",
        None,
        "",
        DETECTED,
        [],
    )
    # The same result again is the same row (dedup key), another concept is not.
    again = stored(sample("94500-6", None, "", coded=DETECTED))
    other = stored(sample("94500-6", None, "", coded=Coded("260415000", None, "Not detected")))
    assert o.dedup_key == again.dedup_key != other.dedup_key


def test_a_coded_result_under_a_numeric_code_is_refused() -> None:
    q = refused(sample("8867-4", None, "", coded=Coded(text="fast")))
    assert (q.reason, q.field) == ("bad_value", "value")
    q = refused(sample("94500-6", 1.0, "1"))
    assert (q.reason, q.field) == ("bad_value", "value")
    q = refused(sample("94500-6", None, "", coded=Coded()))
    assert q.reason == "missing_value"


def test_uncatalogued_loinc_codes_are_stored_and_flagged() -> None:
    bicarbonate = stored(sample("1963-8", 25.1, "mmol/L"))
    assert (bicarbonate.code, bicarbonate.value, bicarbonate.unit) == ("1963-8", 25.1, "mmol/L")
    assert bicarbonate.quality_flags == [UNCATALOGUED]
    mean_bp = stored(sample("8478-0", 101, "mmHg"))
    assert (mean_bp.unit, mean_bp.quality_flags) == ("mm[Hg]", [UNCATALOGUED])
    smoking = stored(sample("72166-2", None, "", coded=Coded(text="Never smoked")))
    assert smoking.quality_flags == [UNCATALOGUED]

    assert refused(sample("1963-8", 25.1, "furlongs")).reason == "unit_not_convertible"
    assert refused(sample("1963-8", 25.1, "")).reason == "unit_not_convertible"
    # Not LOINC at all (or a wrong check digit): not a code anyone can read later.
    assert refused(sample("1963-9", 25.1, "mmol/L")).reason == "unknown_code"
    assert refused(sample("HR", 60, "/min")).reason == "unknown_code"


def test_loinc_check_digit() -> None:
    assert all(is_loinc(c) for c in ("8867-4", "2708-6", "59408-5", "1963-8", "94500-6"))
    assert not any(is_loinc(c) for c in ("8867-5", "1963-9", "12345678-0", "ABC-1", "8867"))


def test_a_folded_code_is_recorded_on_the_row() -> None:
    o = stored(sample("2708-6", 97, "%"))
    assert (o.code, o.quality_flags) == ("59408-5", ["code_from:2708-6"])
    glucose = stored(sample("15074-8", 5.4, "mmol/L"))
    assert glucose.code == "2339-0"
    assert glucose.quality_flags == ["unit_converted", "code_from:15074-8"]


def test_date_only_flag_reaches_the_row() -> None:
    day = date_only(dt.date(2024, 3, 2))
    assert day == dt.datetime(2024, 3, 2, tzinfo=dt.UTC)
    s = Sample("4548-4", 6.1, "%", day, "test", "here", flags=(DATE_ONLY,))
    o = stored(s)
    assert (o.observed_at, o.tz_offset_minutes, o.quality_flags) == (day, None, [DATE_ONLY])


@pytest.mark.parametrize(
    "s",
    [
        sample("94500-6", None, "", coded=DETECTED, flags=(DATE_ONLY,)),
        sample("72166-2", None, "", coded=Coded(boolean=True)),
        sample("1963-8", 25.1, "mmol/L"),
    ],
)
def test_the_quarantine_record_reads_back_as_the_same_sample(s: Sample) -> None:
    """A steward's release rebuilds the sample from the record the quarantine keeps."""
    back = _as_sample(sample_record(s), s.locator)
    assert back == s._replace(member_ref=None)
