"""Open mHealth / IEEE 1752 data points: `{"header": ..., "body": ...}`, or bare bodies
when the caller names their schema.

Input is one data point, a JSON array of them, or NDJSON (one per line); the layout is
detected from the bytes. A bare body (what the official test data are, and what many
exporters write) carries no schema id, member or source: it is accepted only when the
caller names the schema (`rejuve ingest --format omh --schema omh:heart-rate:2.0
--member ...`, parse option `schema`); guessing the schema from the fields is how data
gets misfiled. With a schema named, every item must be a bare body of that schema.

Every point is validated against the exact schema version its header (or the caller)
names, from the official set vendored in `omh_schemas/` (`omh_registry`), before it is
mapped (`omh_mappers`): a body that fails its schema is refused (quarantined
`schema_invalid`) whether or not the platform keeps that measure; a valid body of a
schema the platform does not keep is counted unmapped (`schema:<ns>:<name>:<version>`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from referencing.exceptions import Unresolvable

from backend.ingest.formats.omh_mappers import (
    MAPPED_NAMESPACES,
    MAPPERS,
    BadTime,
    ImpreciseTime,
    Mapper,
    UnknownShape,
    time_frame,
)
from backend.ingest.formats.omh_registry import (
    DATA_POINT_SCHEMA,
    SchemaId,
    body_schema_uri,
    error_field,
    parse_schema_id,
    schema_error,
)
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

Point = dict[str, Any]
Json = dict[str, Any]


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


_BARE_HINT = " (a bare body needs its schema named: --schema omh:NAME:VERSION)"


def _records(data: BinaryIO, name: str, bare: bool) -> Iterator[tuple[str, object]]:
    """(locator, decoded item) for every data point (or bare body, when `bare`) in the
    file, whatever its layout."""
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
        yield from _ndjson_records(text, name, bare)
        return
    except ValueError as exc:
        raise FormatError(str(exc), name) from exc
    if isinstance(whole, list):
        if whole and not bare and not _looks_like_point(whole[0]):
            raise FormatError(
                "not an Open mHealth data point (no header/body)" + _BARE_HINT, f"{name} [0]"
            )
        for index, item in enumerate(whole):
            yield f"{name} [{index}]", item
    elif bare or _looks_like_point(whole):
        yield name, whole
    else:
        raise FormatError("not an Open mHealth data point (no header/body)" + _BARE_HINT, name)


def _ndjson_records(text: str, name: str, bare: bool) -> Iterator[tuple[str, object]]:
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
        if first and not bare and not _looks_like_point(item):
            raise FormatError(
                "not an Open mHealth data point (no header/body)" + _BARE_HINT, locator
            )
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
    error = schema_error(DATA_POINT_SCHEMA, item)
    if error is not None:
        field = error_field("", error).lstrip(".") or None
        yield Rejected("schema_invalid", field, error.message, locator, _as_record(item))
        return
    point = cast(Point, item)  # the data-point schema has just said so
    header: Json = point["header"]
    given: Json = header["schema_id"]
    schema = SchemaId(str(given["namespace"]), str(given["name"]), str(given["version"]))
    yield from _validated(point, point["body"], "body", schema, locator, report)


def _bare(
    item: object, schema: SchemaId, locator: str, report: ParseReport
) -> Iterator[Sample | Rejected]:
    if isinstance(item, _BrokenLine):
        yield Rejected("bad_json", None, item.error, locator, {"text": item.text[:2000]})
        return
    # No header: no user_id (the batch's member), no source name.
    yield from _validated({"header": {}, "body": item}, item, "(body)", schema, locator, report)


def _validated(
    point: Point,
    body: object,
    where: str,
    schema: SchemaId,
    locator: str,
    report: ParseReport,
) -> Iterator[Sample | Rejected]:
    uri = body_schema_uri(schema)
    if uri is None:
        report.unmapped[f"schema:{schema}:not-vendored"] += 1
        return
    try:
        error = schema_error(uri, body)
    except Unresolvable:
        # A schema whose `$ref` closure we could not vendor (see omh_schemas/README.md):
        # never validated against less than its whole schema, never stored.
        report.unmapped[f"schema:{schema}:unresolvable"] += 1
        return
    if error is not None:
        field = error_field(where.removeprefix("(body)") or "body", error)
        yield Rejected("schema_invalid", field, error.message, locator, _as_record(point))
        return
    mapper = MAPPERS.get(schema.name) if schema.namespace in MAPPED_NAMESPACES else None
    if mapper is None or not isinstance(body, dict):
        report.unmapped[f"schema:{schema}"] += 1
        return
    yield from _body(point, body, schema.name, mapper, locator, report)


def _body(
    point: Point,
    body: Json,
    schema_name: str,
    mapper: Mapper,
    locator: str,
    report: ParseReport,
) -> Iterator[Sample | Rejected]:
    header: Json = point["header"]
    statistic = body.get("descriptive_statistic")
    if statistic is not None:
        # A Sample has no slot for "average of" or "maximum per day"; storing such a
        # value as a plain reading would skew every rollup built on it.
        report.unmapped[f"statistic:{schema_name}:{statistic}"] += 1
        return
    try:
        when = time_frame(body)
    except ImpreciseTime:
        report.unmapped[f"imprecise-time:{schema_name}"] += 1
        return
    except BadTime as exc:
        yield Rejected(exc.reason, exc.field, str(exc), locator, point)
        return
    if when is None:
        report.unmapped[f"no-time-frame:{schema_name}"] += 1
        return
    try:
        readings = mapper(body, when)
    except UnknownShape as exc:
        report.unmapped[f"unknown-shape:{schema_name}:{exc}"] += 1
        return
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


def schema_option(options: Mapping[str, Any] | None) -> SchemaId | None:
    """The `schema` parse option (`omh:heart-rate:2.0`), checked: a FormatError names it."""
    text = (options or {}).get("schema")
    if text is None:
        return None
    try:
        return parse_schema_id(str(text))
    except ValueError as exc:
        raise FormatError(str(exc), "--schema") from exc


def parse(
    data: BinaryIO,
    report: ParseReport,
    *,
    name: str,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Sample | Rejected]:
    """Samples from Open mHealth data points, or from bare bodies of the schema named in
    `options["schema"]`; see the module docstring."""
    schema = schema_option(options)
    for locator, item in _records(data, name, bare=schema is not None):
        report.read += 1
        if schema is None:
            yield from _point(item, locator, report)
        else:
            yield from _bare(item, schema, locator, report)
