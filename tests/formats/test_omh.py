"""Open mHealth parser: the vendored schemas, the upstream sample data, our own mixed
files, and the layouts (single point, array, NDJSON)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.ingest.formats import omh, omh_registry
from backend.ingest.formats.omh_mappers import MAPPERS
from backend.ingest.formats.omh_registry import SchemaId
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "omh"
# The official test data of every schema version, vendored beside the schemas.
UPSTREAM = omh_registry.TEST_DATA_DIR


def tz(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


def split(out: list[Sample | Rejected]) -> tuple[list[Sample], list[Rejected]]:
    return [o for o in out if isinstance(o, Sample)], [o for o in out if isinstance(o, Rejected)]


def run_bytes(
    payload: bytes, name: str, schema: str | None = None
) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    options = {"schema": schema} if schema else None
    out = list(omh.parse(io.BytesIO(payload), report, name=name, options=options))
    return (*split(out), report)


def run_file(name: str) -> tuple[list[Sample], list[Rejected], ParseReport]:
    return run_bytes((FIXTURES / name).read_bytes(), name)


def header(name: str, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "dp-1",
        "creation_date_time": "2024-01-01T00:00:00Z",
        "schema_id": {"namespace": "omh", "name": name, "version": version},
        **extra,
    }


# --- the vendored schemas --------------------------------------------------------------


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.usefixtures("no_network")
def test_registry_resolves_every_ref_offline() -> None:
    omh_registry.schema_registry.cache_clear()
    omh_registry.validator.cache_clear()
    registry = omh_registry.schema_registry()

    resolved = 0
    for namespace, base in omh_registry.NAMESPACE_BASES.items():
        for path in sorted((omh_registry.SCHEMA_DIR / namespace).glob("*.json")):
            uri = base + path.name
            resolver = registry.resolver().lookup(uri).resolver
            for ref in _refs(json.loads(path.read_text(encoding="utf-8"))):
                resolver.lookup(ref)
                resolved += 1
    assert resolved > 400

    # And a whole point validates end to end with sockets refused.
    point = {
        "header": header("body-weight", "3.0"),
        "body": {
            "body_weight": {"value": 70, "unit": "kg"},
            "effective_time_frame": {"date_time": "2024-01-01T08:00:00Z"},
        },
    }
    samples, rejected, _ = run_bytes(json.dumps(point).encode(), "p.json")
    assert [(s.code, s.value, s.unit) for s in samples] == [("29463-7", 70.0, "kg")]
    assert rejected == []


def test_vendored_files_are_unchanged() -> None:
    listed = {}
    for line in (omh_registry.SCHEMA_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    present = {
        str(p.relative_to(omh_registry.SCHEMA_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in omh_registry.SCHEMA_DIR.rglob("*.json")
    }
    assert present == listed
    licence = (omh_registry.SCHEMA_DIR / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License")


def uri(namespace: str, name: str, version: str) -> str | None:
    return omh_registry.body_schema_uri(SchemaId(namespace, name, version))


def test_version_selection() -> None:
    base = omh_registry.NAMESPACE_BASES["omh"]
    # Every version is held: each is validated against its own schema.
    assert uri("omh", "blood-pressure", "3.0") == base + "blood-pressure-3.0.json"
    assert uri("omh", "blood-pressure", "3.1") == base + "blood-pressure-3.1.json"
    assert uri("omh", "blood-pressure", "4.0") == base + "blood-pressure-4.0.json"
    assert uri("omh", "heart-rate", "1.0") == base + "heart-rate-1.0.json"
    # A minor we do not hold gets the newest one above it (minor versions only add).
    assert uri("omh", "descriptive-statistic", "1.0") == base + "descriptive-statistic-1.0.json"
    assert uri("omh", "blood-pressure", "3.2") is None
    assert uri("omh", "blood-pressure", "9.0") is None
    assert uri("omh", "heart-rate", "1.1.RC1") is None
    assert uri("granola", "heart-rate", "2.0") is None
    ieee = omh_registry.NAMESPACE_BASES["ieee"]
    assert uri("ieee", "physical-activity", "1.0") == ieee + "physical-activity-1.0.json"


def test_every_version_of_every_vendored_schema_has_its_file() -> None:
    """The whole official set: every version upstream's test data exercise is held."""
    versions = {p.relative_to(UPSTREAM).parts[:3] for p in UPSTREAM.rglob("*.json")}
    assert len(versions) > 120
    missing = [v for v in versions if uri(*v) is None]
    assert missing == []


# --- upstream sample data --------------------------------------------------------------


def _upstream_cases() -> list[Any]:
    cases = []
    for path in sorted(UPSTREAM.rglob("*.json")):
        namespace, name, version, expectation = path.relative_to(UPSTREAM).parts[:4]
        case_id = str(path.relative_to(UPSTREAM))
        cases.append(pytest.param(path, namespace, name, version, expectation, id=case_id))
    return cases


