"""FHIR R4 parser: bundles and single Observations from tests/fixtures/fhir, plus edge cases
built inline."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from backend.ingest.formats import fhir
from backend.ingest.model import DATE_ONLY, Coded, FormatError, ParseReport, Rejected, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "fhir"
PATIENT = "urn:uuid:6f1c2e4a-58e0-4b7e-9c1d-2a5b8f0e7d31"


def tz(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


def run_file(name: str) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    with (FIXTURES / name).open("rb") as handle:
        out = list(fhir.parse(handle, report, name=name))
    return (*split(out), report)


def run_json(
    document: object, name: str = "inline.json"
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    out = list(fhir.parse(io.BytesIO(json.dumps(document).encode()), report, name=name))
    return (*split(out), report)


def split(out: list[Sample | Rejected]) -> tuple[list[Sample], list[Rejected]]:
    return [o for o in out if isinstance(o, Sample)], [o for o in out if isinstance(o, Rejected)]


def observation(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/9"},
        "effectiveDateTime": "2024-05-01T10:00:00+02:00",
        "valueQuantity": {
            "value": 70,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def bundle(*resources: dict[str, Any], kind: str = "collection") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": r} for r in resources],
    }


# --- fixtures --------------------------------------------------------------------------


def test_transaction_bundle_of_vitals() -> None:
    samples, rejected, report = run_file("vitals-transaction.json")

    got = [
        (s.code, s.value, s.unit, s.start, s.tz_offset_minutes, s.source, s.locator)
        for s in samples
    ]
    assert got == [
        (
            "8867-4",
            72.0,
            "/min",
            dt.datetime(2024, 3, 2, 8, 15, tzinfo=tz(1)),
            60,
            "fhir:Apple Watch Series 9",
            "vitals-transaction.json entry[1].resource",
        ),
        # The blood pressure panel has no value of its own: one sample per component.
        (
            "8462-4",
            82.0,
            "mm[Hg]",
            dt.datetime(2024, 3, 2, 8, 20, tzinfo=tz(1)),
            60,
            "fhir:unknown",
            "vitals-transaction.json entry[2].resource.component[0]",
        ),
        (
            "8480-6",
            128.0,
            "mm[Hg]",
            dt.datetime(2024, 3, 2, 8, 20, tzinfo=tz(1)),
            60,
            "fhir:unknown",
            "vitals-transaction.json entry[2].resource.component[1]",
        ),
        # UCUM code wins over the display unit "lb".
        (
            "29463-7",
            165.5,
            "[lb_av]",
            dt.datetime(2024, 3, 2, 8, 25, tzinfo=tz(1)),
            60,
            "fhir:#clinic-scale-3",
            "vitals-transaction.json entry[3].resource",
        ),
        # 15074-8 (mmol/L) is kept as sent: normalisation folds it onto the catalog's
        # glucose code and records the fold on the row (code_from:15074-8).
        (
            "15074-8",
            5.4,
            "mmol/L",
            dt.datetime(2024, 3, 2, 7, 5, tzinfo=tz(1)),
            60,
            "fhir:unknown",
            "vitals-transaction.json entry[4].resource",
        ),
        (
            "2339-0",
            97.0,
            "mg/dL",
            dt.datetime(2024, 3, 2, 12, 40, tzinfo=tz(1)),
            60,
            "fhir:unknown",
            "vitals-transaction.json entry[5].resource",
        ),
        # 72514-3 (pain severity) is a valid LOINC code outside the catalog: kept, and
        # stored flagged uncatalogued ({score} is a valid UCUM unit).
        (
            "72514-3",
            2.0,
            "{score}",
            dt.datetime(2024, 3, 2, 8, 30, tzinfo=tz(1)),
            60,
            "fhir:unknown",
            "vitals-transaction.json entry[6].resource",
        ),
    ]
    # Every Observation names the bundle's own Patient (its urn:uuid fullUrl): the member
    # the batch is landed for, resolved at the door, not a platform member id.
    assert {s.member_ref for s in samples} == {None}
    assert all(s.end is None and s.qualifier is None for s in samples)
    assert rejected == []
    assert report.read == 7
    assert report.unmapped == {"Patient": 1}


def test_searchset_of_labs() -> None:
    samples, rejected, report = run_file("labs-searchset.json")

    by_code = {s.code: s for s in samples}
    assert sorted(by_code) == ["13457-7", "2085-9", "2093-3", "2571-8", "4548-4"]

    hba1c = by_code["4548-4"]
    # Date-only effectiveDateTime: midnight UTC, and no offset was stated.
    assert (hba1c.value, hba1c.unit) == (6.1, "%")
    assert hba1c.start == dt.datetime(2024, 3, 2, tzinfo=dt.UTC)
    assert hba1c.tz_offset_minutes is None
    assert hba1c.flags == (DATE_ONLY,)  # the one rule for date-only times (model.DATE_ONLY)
    assert all(s.flags == () for s in samples if s is not hba1c)
    assert hba1c.source == "fhir:https://lab.example.org/lis"
    assert hba1c.member_ref == "Patient/123"

    assert (by_code["2093-3"].value, by_code["2093-3"].unit) == (187.0, "mg/dL")
    assert (by_code["2085-9"].value, by_code["2085-9"].unit) == (52.3, "mg/dL")

    ldl = by_code["13457-7"]
    # Not a UCUM system: the human-readable unit is what the source stated.
    assert ldl.unit == "milligram per deciliter"
    assert ldl.start == dt.datetime(2024, 3, 2, 9, 10, tzinfo=dt.UTC)
    assert ldl.end == dt.datetime(2024, 3, 2, 9, 40, tzinfo=dt.UTC)
    assert ldl.tz_offset_minutes == 0

    tg = by_code["2571-8"]
    assert tg.start == dt.datetime(2024, 3, 2, 9, 10, 0, 250_000, tzinfo=dt.UTC)
    assert tg.locator == "labs-searchset.json entry[5].resource"

    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("bad_value", "valueQuantity.comparator", "labs-searchset.json entry[6].resource"),
    ]
    assert rejected[0].detail == "censored value <0.3"
    assert rejected[0].record["id"] == "crp-1"
    assert report.read == 8
    assert report.unmapped == {"no-value:57698-3": 1, "OperationOutcome": 1}


def test_collection_with_values_that_are_not_numbers() -> None:
    samples, rejected, report = run_file("mixed-collection.json")

    # A text result and a coded one are kept as results (value None, `coded` set); a
    # text under a numeric catalog code (8310-5) is refused later, by normalisation.
    assert [(s.code, s.value, s.unit, s.coded, s.flags, s.locator) for s in samples] == [
        (
            "8310-5",
            None,
            "",
            Coded(text="felt warm, not measured"),
            (),
            "mixed-collection.json entry[1].resource",
        ),
        (
            "72166-2",
            None,
            "",
            Coded("266919005", "http://snomed.info/sct", "Never smoked tobacco"),
            (DATE_ONLY,),
            "mixed-collection.json entry[6].resource",
        ),
    ]
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("schema_invalid", "valueQuantity.value", "mixed-collection.json entry[3].resource"),
        ("schema_invalid", "status", "mixed-collection.json entry[4].resource"),
        ("missing_value", "valueQuantity.unit", "mixed-collection.json entry[9].resource"),
        ("missing_value", "effective[x]", "mixed-collection.json entry[10].resource"),
        ("schema_invalid", "value[x]", "mixed-collection.json entry[11].resource"),
    ]
    assert rejected[0].record["id"] == "hr-bad-number"
    assert report.read == 12
    assert report.unmapped == {
        "Practitioner": 1,
        "no-value:8867-4": 1,  # dataAbsentReason
        "status:entered-in-error": 1,
        "imprecise-time": 1,  # effectiveDateTime "2024-03"
        "no-loinc": 1,  # SNOMED coding only
    }


def test_single_observation() -> None:
    samples, rejected, report = run_file("observation-single.json")

    assert samples == [
        Sample(
            code="8867-4",
            value=58.0,
            unit="/min",
            start=dt.datetime(2024, 3, 4, 11, 30, tzinfo=dt.UTC),
            source="fhir:https://fhir.example.org/r4",
            locator="observation-single.json",
            tz_offset_minutes=-300,
            member_ref="Patient/123",
        )
    ]
    assert rejected == []
    assert report.read == 1
    assert report.unmapped == {}


# --- validation through fhir.resources -------------------------------------------------


def test_unknown_element_is_schema_invalid_at_its_path() -> None:
    _, rejected, _ = run_json(observation(colour="blue"))

    assert [(r.reason, r.field) for r in rejected] == [("schema_invalid", "colour")]
    assert "Extra inputs are not permitted" in rejected[0].detail


def test_component_error_names_the_component_path() -> None:
    panel = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        valueQuantity=None,
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": "high", "unit": "mm[Hg]"},
            }
        ],
    )
    samples, rejected, _ = run_json(bundle(panel), name="bp.json")

    assert samples == []
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("schema_invalid", "component[0].valueQuantity.value", "bp.json entry[0].resource")
    ]


def test_missing_required_code_is_schema_invalid() -> None:
    _, rejected, _ = run_json(observation(code=None))

    assert [(r.reason, r.field) for r in rejected] == [("schema_invalid", "code")]


def test_components_known_unknown_and_absent() -> None:
    panel = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        valueQuantity=None,
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {
                    "value": 141,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "dataAbsentReason": {"text": "cuff slipped"},
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8478-0"}]},
                "valueQuantity": {
                    "value": 101,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            },
        ],
    )
    samples, rejected, report = run_json(panel, name="bp.json")

    # 8478-0 (mean blood pressure) is outside the catalog: kept, stored uncatalogued.
    assert [(s.code, s.value, s.unit, s.locator) for s in samples] == [
        ("8480-6", 141.0, "mm[Hg]", "bp.json.component[0]"),
        ("8478-0", 101.0, "mm[Hg]", "bp.json.component[2]"),
    ]
    assert samples[0].member_ref == "Patient/9"
    assert rejected == []
    assert report.unmapped == {"no-value:8462-4": 1}


def test_first_known_loinc_code_wins() -> None:
    coded = observation(
        code={
            "coding": [
                {"system": "http://loinc.org", "code": "99999-9"},
                {"system": "http://loinc.org", "code": "2708-6"},
                {"system": "http://loinc.org", "code": "59408-5"},
            ]
        },
        valueQuantity={
            "value": 98,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    )
    samples, _, report = run_json(coded)

    # 2708-6 is an alias of 59408-5 and comes first among the known codes: kept as sent,
    # so normalisation can record the fold (code_from:2708-6) on the row.
    assert [(s.code, s.value, s.unit) for s in samples] == [("2708-6", 98.0, "%")]
    assert report.unmapped == {}


def test_integer_and_range_values_are_counted_not_guessed() -> None:
    _, rejected, report = run_json(
        bundle(
            observation(valueQuantity=None, valueInteger=7),
            observation(valueQuantity=None, valueRange={"low": {"value": 60}}),
        )
    )

    assert rejected == []
    assert report.unmapped == {
        "unsupported-value:valueInteger:8867-4": 1,
        "unsupported-value:valueRange:8867-4": 1,
    }


def test_effective_variants() -> None:
    samples, rejected, report = run_json(
        bundle(
            observation(
                effectiveDateTime=None, effectivePeriod={"start": "2024-05-01T22:00:00-07:00"}
            ),
            observation(
                effectiveDateTime=None,
                effectivePeriod={"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"},
            ),
            observation(effectiveDateTime=None, effectivePeriod={"end": "2024-05-01T09:00:00Z"}),
            observation(effectiveDateTime=None, effectiveTiming={"event": ["2024-05-01"]}),
        ),
        name="times.json",
    )

    assert [(s.start, s.end, s.tz_offset_minutes) for s in samples] == [
        (dt.datetime(2024, 5, 2, 5, 0, tzinfo=dt.UTC), None, -420)
    ]
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("bad_timestamp", "effectivePeriod.end", "times.json entry[1].resource"),
        ("missing_value", "effectivePeriod.start", "times.json entry[2].resource"),
        ("bad_timestamp", "effectiveTiming", "times.json entry[3].resource"),
    ]
    assert report.read == 4


def test_batch_entry_without_resource_is_counted() -> None:
    document = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "DELETE", "url": "Observation/1"}},
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {"resource": "not an object"},
        ],
    }
    samples, rejected, report = run_json(document, name="batch.json")

    assert [s.locator for s in samples] == ["batch.json entry[1].resource"]
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("schema_invalid", "resource", "batch.json entry[2].resource")
    ]
    assert report.read == 3
    assert report.unmapped == {"entry-without-resource": 1}


# --- files that are not FHIR at all ----------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message", "where"),
    [
        (b'{"resourceType": "Bundle",\n  "type": }', "not JSON", "bad.json line 2 column 11"),
        (b"\xff\xfe{}", "not UTF-8", "bad.json"),
        (b'{"resourceType": "Patient", "id": "1"}', "got 'Patient'", "bad.json"),
        (b"[]", "not a FHIR resource", "bad.json"),
        (b'{"resourceType": "Bundle", "type": "document"}', "'document' is not one of", "bad.json"),
        (
            b'{"resourceType": "Bundle", "type": "batch", "entry": {}}',
            "not a list",
            "bad.json entry",
        ),
        (
            b'{"resourceType": "Observation", "valueQuantity": {"value": NaN}}',
            "NaN is not a JSON number",
            "bad.json",
        ),
    ],
)
def test_not_fhir_raises_format_error(payload: bytes, message: str, where: str) -> None:
    with pytest.raises(FormatError) as caught:
        list(fhir.parse(io.BytesIO(payload), ParseReport(), name="bad.json"))

    assert caught.value.where == where
    assert message in str(caught.value)


# --- a Synthea patient bundle ------------------------------------------------------------

SYNTHEA_PATIENT = "5cbc121b-cd71-4428-b8b7-31e53eba8184"


def test_synthea_bundle_keeps_coded_and_uncatalogued_results() -> None:
    """The shape of a Synthea transaction bundle (Patient with synthea / MR / SSN
    identifiers, urn:uuid references, an Encounter, vitals, labs, a COVID-19 PCR)."""
    samples, rejected, report = run_file("synthea-bundle.json")

    got = [(s.code, s.value, s.unit, s.coded, s.flags) for s in samples]
    assert got == [
        ("8867-4", 88.0, "/min", None, ()),
        ("9279-1", 14.0, "/min", None, ()),
        ("2708-6", 93.0, "%", None, ()),  # folded (and recorded) in normalisation
        (
            "94531-1",
            None,
            "",
            Coded("260373001", "http://snomed.info/sct", "Detected (qualifier value)"),
            (),
        ),
        ("1963-8", 25.1, "mmol/L", None, ()),  # outside the catalog: stored uncatalogued
        ("2339-0", 96.2, "mg/dL", None, (DATE_ONLY,)),
        (
            "72166-2",
            None,
            "",
            Coded("266919005", "http://snomed.info/sct", "Never smoked tobacco (finding)"),
            (),
        ),
    ]
    # Every subject is the bundle's own Patient (urn:uuid:...): no platform member id.
    assert {s.member_ref for s in samples} == {None}
    assert rejected == []
    assert report.unmapped == {"Patient": 1, "Encounter": 1}


def test_bundle_patients_reads_refs_and_identifiers() -> None:
    with (FIXTURES / "synthea-bundle.json").open("rb") as fh:
        (patient,) = fhir.bundle_patients(fh, "synthea-bundle.json")
    assert patient.refs == {
        f"urn:uuid:{SYNTHEA_PATIENT}",
        f"Patient/{SYNTHEA_PATIENT}",
    }
    assert patient.identifiers == (
        ("https://github.com/synthetichealth/synthea", SYNTHEA_PATIENT),
        ("http://hospital.smarthealthit.org", SYNTHEA_PATIENT),
        ("http://hl7.org/fhir/sid/us-ssn", "999-71-4523"),
    )
    with (FIXTURES / "observation-single.json").open("rb") as fh:
        assert fhir.bundle_patients(fh, "observation-single.json") == []


def test_a_subject_that_is_not_the_bundles_patient_keeps_its_reference() -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    mine = observation(subject={"reference": "Patient/p1"})
    other = observation(subject={"reference": "urn:uuid:0b8a6f2e-0000-4000-8000-000000000001"})
    samples, _, _ = run_json(bundle(patient, mine, other))
    assert [s.member_ref for s in samples] == [
        None,
        "urn:uuid:0b8a6f2e-0000-4000-8000-000000000001",
    ]
    # Two Patients: nobody can say which one the member is; references stay as stated.
    samples, _, _ = run_json(bundle(patient, {"resourceType": "Patient", "id": "p2"}, mine))
    assert [s.member_ref for s in samples] == ["Patient/p1"]
