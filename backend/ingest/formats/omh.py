"""Open mHealth / IEEE 1752 data points: `{"header": ..., "body": ...}`.

Input is one data point, a JSON array of them, or NDJSON (one per line); the layout is
detected from the bytes. Bare bodies are not accepted: without a header nothing says which
schema, member or source a body belongs to, and guessing that is how data gets misfiled.

Every point is validated with `jsonschema` against the official schemas vendored in
`omh_schemas/` (see its README for source, versions and licence), through a
`referencing.Registry` that only ever reads those files: no schema is fetched at run time.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

SCHEMA_DIR: Final = Path(__file__).parent / "omh_schemas"

# The base URIs the upstream validator maps each namespace folder to (test-data/README.md
# in openmhealth/schemas); the schemas' own `$id`s and absolute `$ref`s use them too.
NAMESPACE_BASES: Final[Mapping[str, str]] = {
    "omh": "https://w3id.org/openmhealth/schemas/omh/",
    "ieee": "https://w3id.org/ieee/ieee-1752-schema/",
}
DATA_POINT_SCHEMA: Final = NAMESPACE_BASES["omh"] + "data-point-1.0.json"

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9-]+?)-(?P<major>\d+)\.(?P<minor>\d+|x)\.json$")
_VERSION = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")

Point = dict[str, Any]
Json = dict[str, Any]


# --- the offline schema registry -------------------------------------------------------


@cache
def _vendored(namespace: str) -> Mapping[tuple[str, int], Mapping[int, Path]]:
    """(name, major) -> {minor: file} for one namespace folder (read once: every data
    point asks)."""
    found: dict[tuple[str, int], dict[int, Path]] = {}
    for path in sorted((SCHEMA_DIR / namespace).glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is None or match["minor"] == "x":
            continue
        key = (match["name"], int(match["major"]))
        found.setdefault(key, {})[int(match["minor"])] = path
    return found


def _best_minor(minors: Mapping[int, Path], at_least: int | None) -> Path | None:
    # Minor versions only add to a schema (the upstream validator checks that 1.0 data
    # passes 1.1), so the newest minor at or above the one asked for is a safe stand-in.
    usable = [m for m in minors if at_least is None or m >= at_least]
    return minors[max(usable)] if usable else None


def _resolve_file(uri: str) -> Path | None:
    """The vendored file that answers a `$ref` to `uri`, if any.

    Upstream, `name-1.x.json` is a symbolic link to the newest 1.y file; a `$ref` to a
    minor version we do not hold (e.g. `descriptive-statistic-1.0.json`, absent from the
    source we vendored from) gets the newest vendored minor above it, for the same reason
    as in `_best_minor`.
    """
    for namespace, base in NAMESPACE_BASES.items():
        if not uri.startswith(base):
            continue
        match = _FILE_NAME.match(uri.removeprefix(base))
        if match is None:
            return None
        minors = _vendored(namespace).get((match["name"], int(match["major"])), {})
        at_least = None if match["minor"] == "x" else int(match["minor"])
        return _best_minor(minors, at_least)
    return None


def _retrieve(uri: str) -> Resource[Any]:
    path = _resolve_file(uri)
    if path is None:
        # Raised instead of fetching: a schema we did not vendor is a packaging bug.
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs-made __init__
    return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))


@cache
def schema_registry() -> Registry[Any]:
    """Every vendored schema under its canonical URI, crawled so inner `$id`s resolve."""
    resources: list[tuple[str, Resource[Any]]] = []
    for namespace, base in NAMESPACE_BASES.items():
        for path in sorted((SCHEMA_DIR / namespace).glob("*.json")):
            contents = json.loads(path.read_text(encoding="utf-8"))
            resources.append((base + path.name, Resource.from_contents(contents)))
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    return registry.with_resources(resources).crawl()


@cache
def _validator(uri: str) -> Any:
    """A validator for the schema at `uri`, in that schema's own draft, checking formats
    (the upstream test suite relies on `date-time` being checked)."""
    target = schema_registry().resolver().lookup(uri).contents
    cls = jsonschema.validators.validator_for(target)
    return cls({"$ref": uri}, registry=schema_registry(), format_checker=cls.FORMAT_CHECKER)


def body_schema_uri(namespace: str, name: str, version: str) -> str | None:
    """The vendored body schema for a header's schema_id, or None if we hold none."""
    match = _VERSION.match(version)
    if namespace not in NAMESPACE_BASES or match is None:
        return None
    minors = _vendored(namespace).get((name, int(match["major"])), {})
    path = _best_minor(minors, int(match["minor"]))
    return None if path is None else NAMESPACE_BASES[namespace] + path.name