UPSTREAM_CASES = _upstream_cases()


def _as_bare_file(document: object) -> bytes:
    # A top-level array holds several bodies; a body that is itself an array (granola
    # hk-metadata) is sent as the one item of one.
    return json.dumps([document] if isinstance(document, list) else document).encode()


@pytest.mark.parametrize(("path", "namespace", "name", "version", "expectation"), UPSTREAM_CASES)
def test_official_test_data_as_bare_bodies(
    path: Path, namespace: str, name: str, version: str, expectation: str
) -> None:
    """EVERY official shouldPass of every version is stored or counted unmapped with a
    reason, never refused; EVERY shouldFail is refused (schema_invalid), never stored."""
    document = json.loads(path.read_text(encoding="utf-8"))
    schema = f"{namespace}:{name}:{version}"
    samples, rejected, report = run_bytes(_as_bare_file(document), path.name, schema)

    assert report.read == 1
    if expectation == "shouldPass":
        assert rejected == []
        assert len(samples) + sum(report.unmapped.values()) >= 1
        # An unmapped point says why: a schema we do not keep, a statistic, no time ...
        assert all(":" in reason for reason in report.unmapped)
        assert not any("unresolvable" in r or "not-vendored" in r for r in report.unmapped)
    else:
        assert [r.reason for r in rejected] == ["schema_invalid"]
        assert rejected[0].field
        assert samples == []


def test_official_test_data_totals() -> None:
    """The counts the issue was about: all 634 official files, every version."""
    passing = sum(1 for c in UPSTREAM_CASES if c.values[4] == "shouldPass")
    failing = sum(1 for c in UPSTREAM_CASES if c.values[4] == "shouldFail")
    assert (passing, failing) == (315, 319)
    stored = 0
    for case in UPSTREAM_CASES:
        path, namespace, name, version, expectation = case.values
        if expectation != "shouldPass":
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        samples, _, _ = run_bytes(
            _as_bare_file(document), "x.json", f"{namespace}:{name}:{version}"
        )
        stored += bool(samples)
    assert stored >= 60


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("heart-rate", "1.0"),
        ("heart-rate", "1.1"),
        ("blood-pressure", "4.0"),
        ("body-temperature", "4.0"),
        ("physical-activity", "1.2"),
    ],
)
def test_versions_the_issue_named_are_stored(name: str, version: str) -> None:
    passing = sorted((UPSTREAM / "omh" / name / version / "shouldPass").glob("*.json"))
    stored = 0
    for path in passing:
        samples, rejected, _ = run_bytes(path.read_bytes(), path.name, f"omh:{name}:{version}")
        assert rejected == []
        stored += len(samples)
    assert stored >= 1


def test_header_points_use_the_same_schemas() -> None:
    """A data point with a header is validated against the version its header names."""
    body = {
        "heart_rate": {"value": 60, "unit": "beats/min"},
        "effective_time_frame": {"date_time": "2013-02-05T07:25:00Z"},
    }
    point = {"header": header("heart-rate", "1.1"), "body": body}
    samples, rejected, _ = run_bytes(json.dumps(point).encode(), "p.json")
    assert rejected == [] and [s.code for s in samples] == ["8867-4"]

    bad = {"header": header("heart-rate", "1.0"), "body": {"heart_rate": {"value": 60}}}
    samples, rejected, _ = run_bytes(json.dumps(bad).encode(), "p.json")
    assert samples == [] and [r.reason for r in rejected] == ["schema_invalid"]


def test_physical_activity_stores_the_workout_and_what_it_measured() -> None:
    body = {
        "activity_name": "Walking",
        "distance": {"value": 3.1, "unit": "mi"},
        "kcal_burned": {"value": 160, "unit": "kcal"},
        "effective_time_frame": {
            "time_interval": {
                "start_date_time": "2015-02-06T06:25:00Z",
                "end_date_time": "2015-02-06T07:25:00Z",
            }
        },
    }
    for schema in ("omh:physical-activity:1.2", "ieee:physical-activity:1.0"):
        samples, rejected, _ = run_bytes(json.dumps(body).encode(), "a.json", schema)
        assert rejected == []
        assert [(s.code, s.value, s.unit, s.qualifier) for s in samples] == [
            ("x-rejuve:workout", 60.0, "min", "walking"),
            ("x-rejuve:distance", 3.1, "mi", None),
            ("41981-2", 160.0, "kcal", None),
        ]


