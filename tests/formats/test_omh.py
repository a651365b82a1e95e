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

from backend.ingest.formats import omh
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

FIXTURES = Path(__file__).parent.parent / "fixtures" / "omh"
UPSTREAM = FIXTURES / "test-data" / "omh"


def tz(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


def split(out: list[Sample | Rejected]) -> tuple[list[Sample], list[Rejected]]:
    return [o for o in out if isinstance(o, Sample)], [o for o in out if isinstance(o, Rejected)]


def run_bytes(payload: bytes, name: str) -> tuple[list[Sample], list[Rejected], ParseReport]:
    report = ParseReport()
    out = list(omh.parse(io.BytesIO(payload), report, name=name))
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
    omh.schema_registry.cache_clear()
    omh._validator.cache_clear()
    registry = omh.schema_registry()

    resolved = 0
    for namespace, base in omh.NAMESPACE_BASES.items():
        for path in sorted((omh.SCHEMA_DIR / namespace).glob("*.json")):
            uri = base + path.name
            resolver = registry.resolver().lookup(uri).resolver
            for ref in _refs(json.loads(path.read_text(encoding="utf-8"))):
                resolver.lookup(ref)
                resolved += 1
    assert resolved > 60

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
    for line in (omh.SCHEMA_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    present = {
        str(p.relative_to(omh.SCHEMA_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in omh.SCHEMA_DIR.rglob("*.json")
    }
    assert present == listed
    assert (omh.SCHEMA_DIR / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_version_selection() -> None:
    base = omh.NAMESPACE_BASES["omh"]
    assert omh.body_schema_uri("omh", "blood-pressure", "3.1") == base + "blood-pressure-3.1.json"
    # 3.0 data is valid 3.1 data (minor versions only add).
    assert omh.body_schema_uri("omh", "blood-pressure", "3.0") == base + "blood-pressure-3.1.json"
    assert omh.body_schema_uri("omh", "blood-pressure", "3.2") is None
    assert omh.body_schema_uri("omh", "blood-pressure", "4.0") is None
    assert omh.body_schema_uri("omh", "heart-rate", "3.0") == base + "heart-rate-3.0.json"
    assert omh.body_schema_uri("omh", "heart-rate", "1.1.RC1") is None
    assert omh.body_schema_uri("granola", "heart-rate", "2.0") is None


# --- upstream sample data --------------------------------------------------------------


def _upstream_cases() -> list[Any]:
    cases = []
    for path in sorted(UPSTREAM.rglob("*.json")):
        name, version, expectation = path.relative_to(UPSTREAM).parts[:3]
        case_id = str(path.relative_to(UPSTREAM))
        cases.append(pytest.param(path, name, version, expectation, id=case_id))
    return cases


@pytest.mark.parametrize(("path", "name", "version", "expectation"), _upstream_cases())
def test_upstream_sample_data(path: Path, name: str, version: str, expectation: str) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    if name == "data-point":
        point = document
    elif name == "header":
        point = {"header": document, "body": {}}
    else:
        point = {"header": header(name, version), "body": document}
    samples, rejected, report = run_bytes(json.dumps(point).encode(), "sample.json")

    assert report.read == 1
    if expectation == "shouldPass":
        assert rejected == []
        # Every valid point is either a sample or counted: never silently dropped.
        assert len(samples) + sum(report.unmapped.values()) >= 1
    else:
        assert [r.reason for r in rejected] == ["schema_invalid"]
        assert rejected[0].field
        assert samples == []


def test_upstream_data_covers_every_mapped_schema() -> None:
    names = {p.relative_to(UPSTREAM).parts[0] for p in UPSTREAM.rglob("*.json")}
    assert set(omh.MAPPERS) <= names


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
        "omh:Fitbit",
        "omh:Fitbit",
        "omh:Fitbit",
        "omh:FreeStyle Libre",
        "omh:Fitbit",
        "omh:Withings",
        "omh:Fitbit",
        "omh:Fitbit",
        "omh:Garmin",
    ]
    assert [s.member_ref for s in samples] == ["user-17"] * 11 + [None]

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
        "schema:omh:calories-burned:2.0": 1,
        "schema:omh:heart-rate:1.0": 1,
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