# --- errors as Rejected ----------------------------------------------------------------


def _json_path(prefix: str, path: Iterable[str | int]) -> str:
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _error_field(prefix: str, error: ValidationError) -> str:
    field = _json_path(prefix, error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # The path of a missing property is its parent; name the property itself.
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            field += f".{missing[0]}"
    return field


def _schema_error(uri: str, instance: object) -> ValidationError | None:
    """The most telling of the errors, as jsonschema ranks them (deepest, most specific)."""
    error: ValidationError | None = best_match(_validator(uri).iter_errors(instance))
    return error


# --- times -----------------------------------------------------------------------------


class _BadTime(ValueError):
    def __init__(self, field: str, detail: str, reason: str = "bad_timestamp") -> None:
        super().__init__(detail)
        self.field = field
        self.reason = reason


class _ImpreciseTime(Exception):
    """A valid time frame too vague to place a sample (a date plus a part of the day)."""


_DURATION_UNITS: Final[Mapping[str, dt.timedelta]] = {
    "ps": dt.timedelta(microseconds=1e-6),
    "ns": dt.timedelta(microseconds=1e-3),
    "us": dt.timedelta(microseconds=1),
    "ms": dt.timedelta(milliseconds=1),
    "sec": dt.timedelta(seconds=1),
    "min": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "wk": dt.timedelta(weeks=1),
    # "Mo" and "yr" are calendar units with no fixed length: left out on purpose.
}


def _instant(text: str, field: str) -> tuple[dt.datetime, int | None]:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise _BadTime(field, f"not an ISO 8601 date-time: {text!r}") from exc
    offset = moment.utcoffset()
    if offset is None:
        # The OMH date-time schema: "If a timezone is not included, the timezone is
        # assumed to be UTC." The source stated no offset, so none is recorded.
        return moment.replace(tzinfo=dt.UTC), None
    return moment, int(offset.total_seconds() // 60)


def _duration(value: Json, field: str) -> dt.timedelta:
    unit = value["unit"]
    if unit not in _DURATION_UNITS:
        raise _BadTime(f"{field}.unit", f"{unit!r} has no fixed length", "bad_value")
    return float(value["value"]) * _DURATION_UNITS[unit]


@dataclass(frozen=True, slots=True)
class _When:
    start: dt.datetime
    end: dt.datetime | None
    tz_offset_minutes: int | None


def _time_frame(body: Json) -> _When | None:
    frame = body.get("effective_time_frame")
    if not isinstance(frame, dict):
        return None
    where = "body.effective_time_frame"
    if "date_time" in frame:
        start, offset = _instant(frame["date_time"], f"{where}.date_time")
        return _When(start, None, offset)
    interval: Json = frame["time_interval"]
    where += ".time_interval"
    if "start_date_time" in interval:
        start, offset = _instant(interval["start_date_time"], f"{where}.start_date_time")
        if "end_date_time" in interval:
            end, _ = _instant(interval["end_date_time"], f"{where}.end_date_time")
        else:
            end = start + _duration(interval["duration"], f"{where}.duration")
    elif "end_date_time" in interval:
        end, offset = _instant(interval["end_date_time"], f"{where}.end_date_time")
        start = end - _duration(interval["duration"], f"{where}.duration")
    else:
        raise _ImpreciseTime
    if end < start:
        raise _BadTime(f"{where}.end_date_time", "the interval ends before it starts")
    return _When(start, end, offset)


def _minutes(when: _When) -> float | None:
    return None if when.end is None else (when.end - when.start).total_seconds() / 60


# --- mapping bodies to samples ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reading:
    code: str
    value: float
    unit: str
    qualifier: str | None = None


Mapper = Callable[[Json, _When], list[_Reading] | None]


def _quantity(body: Json, key: str, code: str) -> _Reading:
    quantity: Json = body[key]
    return _Reading(code, float(quantity["value"]), str(quantity["unit"]))


def _unit_value(code: str, key: str) -> Mapper:
    def read(body: Json, when: _When) -> list[_Reading]:
        return [_quantity(body, key, code)]

    return read


def _blood_pressure(body: Json, when: _When) -> list[_Reading]:
    return [
        _quantity(body, "systolic_blood_pressure", "8480-6"),
        _quantity(body, "diastolic_blood_pressure", "8462-4"),
    ]


def _sleep_episode(body: Json, when: _When) -> list[_Reading] | None:
    minutes = _minutes(when)
    if minutes is None:
        return None
    # The episode runs from sleep onset to final awakening (the schema's own wording).
    return [_Reading("x-rejuve:sleep-stage", minutes, "min", "asleep")]


def _physical_activity(body: Json, when: _When) -> list[_Reading] | None:
    minutes = _minutes(when)
    if minutes is None:
        return None
    name = str(body["activity_name"]).strip().lower()
    return [_Reading("x-rejuve:workout", minutes, "min", name)]


MAPPERS: Final[Mapping[str, Mapper]] = {
    "heart-rate": _unit_value("8867-4", "heart_rate"),
    "step-count": _unit_value("55423-8", "step_count"),
    "sleep-duration": _unit_value("93832-4", "sleep_duration"),
    "sleep-episode": _sleep_episode,
    "body-weight": _unit_value("29463-7", "body_weight"),
    "blood-pressure": _blood_pressure,
    "blood-glucose": _unit_value("2339-0", "blood_glucose"),
    "body-temperature": _unit_value("8310-5", "body_temperature"),
    "oxygen-saturation": _unit_value("59408-5", "oxygen_saturation"),
    "physical-activity": _physical_activity,
}


# --- reading the file ------------------------------------------------------------------


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a JSON number")


def _loads(text: str, name: str, line_offset: int = 0) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"{name} line {exc.lineno + line_offset} column {exc.colno}"
        raise FormatError(f"not JSON: {exc.msg}", where) from exc
    except ValueError as exc:
        raise FormatError(str(exc), name) from exc


def _looks_like_point(item: object) -> bool:
    return isinstance(item, dict) and ("header" in item or "body" in item)


def _records(data: BinaryIO, name: str) -> Iterator[tuple[str, object]]:
    """(locator, decoded item) for every data point in the file, whatever its layout."""
    try:
        text = data.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text (byte {exc.start})", name) from exc
    if not text.strip():
        raise FormatError("empty file: no Open mHealth data point", name)
    try:
        whole = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            where = f"{name} line {exc.lineno} column {exc.colno}"
            raise FormatError(f"not JSON: {exc.msg}", where) from exc
        # A second value after the first: one data point per line (NDJSON).
        yield from _ndjson_records(text, name)
        return
    except ValueError as exc:
        raise FormatError(str(exc), name) from exc
    if isinstance(whole, list):
        if whole and not _looks_like_point(whole[0]):
            raise FormatError("not an Open mHealth data point (no header/body)", f"{name} [0]")
        for index, item in enumerate(whole):
            yield f"{name} [{index}]", item
    elif _looks_like_point(whole):
        yield name, whole
    else:
        raise FormatError("not an Open mHealth data point (no header/body)", name)


def _ndjson_records(text: str, name: str) -> Iterator[tuple[str, object]]:
    first = True
    # Split on "\n" only: str.splitlines() would also break on U+2028, which JSON strings
    # may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        locator = f"{name} line {number}"
        try:
            item = json.loads(line, parse_constant=_reject_constant)
        except ValueError as exc:
            if first:
                _loads(line, name, number - 1)
            # One corrupt line in a stream of points is that record's fault, not the file's.
            yield locator, _BrokenLine(str(exc), line)
            continue
        if first and not _looks_like_point(item):
            raise FormatError("not an Open mHealth data point (no header/body)", locator)
        first = False
        yield locator, item


@dataclass(frozen=True, slots=True)
class _BrokenLine:
    error: str
    text: str


# --- one data point --------------------------------------------------------------------


def _source(header: Json) -> str:
    provenance = header.get("acquisition_provenance")
    for holder in (provenance if isinstance(provenance, dict) else {}, header):
        value = holder.get("source_name")
        if isinstance(value, str) and value.strip():
            return f"omh:{value.strip()}"
    return "omh:unknown"


def _as_record(item: object) -> dict[str, object]:
    return item if isinstance(item, dict) else {"value": item}


def _point(item: object, locator: str, report: ParseReport) -> Iterator[Sample | Rejected]:
    if isinstance(item, _BrokenLine):
        yield Rejected("bad_json", None, item.error, locator, {"text": item.text[:2000]})
        return
    error = _schema_error(DATA_POINT_SCHEMA, item)
    if error is not None:
        field = _error_field("", error).lstrip(".") or None
        yield Rejected("schema_invalid", field, error.message, locator, _as_record(item))
        return
    point = cast(Point, item)  # the data-point schema has just said so
    header: Json = point["header"]
    body: Json = point["body"]
    schema_id: Json = header["schema_id"]
    namespace, schema_name = str(schema_id["namespace"]), str(schema_id["name"])
    version = str(schema_id["version"])
    mapper = MAPPERS.get(schema_name) if namespace in NAMESPACE_BASES else None
    uri = body_schema_uri(namespace, schema_name, version) if mapper else None
    if mapper is None or uri is None:
        report.unmapped[f"schema:{namespace}:{schema_name}:{version}"] += 1
        return
    error = _schema_error(uri, body)
    if error is not None:
        yield Rejected("schema_invalid", _error_field("body", error), error.message, locator, point)
        return
    yield from _body(point, schema_name, mapper, locator, report)


def _body(
    point: Point, schema_name: str, mapper: Mapper, locator: str, report: ParseReport
) -> Iterator[Sample | Rejected]:
    header: Json = point["header"]
    body: Json = point["body"]
    statistic = body.get("descriptive_statistic")
    if statistic is not None:
        # A Sample has no slot for "average of" or "maximum per day"; storing such a
        # value as a plain reading would skew every rollup built on it.
        report.unmapped[f"statistic:{schema_name}:{statistic}"] += 1
        return
    try:
        when = _time_frame(body)
    except _ImpreciseTime:
        report.unmapped[f"imprecise-time:{schema_name}"] += 1
        return
    except _BadTime as exc:
        yield Rejected(exc.reason, exc.field, str(exc), locator, point)
        return
    if when is None:
        report.unmapped[f"no-time-frame:{schema_name}"] += 1
        return
    readings = mapper(body, when)
    if readings is None:
        report.unmapped[f"no-interval:{schema_name}"] += 1
        return
    user = header.get("user_id")
    for reading in readings:
        yield Sample(
            code=reading.code,
            value=reading.value,
            unit=reading.unit,
            start=when.start,
            end=when.end,
            source=_source(header),
            locator=locator,
            tz_offset_minutes=when.tz_offset_minutes,
            member_ref=user if isinstance(user, str) else None,
            qualifier=reading.qualifier,
        )


def parse(data: BinaryIO, report: ParseReport, *, name: str) -> Iterator[Sample | Rejected]:
    """Samples from Open mHealth data points; see the module docstring for the layouts."""
    for locator, item in _records(data, name):
        report.read += 1
        yield from _point(item, locator, report)