def test_bare_bodies_need_the_schema_named() -> None:
    body = b'{"heart_rate": {"value": 60, "unit": "beats/min"}}'
    with pytest.raises(FormatError) as caught:
        run_bytes(body, "b.json")
    assert "--schema" in str(caught.value)
    with pytest.raises(FormatError) as caught:
        run_bytes(body, "b.json", "heart-rate")
    assert caught.value.where == "--schema"
    # NDJSON of bare bodies, with the schema named: each line one body.
    lines = b"\n".join(
        json.dumps(
            {
                "heart_rate": {"value": v, "unit": "beats/min"},
                "effective_time_frame": {"date_time": f"2024-01-01T08:0{i}:00Z"},
            }
        ).encode()
        for i, v in enumerate((60, 61))
    )
    samples, rejected, report = run_bytes(lines, "b.ndjson", "omh:heart-rate:2.0")
    assert [s.value for s in samples] == [60.0, 61.0]
    assert all(s.member_ref is None and s.source == "omh:unknown" for s in samples)
    assert (rejected, report.read) == ([], 2)


def test_mappers_cover_schemas_with_official_data() -> None:
    names = {p.relative_to(UPSTREAM).parts[1] for p in UPSTREAM.rglob("*.json")}
    assert set(MAPPERS) <= names


# --- our own files ---------------------------------------------------------------------


def test_mixed_points() -> None:
    samples, rejected, report = run_file("mixed-points.json")

    got = [
        (s.code, s.value, s.unit, s.start, s.end, s.tz_offset_minutes, s.qualifier, s.locator)
        for s in samples
    ]
    assert got == [
        (
            "8867-4",
            61.0,
            "beats/min",
            dt.datetime(2024, 3, 1, 23, 10, tzinfo=tz(2)),
            None,
            120,
            None,
            "mixed-points.json [0]",
        ),
        (
            "8480-6",
            121.0,
            "mmHg",
            dt.datetime(2024, 3, 2, 7, 30, tzinfo=tz(-5)),
            None,
            -300,
            None,
            "mixed-points.json [1]",
        ),
        (
            "8462-4",
            79.0,
            "mmHg",
            dt.datetime(2024, 3, 2, 7, 30, tzinfo=tz(-5)),
            None,
            -300,
            None,
            "mixed-points.json [1]",
        ),
        (
            "x-rejuve:sleep-stage",
            450.0,
            "min",
            dt.datetime(2024, 3, 1, 23, 40, tzinfo=tz(1)),
            dt.datetime(2024, 3, 2, 7, 10, tzinfo=tz(1)),
            60,
            "asleep",
            "mixed-points.json [2]",
        ),
        (
            "x-rejuve:workout",
            42.5,
            "min",
            dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.UTC),
            dt.datetime(2024, 3, 2, 6, 42, 30, tzinfo=dt.UTC),
            0,
            "running",
            "mixed-points.json [3]",
        ),
        (
            "x-rejuve:distance",
            7.2,
            "km",
            dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.UTC),
            dt.datetime(2024, 3, 2, 6, 42, 30, tzinfo=dt.UTC),
            0,
            None,
            "mixed-points.json [3]",
        ),
        (
            "8310-5",
            36.8,
            "C",
            dt.datetime(2024, 3, 2, 7, 0, tzinfo=tz(1)),
            None,
            60,
            None,
            "mixed-points.json [4]",
        ),
        (
            "2339-0",
            5.6,
            "mmol/L",
            dt.datetime(2024, 3, 2, 7, 5, tzinfo=tz(1)),
            None,
            60,
            None,
            "mixed-points.json [5]",
        ),
        (
            "59408-5",
            97.0,
            "%",
            dt.datetime(2024, 3, 2, 3, 12, tzinfo=tz(1)),
            None,
            60,
            None,
            "mixed-points.json [6]",
        ),
        (
            "29463-7",
            154.3,
            "lb",
            dt.datetime(2024, 3, 2, 7, 20, tzinfo=tz(1)),
            None,
            60,
            None,
            "mixed-points.json [7]",
        ),
        # start + duration
        (
            "55423-8",
            4210.0,
            "steps",
            dt.datetime(2024, 3, 2, 8, 0, tzinfo=tz(1)),
            dt.datetime(2024, 3, 2, 9, 0, tzinfo=tz(1)),
            60,
            None,
            "mixed-points.json [8]",
        ),
        # end + duration
        (
            "93832-4",
            410.0,
            "min",
            dt.datetime(2024, 3, 1, 23, 40, tzinfo=tz(1)),
            dt.datetime(2024, 3, 2, 7, 10, tzinfo=tz(1)),
            60,
            None,
            "mixed-points.json [9]",
        ),
        (
            "41981-2",
            320.0,
            "kcal",
            dt.datetime(2024, 3, 2, 6, 0, tzinfo=dt.UTC),
            dt.datetime(2024, 3, 2, 7, 0, tzinfo=dt.UTC),
            0,
            None,
            "mixed-points.json [11]",
        ),
        (
            "8867-4",
            72.5,
            "beats/min",
            dt.datetime(2024, 3, 2, 12, 0, 0, 500_000, tzinfo=dt.UTC),
            None,
            0,
            None,
            "mixed-points.json [17]",
        ),
    ]
    assert [s.source for s in samples] == [
        "omh:Fitbit",
        "omh:Omron Connect",
        "omh:Omron Connect",
        *["omh:Fitbit"] * 4,  # sleep, workout + its distance, temperature
        "omh:FreeStyle Libre",
        "omh:Fitbit",
        "omh:Withings",
        *["omh:Fitbit"] * 3,  # steps, sleep duration, calories burned
        "omh:Garmin",
    ]
    assert [s.member_ref for s in samples] == ["user-17"] * 13 + [None]

    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("schema_invalid", "body.heart_rate.unit", "mixed-points.json [10]"),
        ("schema_invalid", "header", "mixed-points.json [14]"),
        (
            "bad_value",
            "body.effective_time_frame.time_interval.duration.unit",
            "mixed-points.json [15]",
        ),
        (
            "bad_timestamp",
            "body.effective_time_frame.time_interval.end_date_time",
            "mixed-points.json [16]",
        ),
    ]
    assert rejected[0].record["header"]["id"] == "dp-10"  # type: ignore[index]
    assert report.read == 18
    assert report.unmapped == {
        # heart-rate 1.0 is held and validated now; that point has no time frame
        "no-time-frame:heart-rate": 1,
        "imprecise-time:heart-rate": 1,
    }


