"""FHIR R4 JSON: a single Observation, or a Bundle (transaction, collection, batch,
searchset) whose entries carry Observations.

Each Observation is validated with fhir.resources. fhir.resources 8 ships R5 (the default
package), R4B (`fhir.resources.R4B`, FHIR 4.3.0) and STU3, but no R4 (4.0.1) models. We use
R4B: its Observation, Quantity, Period, Reference and Bundle are the R4 definitions
unchanged (R4B only reworked medication/product and subscription resources), whereas R5
changes Observation itself (new elements and value types), so R5 would judge R4 documents
by rules they were never written against.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO, Final

from fhir.resources.R4B.observation import Observation, ObservationComponent
from pydantic import ValidationError

from backend.ingest.catalog import lookup
from backend.ingest.model import FormatError, ParseReport, Rejected, Sample

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
BUNDLE_TYPES: Final = frozenset({"transaction", "collection", "batch", "searchset"})

# ObservationStatus is a *required* binding in R4, so an official validator rejects any
# other code; fhir.resources does not check bindings (its enum list even ends in "+").
OBSERVATION_STATUS: Final = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
# Valid, but they retract or never produced a result: not measurements to keep.
NOT_A_RESULT: Final = frozenset({"cancelled", "entered-in-error"})

# value[x] types that carry no number, and numeric ones we cannot take as a measurement
# with a unit (an integer has no unit; a range, ratio or waveform is not one value).
TEXTUAL_VALUES: Final = (
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)
UNSUPPORTED_VALUES: Final = ("valueInteger", "valueRange", "valueRatio", "valueSampledData")

Json = dict[str, Any]


# --- reading the file ------------------------------------------------------------------


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a JSON number")


def _load(data: BinaryIO, name: str) -> object:
    try:
        text = data.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text (byte {exc.start})", name) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"{name} line {exc.lineno} column {exc.colno}"
        raise FormatError(f"not JSON: {exc.msg}", where) from exc
    except ValueError as exc:
        raise FormatError(str(exc), name) from exc


def _resources(document: object, name: str) -> Iterator[tuple[str, object]]:
    """(locator, resource) for the Observation or each Bundle entry."""
    if not isinstance(document, dict):
        raise FormatError("not a FHIR resource (the top level is not an object)", name)
    kind = document.get("resourceType")
    if kind == "Observation":
        yield name, document
        return
    if kind != "Bundle":
        raise FormatError(f"expected a Bundle or an Observation, got {kind!r}", name)
    bundle_type = document.get("type")
    if bundle_type not in BUNDLE_TYPES:
        allowed = ", ".join(sorted(BUNDLE_TYPES))
        raise FormatError(f"Bundle type {bundle_type!r} is not one of {allowed}", name)
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        raise FormatError("Bundle.entry is not a list", f"{name} entry")
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        yield f"{name} entry[{index}].resource", resource


# --- validation errors -----------------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


_CHOICE_LIST = re.compile(r"\[([^\]]+)\]")


def _error_field(error: Any) -> str:
    field = _path(error["loc"])
    choices = _CHOICE_LIST.search(str(error["msg"]))
    if choices and error["type"] == "value_error" and "field value" in str(error["msg"]):
        # fhir.resources reports a choice-type conflict (two value[x]) on the parent
        # object, listing the alternatives: name the choice element itself.
        first = re.search(r"'([a-z]+)[A-Z]\w*'", choices.group(1))
        choice = f"{first.group(1)}[x]" if first else ""
        field = f"{field}.{choice}" if field else choice
    return field or "(resource)"


def _schema_invalid(exc: ValidationError, locator: str, record: Json) -> Rejected:
    errors = exc.errors()
    details = "; ".join(f"{_error_field(e)}: {e['msg']}" for e in errors[:5])
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return Rejected("schema_invalid", _error_field(errors[0]), details + more, locator, record)


# --- times -----------------------------------------------------------------------------


class _BadTime(ValueError):
    def __init__(self, reason: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.field = field


class _ImpreciseTime(Exception):
    """A valid FHIR partial date (year, or year-month): too vague to place a sample."""


def _moment(value: object, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        # FHIR requires an offset whenever a time is given; the plain `timezone` keeps
        # pydantic's own tzinfo class out of the samples.
        offset = value.utcoffset()
        if offset is None:
            raise _BadTime("bad_timestamp", field, f"{value.isoformat()} has no offset")
        return value.replace(tzinfo=dt.timezone(offset))
    if isinstance(value, dt.date):
        # A date-only dateTime ("2024-03-02") is valid FHIR and common for lab results;
        # it has no time or offset, so it is placed at midnight UTC and no offset is
        # recorded (tz_offset_minutes stays None).
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    if isinstance(value, str):
        raise _ImpreciseTime
    raise _BadTime("bad_timestamp", field, f"unreadable time {value!r}")


def _stated_offset(value: object) -> int | None:
    if isinstance(value, dt.datetime) and (offset := value.utcoffset()) is not None:
        return int(offset.total_seconds() // 60)
    return None


@dataclass(frozen=True, slots=True)
class _When:
    start: dt.datetime
    end: dt.datetime | None
    tz_offset_minutes: int | None


def _effective(obs: Observation) -> _When:
    if obs.effectiveDateTime is not None:
        raw: object = obs.effectiveDateTime
        return _When(_moment(raw, "effectiveDateTime"), None, _stated_offset(raw))
    if obs.effectiveInstant is not None:
        raw = obs.effectiveInstant
        return _When(_moment(raw, "effectiveInstant"), None, _stated_offset(raw))
    if obs.effectivePeriod is not None:
        period = obs.effectivePeriod
        if period.start is None:
            raise _BadTime("missing_value", "effectivePeriod.start", "a period without start")
        start = _moment(period.start, "effectivePeriod.start")
        end = None if period.end is None else _moment(period.end, "effectivePeriod.end")
        if end is not None and end < start:
            raise _BadTime(
                "bad_timestamp", "effectivePeriod.end", "the period ends before it starts"
            )
        return _When(start, end, _stated_offset(period.start))
    if obs.effectiveTiming is not None:
        raise _BadTime("bad_timestamp", "effectiveTiming", "a Timing schedule is not one time")
    raise _BadTime("missing_value", "effective[x]", "no effective time")


# --- codes and values ------------------------------------------------------------------


def _loinc_codes(concept: Any) -> list[str]:
    codings = getattr(concept, "coding", None) or []
    return [str(c.code) for c in codings if c.system == LOINC and c.code]


def _catalog_code(codes: list[str]) -> str | None:
    for code in codes:
        measure = lookup(code)
        if measure is not None:
            return measure.code  # aliases fold here: 15074-8 (mmol/L) -> 2339-0
    return None


def _code_label(codes: list[str]) -> str:
    return _catalog_code(codes) or (codes[0] if codes else "no-loinc")


@dataclass(frozen=True, slots=True)
class _Reading:
    code: str
    value: float
    unit: str
    locator: str


def _value_kind(element: Observation | ObservationComponent) -> str | None:
    for kind in ("valueQuantity", *TEXTUAL_VALUES, *UNSUPPORTED_VALUES):
        if getattr(element, kind, None) is not None:
            return kind
    return None


def _reading(
    element: Observation | ObservationComponent,
    prefix: str,
    locator: str,
    record: Json,
    report: ParseReport,
) -> _Reading | Rejected | None:
    """One coded value: a reading, a rejection, or None once counted as unmapped."""
    codes = _loinc_codes(element.code)
    kind = _value_kind(element)
    if kind is None or kind in TEXTUAL_VALUES:
        # A text or coded result, or an explicit dataAbsentReason, is a complete and
        # valid observation that simply has no number: counted, not quarantined, since
        # there is nothing for a steward to fix (the raw record keeps it in full).
        report.unmapped[f"no-numeric-value:{_code_label(codes)}"] += 1
        return None
    if kind in UNSUPPORTED_VALUES:
        report.unmapped[f"unsupported-value:{kind}:{_code_label(codes)}"] += 1
        return None
    code = _catalog_code(codes)
    if code is None:
        report.unmapped[f"loinc:{codes[0]}" if codes else "no-loinc"] += 1
        return None
    quantity = element.valueQuantity
    field = f"{prefix}valueQuantity"
    if quantity is None or quantity.value is None:
        return Rejected(
            "missing_value", f"{field}.value", "a Quantity without a value", locator, record
        )
    if quantity.comparator is not None:
        # "<5" is a censored result, not the number 5: a steward decides what it means.
        return Rejected(
            "bad_value",
            f"{field}.comparator",
            f"censored value {quantity.comparator}{quantity.value}",
            locator,
            record,
        )
    unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
    if not unit:
        return Rejected(
            "missing_value", f"{field}.unit", "a Quantity without a unit", locator, record
        )
    value = quantity.value
    number = float(value) if isinstance(value, Decimal | int | float) else float(str(value))
    return _Reading(code, number, str(unit), locator)


def _readings(
    obs: Observation, locator: str, record: Json, report: ParseReport
) -> Iterator[_Reading | Rejected]:
    components = obs.component or []
    # A panel (85354-9 blood pressure) carries its numbers in components and has no
    # value of its own: the panel code is a container, not an unmapped measurement.
    if not components or _value_kind(obs) is not None or obs.dataAbsentReason is not None:
        result = _reading(obs, "", locator, record, report)
        if result is not None:
            yield result
    for index, component in enumerate(components):
        prefix = f"component[{index}]."
        result = _reading(component, prefix, f"{locator}.component[{index}]", record, report)
        if result is not None:
            yield result


# --- one resource ----------------------------------------------------------------------


def _source(obs: Observation) -> str:
    origin = obs.meta.source if obs.meta is not None else None
    if not origin and obs.device is not None:
        origin = obs.device.display
    return f"fhir:{origin or 'unknown'}"


def _observation(resource: Json, locator: str, report: ParseReport) -> Iterator[Sample | Rejected]:
    try:
        obs = Observation.model_validate(resource)
    except ValidationError as exc:
        yield _schema_invalid(exc, locator, resource)
        return
    status = str(obs.status)
    if status not in OBSERVATION_STATUS:
        yield Rejected(
            "schema_invalid", "status", f"{status!r} is not an ObservationStatus", locator, resource
        )
        return
    if status in NOT_A_RESULT:
        report.unmapped[f"status:{status}"] += 1
        return
    readings = list(_readings(obs, locator, resource, report))
    yield from (r for r in readings if isinstance(r, Rejected))
    good = [r for r in readings if isinstance(r, _Reading)]
    if not good:
        return
    try:
        when = _effective(obs)
    except _ImpreciseTime:
        report.unmapped["imprecise-time"] += len(good)
        return
    except _BadTime as exc:
        yield Rejected(exc.reason, exc.field, str(exc), locator, resource)
        return
    member = obs.subject.reference if obs.subject is not None else None
    for reading in good:
        yield Sample(
            code=reading.code,
            value=reading.value,
            unit=reading.unit,
            start=when.start,
            end=when.end,
            source=_source(obs),
            locator=reading.locator,
            tz_offset_minutes=when.tz_offset_minutes,
            member_ref=str(member) if member else None,
        )


def _resource(resource: object, locator: str, report: ParseReport) -> Iterator[Sample | Rejected]:
    if resource is None:
        # A batch or transaction entry may be a bare request (a DELETE, a conditional read).
        report.unmapped["entry-without-resource"] += 1
        return
    if not isinstance(resource, dict):
        yield Rejected(
            "schema_invalid",
            "resource",
            "the resource is not a JSON object",
            locator,
            {"resource": resource},
        )
        return
    kind = resource.get("resourceType")
    if kind != "Observation":
        report.unmapped[str(kind) if kind else "no-resourceType"] += 1
        return
    yield from _observation(resource, locator, report)


def parse(data: BinaryIO, report: ParseReport, *, name: str) -> Iterator[Sample | Rejected]:
    """Samples from a FHIR R4 Observation or Bundle; see the module docstring."""
    for locator, resource in _resources(_load(data, name), name):
        report.read += 1
        yield from _resource(resource, locator, report)