def test_ndjson_keeps_going_past_a_corrupt_line() -> None:
    samples, rejected, report = run_file("points.ndjson")

    assert [(s.code, s.value, s.locator) for s in samples] == [
        ("8867-4", 58.0, "points.ndjson line 1"),
        ("55423-8", 120.0, "points.ndjson line 4"),
    ]
    assert [(r.reason, r.field, r.locator) for r in rejected] == [
        ("bad_json", None, "points.ndjson line 3")
    ]
    assert report.read == 3


def test_single_point() -> None:
    samples, rejected, report = run_file("single-point.json")

    assert samples == [
        Sample(
            code="59408-5",
            value=95.5,
            unit="%",
            start=dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC),
            source="omh:Masimo MightySat",
            locator="single-point.json",
            tz_offset_minutes=0,
            member_ref="user-17",
        )
    ]
    assert (rejected, report.read, report.unmapped) == ([], 1, {})


def test_aggregates_are_counted_not_stored_as_readings() -> None:
    point = {
        "header": header("heart-rate", "2.0"),
        "body": {
            "heart_rate": {"value": 54, "unit": "beats/min"},
            "effective_time_frame": {"date_time": "2024-01-01T08:00:00Z"},
            "descriptive_statistic": "minimum",
        },
    }
    samples, rejected, report = run_bytes(json.dumps(point).encode(), "p.json")

    assert (samples, rejected) == ([], [])
    assert report.unmapped == {"statistic:heart-rate:minimum": 1}


def test_source_name_fallbacks() -> None:
    body = {
        "heart_rate": {"value": 60, "unit": "beats/min"},
        "effective_time_frame": {"date_time": "2024-01-01T08:00:00Z"},
    }
    points = [
        {"header": header("heart-rate", "2.0", source_name="Oura"), "body": body},
        {"header": header("heart-rate", "2.0"), "body": body},
    ]
    samples, _, _ = run_bytes(json.dumps(points).encode(), "p.json")

    assert [s.source for s in samples] == ["omh:Oura", "omh:unknown"]


# --- files that are not Open mHealth ---------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message", "where"),
    [
        (b'[\n  {"header": {}, "body": }\n]', "not JSON", "bad.json line 2 column 26"),
        (b"", "empty file", "bad.json"),
        (b'{"resourceType": "Bundle"}', "no header/body", "bad.json"),
        (b'[{"heart_rate": {"value": 60, "unit": "beats/min"}}]', "no header/body", "bad.json [0]"),
        (b'{"a": 1}\n{"b": 2}\n', "no header/body", "bad.json line 1"),
        (b"\xff\xfe", "not UTF-8", "bad.json"),
        (b'{"header": {}, "body": {"v": Infinity}}', "Infinity is not a JSON number", "bad.json"),
    ],
)
def test_not_omh_raises_format_error(payload: bytes, message: str, where: str) -> None:
    with pytest.raises(FormatError) as caught:
        list(omh.parse(io.BytesIO(payload), ParseReport(), name="bad.json"))

    assert caught.value.where == where
    assert message in str(caught.value)
